"""The results of ``lora-teach bench`` as text: a table per figure and device, the Markdown
summary for docs/performance.md, and the LoRA-vs-full memory plot."""

from __future__ import annotations

from pathlib import Path

from lora_teach.bench.suite import TARGETS


def _check(figure: str, value: float | None) -> str:
    if value is None or figure not in TARGETS:
        return ""
    op, bound = TARGETS[figure]
    holds = value >= bound if op == ">=" else value <= bound
    return f"target {op} {bound:g}: {'OK' if holds else 'MISSED'}"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def _median_range(r: dict, spec: str) -> str:
    return f"{r['median']:{spec}} ({r['min']:{spec}}-{r['max']:{spec}})"


def _crossover_text(r: dict) -> str:
    """Per row length: the first number of distinct adapters at which an unmerged strategy beat merged
    in every round, or that none did."""
    most = max(w["distinct"] for w in r["workloads"])
    return "; ".join(
        f"length {length}: "
        + (f"from {k} distinct adapters" if k is not None else f"not within 1 to {most} adapters")
        for length, k in r["crossover"].items()
    )


def format_table(results: dict) -> str:
    """The results as readable text, one block per figure and device."""
    meta = results["meta"]
    lines = [
        f"lora-teach bench ({meta['mode']}), torch {meta['torch']}, {meta['cpu_count']} CPUs, "
        f"devices: {', '.join(meta['devices'])}, {meta['date']}",
    ]
    for device, r in results.get("data_pipeline_speedup_bs10", {}).items():
        what = (
            "one full epoch" if r["full_epoch"] else f"{r['steps']:,} steps each (quick; --full: one epoch)"
        )
        lines += [
            "",
            f"data_pipeline_speedup_bs10 [{device}, threads={r['threads']}, {what}, median of {r['repeats']}]",
            f"  seed path (torchvision Dataset + DataLoader, Adam)  {r['seed_ms_per_step']:7.2f} ms/step"
            f"  accuracy {100 * r['seed_accuracy']:.1f} %",
            f"  same loader, fused Adam                           {r['seed_loader_fused_adam_ms_per_step']:7.2f} ms/step",
            f"  lora_teach.data Batches + train (fused Adam)       {r['fast_ms_per_step']:7.2f} ms/step"
            f"  accuracy {100 * r['fast_accuracy']:.1f} %",
            f"  speedup {r['speedup']:.2f}x   {_check('data_pipeline_speedup_bs10', r['speedup'])}",
        ]
        for threads, t in r["by_threads"].items():
            lines.append(
                f"    threads={threads}: seed {t['seed_ms_per_step']:.2f} ms, fast {t['fast_ms_per_step']:.2f} ms, "
                f"speedup {t['speedup']:.2f}x"
            )
    for device, r in results.get("epoch_seconds_bs128", {}).items():
        steps = "one epoch" if r["full_epoch"] else f"{r['steps']} steps only"
        lines += [
            "",
            f"epoch_seconds_bs128 [{device}, threads={r['threads']}, {steps}]",
            f"  {r['seconds']:.2f} s, accuracy {100 * r['accuracy']:.1f} %   "
            f"{_check('epoch_seconds_bs128', r['seconds'] if r['full_epoch'] else None)}",
        ]
    merged = results.get("merged_latency_ratio", {})
    unmerged = results.get("unmerged_latency_ratio", {})
    for device, r in merged.items():
        lines += [
            "",
            f"merged_latency_ratio and unmerged_latency_ratio [{device}, medians of {r['rounds']} interleaved rounds]",
            f"  {'model':<12} {'batch':>5} {'base ms':>9} {'merged':>7} {'wrapper':>8} {'parametrize':>12}",
        ]
        other = unmerged.get(device, {})
        for i, m in enumerate(r["cases"]):
            w, p = (
                f"{other[k]['cases'][i]['ratio']:.3f}x" if k in other else "-"
                for k in ("wrapper", "parametrize")
            )
            lines.append(
                f"  {m['model']:<12} {m['batch_size']:>5} {m['base_ms']:>9.3f} {m['merged_ratio']:>6.3f}x "
                f"{w:>8} {p:>12}"
            )
        lines.append(f"  worst merged ratio {r['worst']:.3f}   {_check('merged_latency_ratio', r['worst'])}")
    for device, r in results.get("lora_vs_full_step", {}).items():
        lines += [
            "",
            f"lora_vs_full_step [{device}, r={r['r']}, batch {r['batch_size']}, threads={r['threads']}]",
            f"  {r['model']}",
            f"  {'width':>5} {'method':<6} {'trainable':>12} {'params+grads+Adam':>18} "
            f"{'peak - forward':>15} {'step ms':>9}",
        ]
        for row in r["rows"]:
            lines.append(
                f"  {row['width']:>5} {row['method']:<6} {row['trainable']:>12,} {_mib(row['tensor_bytes']):>18} "
                f"{_mib(row['peak_minus_forward_bytes']):>15} {row['step_ms']:>9.2f}"
            )
        for mode, g in r["growth_exponent"].items():
            text = ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in g.items())
            lines.append(f"  {mode}: grows as width^k with k = {text}")
        lines.append(f"  peak: {r['peak_measure']}")
    for device, r in results.get("serving_throughput", {}).items():
        lines += [
            "",
            f"serving_throughput [{device}, threads={r['threads']}, {r['rows']} rows per batch, "
            f"chars/s as median (min-max) over {r['rounds']} interleaved rounds]",
            f"  {'length':>6} {'adapters':>8} {'popularity':<10} "
            + " ".join(f"{s:>26}" for s in ("grouped", "gather", "merged"))
            + f" {'merged/grouped':>18} {'merged/gather':>18}",
        ]
        for w in r["workloads"]:
            cells = " ".join(
                f"{_median_range(w['range'][s], ',.0f'):>26}" for s in ("grouped", "gather", "merged")
            )
            ratios = " ".join(
                f"{_median_range(w['merged_over'][s], '.2f'):>18}" for s in ("grouped", "gather")
            )
            lines.append(f"  {w['length']:>6} {w['distinct']:>8} {w['popularity']:<10} {cells} {ratios}")
        lines.append(f"  merging stops paying (uniform): {_crossover_text(r)}")
    if "course_seconds" in results:
        course = results["course_seconds"]
        lines += ["", "course_seconds"]
        if course is None:
            lines.append("  not measured (only with --full)")
        else:
            for name, seconds in course["notebooks"].items():
                note = f"  FAILED {course['failed'][name]}" if name in course["failed"] else ""
                lines.append(f"  {name:<40} {seconds:7.1f} s{note}")
            lines.append(f"  total {course['total']:.1f} s   {_check('course_seconds', course['total'])}")
    return "\n".join(lines)


