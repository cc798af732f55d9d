"""``lora-teach bench``: speed and memory measured side by side, printed as a table or JSON.

Every figure is a ratio of two things timed in the same run (interleaved where
possible), with the absolute times beside it for context. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable, merge_lora
from lora_teach.cli import positive_int
from lora_teach.data import Batches, load_mnist, torchvision_loader
from lora_teach.models import DigitsNet
from lora_teach.outputs import OutputError, check_output_file, error_line
from lora_teach.train import evaluate, make_optimizer, set_seed, train

FIGURES = (
    "data_pipeline_speedup_bs10",
    "epoch_seconds_bs128",
    "merged_latency_ratio",
    "unmerged_latency_ratio",
    "lora_vs_full_step",
    "course_seconds",
)
TARGETS = {  # figure -> (comparison, bound) as in issue 6
    "data_pipeline_speedup_bs10": (">=", 3.5),
    "epoch_seconds_bs128": ("<=", 2.0),
    "merged_latency_ratio": ("<=", 1.02),
    "course_seconds": ("<=", 600.0),
}
QUICK = {"pipeline_steps": 600, "repeats": 2, "rounds": 15, "widths": (256, 1024, 4096), "epoch_steps": None}
FULL = {"pipeline_steps": None, "repeats": 3, "rounds": 41, "widths": (256, 1024, 4096), "epoch_steps": None}
LORA_R = 8
MEMORY_BATCH = 64


def wide_mlp(width: int, depth: int = 2) -> nn.Sequential:
    """``depth`` square Linear(width, width) layers with ReLU between: x (batch, width) -> (batch, width)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.ReLU()] if i else []
        layers.append(nn.Linear(width, width))
    return nn.Sequential(*layers)


def devices_to_measure() -> list[torch.device]:
    """Always the CPU; CUDA as well when there is a GPU."""
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (None: leave it), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------- data pipeline


def bench_data_pipeline(
    num_steps: int | None = 1000,
    repeats: int = 2,
    threads: int | None = 1,
    device: torch.device | str = "cpu",
    lr: float = 1e-3,
) -> dict:
    """DigitsNet (corrected) at batch size 10, the same ``num_steps`` (None: one epoch,
    6,000 steps) on three paths, interleaved ``repeats`` times, medians in ms/step:

    - seed: torchvision Dataset (per-sample ToTensor + Normalize) + DataLoader, plain Adam;
    - seed_loader_fused_adam: the same loader with fused Adam (to split the gain);
    - fast: lora_teach.data.Batches over ready tensors, fused Adam (make_optimizer).
    """
    device = torch.device(device)
    x, y = load_mnist("train", device=device)
    test = load_mnist("test", device=device)
    loader = torchvision_loader("train", batch_size=10)
    steps = num_steps if num_steps is not None else len(loader)

    def make(kind: str) -> tuple[nn.Module, object, torch.optim.Optimizer]:
        set_seed(0)
        model = DigitsNet("corrected").to(device)
        if kind == "seed":
            return model, loader, torch.optim.Adam(model.parameters(), lr=lr)
        batches = Batches(x, y, 10) if kind == "fast" else loader
        return model, batches, make_optimizer(model.parameters(), lr=lr)

    kinds = ("seed", "seed_loader_fused_adam", "fast")
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    accuracy: dict[str, float] = {}
    with num_threads(threads if device.type == "cpu" else None):
        for repeat in range(repeats):
            order = kinds if repeat % 2 == 0 else kinds[::-1]  # cancel drift
            for kind in order:
                model, batches, optimizer = make(kind)
                seconds[kind].append(
                    _timed(
                        lambda m=model, b=batches, o=optimizer: train(
                            m, b, num_steps=steps, optimizer=o, progress=False
                        ),
                        device,
                    )
                )
                accuracy[kind] = evaluate(model, test).accuracy
        used_threads = torch.get_num_threads()
    ms = {k: 1000 * statistics.median(v) / steps for k, v in seconds.items()}
    return {
        "device": device.type,
        "threads": used_threads if device.type == "cpu" else None,
        "steps": steps,
        "full_epoch": num_steps is None,
        "repeats": repeats,
        "seed_ms_per_step": ms["seed"],
        "seed_loader_fused_adam_ms_per_step": ms["seed_loader_fused_adam"],
        "fast_ms_per_step": ms["fast"],
        "speedup": ms["seed"] / ms["fast"],
        "seed_accuracy": accuracy["seed"],
        "fast_accuracy": accuracy["fast"],
    }