def markdown_summary(results: dict) -> str:
    """The headline figures as a Markdown table (figure, device, value, target, holds?),
    for docs/performance.md."""
    rows = ["| figure | device | measured | target | holds |", "|---|---|---|---|---|"]

    def add(figure: str, device: str, text: str, value: float | None) -> None:
        op, bound = TARGETS.get(figure, ("", None))
        verdict = _check(figure, value).rpartition(": ")[2] if value is not None else "n/a"
        target = f"{op} {bound:g}" if bound is not None else "(report)"
        rows.append(f"| `{figure}` | {device} | {text} | {target} | {verdict or 'n/a'} |")

    for device, r in results.get("data_pipeline_speedup_bs10", {}).items():
        steps = "full epoch" if r["full_epoch"] else f"{r['steps']:,} steps"
        text = (
            f"{r['speedup']:.2f}x ({r['seed_ms_per_step']:.2f} vs {r['fast_ms_per_step']:.2f} ms/step, "
            f"{steps}, threads={r['threads']}; accuracy {100 * r['seed_accuracy']:.1f} % vs "
            f"{100 * r['fast_accuracy']:.1f} %)"
        )
        add("data_pipeline_speedup_bs10", device, text, r["speedup"])
    for device, r in results.get("epoch_seconds_bs128", {}).items():
        text = f"{r['seconds']:.2f} s ({r['steps']} steps, threads={r['threads']}, accuracy {100 * r['accuracy']:.1f} %)"
        add("epoch_seconds_bs128", device, text, r["seconds"] if r["full_epoch"] else None)
    for device, r in results.get("merged_latency_ratio", {}).items():
        cases = ", ".join(f"{c['model']} bs{c['batch_size']} {c['merged_ratio']:.3f}" for c in r["cases"])
        add("merged_latency_ratio", device, f"worst {r['worst']:.3f} ({cases})", r["worst"])
    for device, r in results.get("unmerged_latency_ratio", {}).items():
        for method, m in r.items():
            cases = ", ".join(f"{c['model']} bs{c['batch_size']} {c['ratio']:.2f}" for c in m["cases"])
            add("unmerged_latency_ratio", f"{device}, {method}", cases, None)
    for device, r in results.get("lora_vs_full_step", {}).items():
        for row in r["rows"]:
            text = (
                f"width {row['width']} {row['method']}: {row['trainable']:,} trainable, "
                f"{_mib(row['tensor_bytes'])} params+grads+Adam, {_mib(row['peak_minus_forward_bytes'])} "
                f"peak - forward, {row['step_ms']:.1f} ms/step"
            )
            add("lora_vs_full_step", device, text, None)
        growth = "; ".join(
            f"{mode}: " + ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in g.items())
            for mode, g in r["growth_exponent"].items()
        )
        add("lora_vs_full_step", device, f"growth exponents k (~ width^k): {growth}", None)
    for device, r in results.get("serving_throughput", {}).items():
        for length in r["crossover"]:
            ratios = ", ".join(
                f"{w['distinct']}: {_median_range(w['merged_over']['gather'], '.2f')}"
                for w in r["workloads"]
                if str(w["length"]) == length and w["popularity"] == "uniform"
            )
            text = (
                f"{r['rows']} rows x {length} chars, merged / gather chars/s by distinct adapters "
                f"(median, range over {r['rounds']} rounds): {ratios}"
            )
            add("serving_throughput", device, text, None)
        add("serving_throughput", device, f"merging stops paying: {_crossover_text(r)}", None)
    course = results.get("course_seconds")
    if course:
        add(
            "course_seconds",
            "cpu",
            f"{course['total']:.0f} s over {len(course['notebooks'])} notebooks",
            course["total"],
        )
    return "\n".join(rows)


def plot_memory(results: dict, path: Path | str, device: str = "cpu") -> Path:
    """Log-log plot of LoRA's and full fine-tuning's memory against width: params + grads
    + Adam state from the tensors (solid), measured peak minus forward (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_teach.plots import COLORS

    r = results["lora_vs_full_step"][device]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, label in (("full", "full fine-tuning"), ("lora", f"LoRA r={r['r']}")):
        rows = [row for row in r["rows"] if row["method"] == mode]
        widths = [row["width"] for row in rows]
        k = r["growth_exponent"][mode]["tensor_bytes"]
        growth = "" if k is None else f" (~ width^{k:.2f})"
        ax.plot(
            widths,
            [row["tensor_bytes"] / 2**20 for row in rows],
            "o-",
            color=COLORS[mode],
            label=f"{label}: params + grads + Adam state{growth}",
        )
        measured = [(w, row["peak_minus_forward_bytes"]) for w, row in zip(widths, rows)]
        measured = [(w, b / 2**20) for w, b in measured if b > 0]
        if measured:
            ax.plot(
                *zip(*measured),
                "s--",
                color=COLORS[mode],
                alpha=0.7,
                label=f"{label}: measured peak RSS - forward",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width d of the two d x d layers")
    ax.set_ylabel("memory of one training step (MiB)")
    ax.set_title(f"Training memory: LoRA vs full fine-tuning ({device}, batch {r['batch_size']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path