def bench_data_pipeline_threads(
    thread_counts: Sequence[int], num_steps: int | None, repeats: int, device: torch.device | str = "cpu"
) -> dict:
    """``bench_data_pipeline`` at each thread count (CPU). The headline sets each path at
    its own best thread count (what a user of either would pick); ``by_threads`` keeps the
    same-count comparisons."""
    device = torch.device(device)
    if device.type != "cpu":
        result = bench_data_pipeline(num_steps, repeats, None, device)
        return {**result, "by_threads": {}}
    runs = {n: bench_data_pipeline(num_steps, repeats, n, device) for n in thread_counts}
    seed_best = min(runs, key=lambda n: runs[n]["seed_ms_per_step"])
    fast_best = min(runs, key=lambda n: runs[n]["fast_ms_per_step"])
    by_threads = {
        str(n): {k: r[k] for k in ("seed_ms_per_step", "fast_ms_per_step", "speedup")}
        for n, r in runs.items()
    }
    seed, fast = runs[seed_best], runs[fast_best]
    return {
        **fast,
        "threads": f"seed {seed_best}, ours {fast_best}",
        "seed_ms_per_step": seed["seed_ms_per_step"],
        "seed_loader_fused_adam_ms_per_step": seed["seed_loader_fused_adam_ms_per_step"],
        "seed_accuracy": seed["seed_accuracy"],
        "speedup": seed["seed_ms_per_step"] / fast["fast_ms_per_step"],
        "by_threads": by_threads,
    }


# ---------------------------------------------------------------- one epoch at 128


def bench_epoch(
    batch_size: int = 128,
    repeats: int = 2,
    num_steps: int | None = None,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> dict:
    """Seconds for one epoch (469 steps at 128; ``num_steps`` caps it) of the corrected
    DigitsNet through Batches + train (fused Adam); median of ``repeats``. Loading the
    tensors is not counted."""
    device = torch.device(device)
    x, y = load_mnist("train", device=device)
    test = load_mnist("test", device=device)
    times = []
    with num_threads(threads if device.type == "cpu" else None):
        for _ in range(repeats):
            set_seed(0)
            model = DigitsNet("corrected").to(device)
            batches = Batches(x, y, batch_size)
            times.append(
                _timed(lambda m=model, b=batches: train(m, b, num_steps=num_steps, progress=False), device)
            )
        used_threads = torch.get_num_threads()
    steps = len(batches) if num_steps is None else min(num_steps, len(batches))
    return {
        "device": device.type,
        "threads": used_threads if device.type == "cpu" else None,
        "batch_size": batch_size,
        "steps": steps,
        "full_epoch": steps == len(batches),
        "seconds": statistics.median(times),
        "accuracy": evaluate(model, test).accuracy,
    }


# ---------------------------------------------------------------- inference latency


def _latency_candidates(base: nn.Module, r: int = LORA_R) -> dict[str, nn.Module]:
    """base, merged (wrapper adapters with a nonzero B, merged in), and both unmerged methods."""
    candidates = {"base": base}
    for method in ("wrapper", "parametrize"):
        model = copy.deepcopy(base)
        with torch.random.fork_rng(), torch.no_grad():  # the same factors for both methods
            torch.manual_seed(1)
            add_lora(model, r=r, lora_alpha=2 * r, method=method)
            for name, param in model.named_parameters():
                if name.endswith("lora_B"):
                    param.normal_(0, 0.01)  # a trained adapter, not the zero start
        candidates[method] = model
    candidates["merged"] = merge_lora(copy.deepcopy(candidates["wrapper"]))
    return {k: m.eval() for k, m in candidates.items()}


def bench_latency(
    models: dict[str, tuple[nn.Module, int]],
    batch_sizes: Sequence[int] = (1, 256),
    rounds: int = 15,
    device: torch.device | str = "cpu",
    min_seconds: float = 0.005,
) -> list[dict]:
    """Forward time (ms, median over ``rounds``) of each model's base, merged, wrapper and
    parametrize versions. ``models``: name -> (model, in_features). Each round times
    every candidate once, in a rotating order; each timing repeats the call enough
    times to last ``min_seconds``; everything is warmed up first."""
    device = torch.device(device)
    cases = []
    for name, (base, in_features) in models.items():
        candidates = {k: m.to(device) for k, m in _latency_candidates(base.to(device)).items()}
        for batch_size in batch_sizes:
            x = torch.randn(batch_size, in_features, device=device)
            with torch.inference_mode():
                for model in candidates.values():  # warm up
                    model(x)
                once = _timed(lambda base=candidates["base"], x=x: base(x), device)
                inner = max(1, math.ceil(min_seconds / max(once, 1e-7)))
                times: dict[str, list[float]] = {k: [] for k in candidates}
                keys = list(candidates)
                for i in range(rounds):
                    for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                        model = candidates[key]

                        def call(model=model, x=x, inner=inner) -> None:
                            for _ in range(inner):
                                model(x)

                        times[key].append(_timed(call, device) / inner)
            ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
            cases.append(
                {
                    "model": name,
                    "batch_size": batch_size,
                    **{f"{k}_ms": v for k, v in ms.items()},
                    **{f"{k}_ratio": ms[k] / ms["base"] for k in ("merged", "wrapper", "parametrize")},
                }
            )
    return cases


# ---------------------------------------------------------------- LoRA vs full, per step

_CHILD = """
import json, resource, sys, time, torch
from lora_teach.bench import memory_child
print(json.dumps(memory_child(**json.loads(sys.argv[1]))))
"""


def memory_child(
    width: int, mode: str, r: int, batch_size: int, steps: int, threads: int, device: str
) -> dict:
    """Run in a fresh process: build ``wide_mlp(width)``, then ``mode`` = "forward"
    (forward passes under no_grad: the baseline), "lora" (wrapper, r) or "full", and
    train ``steps`` steps of MSE regression. Returns the process's peak memory (max RSS
    on the CPU, max allocated on CUDA), the median step time and tensor byte counts."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    # One step on a 1x1 layer first, in every mode: it loads what backward and Adam load
    # (about 150 MB of RSS on the CPU, whatever the width), so the subtraction leaves
    # only what grows with the model.
    tiny = nn.Linear(1, 1).to(dev)
    tiny_optimizer = make_optimizer(tiny.parameters())
    tiny(torch.ones(1, 1, device=dev)).sum().backward()
    tiny_optimizer.step()
    del tiny, tiny_optimizer
    model = wide_mlp(width).to(dev)
    x = torch.randn(batch_size, width, device=dev)
    target = torch.randn(batch_size, width, device=dev)
    result = {"trainable": 0, "param_bytes": 0, "grad_bytes": 0, "optimizer_state_bytes": 0}
    times = []
    if mode == "forward":
        with torch.no_grad():
            for _ in range(steps + 2):
                times.append(_timed(lambda: model(x), dev))
    else:
        if mode == "lora":
            add_lora(model, r=r, lora_alpha=2 * r, method="wrapper")
            mark_only_lora_as_trainable(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(trainable, lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), target).backward()
            optimizer.step()

        for _ in range(steps + 2):
            times.append(_timed(step, dev))
        result = {
            "trainable": sum(p.numel() for p in trainable),
            "param_bytes": sum(p.nbytes for p in trainable),
            "grad_bytes": sum(p.grad.nbytes for p in trainable),
            "optimizer_state_bytes": sum(
                t.nbytes for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)
            ),
        }
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = _peak_rss_bytes()
    return {**result, "peak_bytes": int(peak), "step_ms": 1000 * statistics.median(times[2:])}


def _peak_rss_bytes() -> int:
    """This process's peak resident set size. On Linux, VmHWM of /proc/self/status: it
    belongs to the address space made at exec, whereas ru_maxrss carries over the peak
    of the parent that forked this child (which made every child read the parent's peak)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _run_child(**kwargs) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(kwargs)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the memory benchmark child {kwargs} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _slope(widths: Sequence[int], values: Sequence[float]) -> float | None:
    """Exponent k of values ~ width**k, a least-squares line in log-log (None if it can't be fit)."""
    points = [(math.log(w), math.log(v)) for w, v in zip(widths, values) if v > 0]
    if len(points) < 2:
        return None
    mean_x = statistics.fmean(p[0] for p in points)
    mean_y = statistics.fmean(p[1] for p in points)
    spread = sum((px - mean_x) ** 2 for px, _ in points)
    return sum((px - mean_x) * (py - mean_y) for px, py in points) / spread if spread else None


def bench_lora_vs_full(
    widths: Sequence[int] = (256, 1024, 4096),
    r: int = LORA_R,
    batch_size: int = MEMORY_BATCH,
    steps: int = 5,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> dict:
    """Per training step of ``wide_mlp(width)`` (two width x width layers), LoRA (wrapper,
    r) against full fine-tuning: trainable parameters, bytes of trainable params +
    gradients + Adam state (from the tensors), peak memory in a child process minus a
    child that only runs the forward (same model and batch, no_grad), and step time."""
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    rows = []
    for width in widths:
        common = {"width": width, "r": r, "batch_size": batch_size, "steps": steps, "threads": threads}
        baseline = _run_child(mode="forward", device=device.type, **common)
        for mode in ("lora", "full"):
            child = _run_child(mode=mode, device=device.type, **common)
            tensor_bytes = child["param_bytes"] + child["grad_bytes"] + child["optimizer_state_bytes"]
            rows.append(
                {
                    "width": width,
                    "method": mode,
                    "trainable": child["trainable"],
                    "param_bytes": child["param_bytes"],
                    "grad_bytes": child["grad_bytes"],
                    "optimizer_state_bytes": child["optimizer_state_bytes"],
                    "tensor_bytes": tensor_bytes,
                    "peak_bytes": child["peak_bytes"],
                    "baseline_peak_bytes": baseline["peak_bytes"],
                    "peak_minus_forward_bytes": child["peak_bytes"] - baseline["peak_bytes"],
                    "step_ms": child["step_ms"],
                    "forward_ms": baseline["step_ms"],
                }
            )
    growth = {}
    for mode in ("lora", "full"):
        mine = [row for row in rows if row["method"] == mode]
        ws = [row["width"] for row in mine]
        growth[mode] = {
            key: _slope(ws, [row[key] for row in mine])
            for key in ("trainable", "tensor_bytes", "peak_minus_forward_bytes", "step_ms")
        }
    return {
        "device": device.type,
        "threads": threads if device.type == "cpu" else None,
        "r": r,
        "batch_size": batch_size,
        "model": "two Linear(width, width) layers with ReLU between; LoRA on both (wrapper); biases frozen",
        "peak_measure": (
            "max RSS of a child process (CUDA: max allocated) minus that of a child building the same "
            "model and running the forward under no_grad (both first take one step of a 1x1 layer, "
            "so what backward and Adam load whatever the width cancels)"
        ),
        "rows": rows,
        "growth_exponent": growth,
    }


# ---------------------------------------------------------------- the course


def bench_course(notebook_dir: Path | str = "notebooks", timeout: int = 600) -> dict:
    """Wall seconds of each notebook executed top to bottom in a fresh kernel (nbclient)."""
    import nbformat
    from nbclient import NotebookClient

    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    for path in sorted(Path(notebook_dir).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
        except Exception as error:  # noqa: BLE001 - report the notebook, keep timing the others
            failed[path.name] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
        seconds[path.name] = time.perf_counter() - start
    return {"notebooks": seconds, "total": sum(seconds.values()), "failed": failed}


# ---------------------------------------------------------------- all of it


def run_benchmarks(
    quick: bool = True,
    pipeline_steps: int | None | str = "default",
    repeats: int | None = None,
    thread_counts: Sequence[int] | None = None,
    epoch_steps: int | None = None,
    widths: Sequence[int] | None = None,
    latency_width: int = 4096,
    rounds: int | None = None,
    memory_steps: int = 5,
    course: bool | None = None,
    notebook_dir: Path | str = "notebooks",
    only: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure every figure (or those in ``only``) on the CPU, and on CUDA when present.

    Returns {figure name: {device: measurement}} (``course_seconds``: one measurement
    or None) plus ``meta``. ``quick`` times ``pipeline_steps`` steps at batch size 10
    (default 600) instead of the whole epoch; the course runs only when not quick.
    """
    settings = QUICK if quick else FULL
    if pipeline_steps == "default":
        pipeline_steps = settings["pipeline_steps"]
    repeats = settings["repeats"] if repeats is None else repeats
    rounds = settings["rounds"] if rounds is None else rounds
    widths = tuple(settings["widths"] if widths is None else widths)
    counts = {
        "repeats": repeats,
        "rounds": rounds,
        "latency_width": latency_width,
        "memory_steps": memory_steps,
    }
    counts.update({"pipeline_steps": pipeline_steps or 1, "epoch_steps": epoch_steps or 1})
    counts.update({f"widths[{i}]": w for i, w in enumerate(widths)})
    counts.update({f"thread_counts[{i}]": n for i, n in enumerate(thread_counts or ())})
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not widths:
        raise ValueError("widths must name at least one width")
    default_threads = torch.get_num_threads()
    thread_counts = tuple(thread_counts or sorted({1, default_threads}))
    course = (not quick) if course is None else course
    only = set(only or FIGURES)
    unknown = only - set(FIGURES)
    if unknown:
        raise ValueError(f"only must name figures among {FIGURES}, got {sorted(unknown)}")
    log = log or (lambda message: None)
    results: dict = {
        "meta": {
            "mode": "quick" if quick else "full",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "default_threads": default_threads,
            "devices": [d.type for d in devices_to_measure()],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    }
    for device in devices_to_measure():
        name = device.type
        if "data_pipeline_speedup_bs10" in only:
            log(f"[{name}] data pipeline at batch size 10 ...")
            results.setdefault("data_pipeline_speedup_bs10", {})[name] = bench_data_pipeline_threads(
                thread_counts, pipeline_steps, repeats, device
            )
        if "epoch_seconds_bs128" in only:
            log(f"[{name}] one epoch at batch size 128 ...")
            results.setdefault("epoch_seconds_bs128", {})[name] = bench_epoch(
                128, repeats, epoch_steps, None, device
            )
        if only & {"merged_latency_ratio", "unmerged_latency_ratio"}:
            log(f"[{name}] inference latency, merged and unmerged ...")
            set_seed(0)
            models = {
                "DigitsNet": (DigitsNet("corrected"), 784),
                f"MLP-{latency_width}": (wide_mlp(latency_width), latency_width),
            }
            cases = bench_latency(models, (1, 256), rounds, device)
            if "merged_latency_ratio" in only:
                results.setdefault("merged_latency_ratio", {})[name] = {
                    "worst": max(c["merged_ratio"] for c in cases),
                    "rounds": rounds,
                    "cases": [
                        {k: c[k] for k in ("model", "batch_size", "base_ms", "merged_ms", "merged_ratio")}
                        for c in cases
                    ],
                }
            if "unmerged_latency_ratio" in only:
                results.setdefault("unmerged_latency_ratio", {})[name] = {
                    method: {
                        "worst": max(c[f"{method}_ratio"] for c in cases),
                        "cases": [
                            {
                                "model": c["model"],
                                "batch_size": c["batch_size"],
                                "base_ms": c["base_ms"],
                                f"{method}_ms": c[f"{method}_ms"],
                                "ratio": c[f"{method}_ratio"],
                            }
                            for c in cases
                        ],
                    }
                    for method in ("wrapper", "parametrize")
                }
        if "lora_vs_full_step" in only:
            log(f"[{name}] LoRA vs full fine-tuning per step, widths {list(widths)} ...")
            results.setdefault("lora_vs_full_step", {})[name] = bench_lora_vs_full(
                widths, steps=memory_steps, threads=default_threads, device=device
            )
    if "course_seconds" in only:
        if course:
            log("executing the notebooks ...")
            results["course_seconds"] = bench_course(notebook_dir)
        else:
            results["course_seconds"] = None
    return results


# ---------------------------------------------------------------- output


def _check(figure: str, value: float | None) -> str:
    if value is None or figure not in TARGETS:
        return ""
    op, bound = TARGETS[figure]
    holds = value >= bound if op == ">=" else value <= bound
    return f"target {op} {bound:g}: {'OK' if holds else 'MISSED'}"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


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


# ---------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``lora-teach bench``."""
    parser.add_argument("--full", action="store_true", help="whole epochs, more repeats, and the notebooks")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--markdown", action="store_true", help="print the headline figures as a Markdown table"
    )
    parser.add_argument(
        "--steps", type=positive_int, help="steps per side at batch size 10 (quick default: 600)"
    )
    parser.add_argument("--epoch-steps", type=positive_int, help="cap the batch-128 epoch at this many steps")
    parser.add_argument("--repeats", type=positive_int, help="training repeats per side (quick 2, full 3)")
    parser.add_argument("--threads", type=_int_list, help="thread counts to try at batch size 10, e.g. 1,2")
    parser.add_argument(
        "--widths", type=_int_list, help="MLP widths for LoRA vs full (default 256,1024,4096)"
    )
    parser.add_argument(
        "--latency-width", type=positive_int, default=4096, help="width of the wide MLP (default 4096)"
    )
    parser.add_argument("--rounds", type=positive_int, help="interleaved latency rounds (quick 15, full 41)")
    parser.add_argument("--memory-steps", type=positive_int, default=5, help="timed steps per memory child")
    parser.add_argument("--notebooks", default="notebooks", help="folder of notebooks for course_seconds")
    parser.add_argument("--only", help=f"comma-separated figures to measure, among {', '.join(FIGURES)}")
    parser.add_argument("--plot", help="also save the LoRA-vs-full memory plot to this PNG path")
    parser.add_argument(
        "--from-json", help="measure nothing: read results saved with --json and print/plot them"
    )


def _measure(args: argparse.Namespace) -> dict:
    only = [f.strip() for f in args.only.split(",") if f.strip()] if args.only else None
    return run_benchmarks(
        quick=not args.full,
        pipeline_steps=args.steps if args.steps else ("default" if not args.full else None),
        repeats=args.repeats,
        thread_counts=args.threads,
        epoch_steps=args.epoch_steps,
        widths=args.widths,
        latency_width=args.latency_width,
        rounds=args.rounds,
        memory_steps=args.memory_steps,
        notebook_dir=args.notebooks,
        only=only,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )


META_KEYS = ("mode", "torch", "cpu_count", "devices", "date")


def load_results(path: Path | str) -> dict:
    """Results saved with ``lora-teach bench --json``; ValueError (one line) for anything else."""
    where = f"--from-json {path}"
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{where} cannot be read ({error_line(error)})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not JSON ({error.msg}, line {error.lineno})") from error
    if not isinstance(results, dict) or not isinstance(results.get("meta"), dict):
        raise ValueError(
            f"{where} is not a saved bench result (no 'meta'); save one with `lora-teach bench --json`"
        )
    missing = [key for key in META_KEYS if key not in results["meta"]]
    unknown = sorted(set(results) - set(FIGURES) - {"meta"})
    if missing or unknown:
        what = f"'meta' lacks {missing}" if missing else f"unknown keys {unknown}"
        raise ValueError(
            f"{where} is not a saved bench result ({what}); save one with `lora-teach bench --json`"
        )
    return results


def _check_plot_path(path: str) -> None:
    """Refuse a plot path matplotlib cannot save to, before anything is measured."""
    from matplotlib.figure import Figure

    check_output_file(path, "--plot")
    formats = Figure().canvas.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise OutputError(f"--plot {path}: give a file name ending in .png (or {', '.join(sorted(formats))})")


def run(args: argparse.Namespace) -> int:
    """Check every option and output path, measure (or load), print, then save the plot."""
    try:
        only = [f.strip() for f in args.only.split(",") if f.strip()] if args.only else list(FIGURES)
        unknown = sorted(set(only) - set(FIGURES))
        if unknown:
            raise ValueError(f"--only must name figures among {', '.join(FIGURES)}, got {', '.join(unknown)}")
        if args.plot:
            _check_plot_path(args.plot)
            if not args.from_json and "lora_vs_full_step" not in only:
                raise ValueError("--plot draws lora_vs_full_step; add it to --only or drop --plot")
        if (
            args.full
            and "course_seconds" in only
            and not args.from_json
            and not Path(args.notebooks).is_dir()
        ):
            raise ValueError(
                f"--notebooks {args.notebooks} is not a folder (course_seconds runs its notebooks)"
            )
        results = load_results(args.from_json) if args.from_json else _measure(args)
        if args.plot and "lora_vs_full_step" not in results:
            raise ValueError(f"--from-json {args.from_json} has no lora_vs_full_step to plot; drop --plot")
        text = (
            json.dumps(results, indent=2)
            if args.json
            else markdown_summary(results)
            if args.markdown
            else format_table(results)
        )
    except (KeyError, TypeError) as error:
        if not args.from_json:
            raise
        print(
            f"error: --from-json {args.from_json} is not a complete bench result "
            f"({type(error).__name__}: {error}); save one with `lora-teach bench --json`",
            file=sys.stderr,
        )
        return 2
    except (ValueError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(text)
    if args.plot:
        try:
            print(f"plot saved to {plot_memory(results, args.plot)}", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - the results are printed; the plot error is one line
            print(f"error: the plot was not saved to {args.plot}: {error_line(error)}", file=sys.stderr)
            return 1
    return 0
