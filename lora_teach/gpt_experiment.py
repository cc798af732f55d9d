"""Fine-tune the pretrained TinyGPT on code: full fine-tuning and LoRA per target set, over a learning-rate
grid and random seeds, measuring learning (bits/char on code) and forgetting (bits/char on prose).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.gpt import ALL_LINEAR, bits_per_char, load_corpus, pretrained_tiny_gpt, train_steps
from lora_teach.outputs import RESUME_FIX, check_output_file, read_json_to_resume, write_new_file

QV = ("q_proj", "v_proj")
TARGETS = {"all": ALL_LINEAR, "qv": QV}  # "all" = every linear layer in the blocks (not the head)

# method name -> (kind, target set, rank); full fine-tuning has neither
METHODS: dict[str, tuple[str, str | None, int | None]] = {
    "full": ("full", None, None),
    "lora_all_r8": ("lora", "all", 8),
    "lora_all_r2": ("lora", "all", 2),
    "lora_qv_r8": ("lora", "qv", 8),
    "lora_qv_r64": ("lora", "qv", 64),  # the rank sweep's top, tuned: compared with all-linear r=2
}

SETTINGS: dict[str, dict[str, Any]] = {
    # --full: every method over a grid of three, then the q,v rank sweep, 3 seeds, 300 steps (about 45 min on a core)
    "full": {
        "steps": 300,
        "batch_size": 16,
        "seeds": [0, 1, 2],
        "grid": {
            "full": [3e-4, 1e-3, 3e-3],
            "lora_all_r8": [3e-3, 1e-2, 3e-2, 1e-1],  # 3e-2 won the first grid of three: one more
            "lora_all_r2": [3e-3, 1e-2, 3e-2],
            "lora_qv_r8": [3e-3, 1e-2, 3e-2],
            "lora_qv_r64": [1e-2, 3e-2, 1e-1],
        },
        "rank_sweep": {"targets": "qv", "ranks": [1, 2, 4, 16, 64], "lr": 1e-2},
        "eval_chars": 16384,
    },
    # the default (and the committed results): the equal-budget question and full fine-tuning at two learning
    # rates, 2 seeds (about 8 minutes on an idle core)
    "reduced": {
        "steps": 300,
        "batch_size": 16,
        "seeds": [0, 1],
        "grid": {"full": [3e-4, 3e-3], "lora_all_r2": [1e-2], "lora_qv_r8": [1e-2]},
        "rank_sweep": {"targets": "qv", "ranks": [], "lr": 1e-2},
        "eval_chars": 16384,
    },
    # for the tests: seconds
    "fast": {
        "steps": 3,
        "batch_size": 4,
        "seeds": [0, 1],
        "grid": {"full": [1e-3], "lora_qv_r8": [1e-2]},
        "rank_sweep": {"targets": "qv", "ranks": [2], "lr": 1e-2},
        "eval_chars": 512,
    },
}


def with_method(base: nn.Module, kind: str, targets: str | None = None, r: int | None = None) -> nn.Module:
    """A copy of ``base`` ready to fine-tune: every parameter trainable ("full") or LoRA of rank ``r`` on
    ``targets`` ("all" or "qv") with only the adapter trainable ("lora"). ``base`` is not changed."""
    model = copy.deepcopy(base)
    if kind == "full":
        model.requires_grad_(True)
    elif kind == "lora":
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {sorted(TARGETS)}, got {targets!r}")
        add_lora(model, r, target_modules=list(TARGETS[targets]))
        mark_only_lora_as_trainable(model)
    else:
        raise ValueError(f"kind must be 'full' or 'lora', got {kind!r}")
    return model


def fine_tune_once(
    base: nn.Module,
    kind: str,
    targets: str | None,
    r: int | None,
    lr: float,
    seed: int,
    steps: int = 300,
    batch_size: int = 16,
    eval_chars: int = 16384,
    corpus: str = "code",
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of ``base`` on the training split of ``corpus`` (one thread, seeded) and measure it.

    Returns the fine-tuned model and a record: bits/char on code and prose validation, trainable count, seconds.
    Code is scored on two disjoint slices of its validation split: ``code_bpc`` on the first ``eval_chars``
    characters (where a sweep chooses its learning rate) and ``code_report_bpc`` on the next ``eval_chars``
    (where it reports the chosen rate), so a choice is never reported on the characters that made it.
    ``progress`` shows a bar over the training steps.
    """
    torch.manual_seed(seed)  # the adapter's initial A
    model = with_method(base, kind, targets, r)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        train_steps(model, load_corpus(corpus, "train"), steps, lr, batch_size, seed, progress=progress)
        seconds = time.perf_counter() - start
        code_val = load_corpus("code", "val")
        code, report = bits_per_char(model, code_val, eval_chars), _report_bpc(model, code_val, eval_chars)
        prose = bits_per_char(model, load_corpus("prose", "val"), eval_chars)
    finally:
        torch.set_num_threads(threads)
    record = {"kind": kind, "targets": targets, "r": r, "lr": lr, "seed": seed, "steps": steps}
    record |= {"trainable": trainable, "code_bpc": code, "code_report_bpc": report, "prose_bpc": prose}
    record["seconds"] = round(seconds, 1)
    return model, record


def _report_bpc(model: nn.Module, code_val: torch.Tensor, eval_chars: int) -> float | None:
    """Bits/char on the report slice, the held-out code after the first ``eval_chars`` characters (None when
    the split has too little left for one)."""
    rest = code_val[eval_chars:]
    return bits_per_char(model, rest, eval_chars) if len(rest) > min(eval_chars, 1024) else None


def planned_runs(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (method, lr, seed) the settings ask for, seed by seed (so an early stop still has whole seeds)."""
    runs = []
    for seed in settings["seeds"]:
        for method, lrs in settings["grid"].items():
            kind, targets, r = METHODS[method]
            runs += [{"kind": kind, "targets": targets, "r": r, "lr": lr, "seed": seed} for lr in lrs]
        sweep = settings["rank_sweep"]
        for r in sweep["ranks"]:
            run = {"kind": "lora", "targets": sweep["targets"], "r": r, "lr": sweep["lr"], "seed": seed}
            if run not in runs:
                runs.append(run)
    return runs


def _key(run: dict[str, Any]) -> tuple:
    return (run["kind"], run["targets"], run["r"], run["lr"], run["seed"])


def run_experiment(
    out: Path | str,
    settings: str = "reduced",
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    base: nn.Module | None = None,
) -> dict[str, Any]:
    """Run the sweep ``settings`` ("full", "reduced" or "fast") and write the results JSON to ``out``
    after every run. Refuses to overwrite ``out`` unless ``force``; ``resume`` keeps its finished runs."""
    if settings not in SETTINGS:
        raise ValueError(f"settings must be one of {sorted(SETTINGS)}, got {settings!r}")
    for name, value in (("force", force), ("resume", resume), ("progress", progress)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if force and resume:
        raise ValueError("pass either force (start again) or resume (keep finished runs), not both")
    out = check_output_file(out, "--out")
    chosen = SETTINGS[settings]
    results: dict[str, Any] = {"settings_name": settings, "settings": chosen, "runs": []}
    exists = out.exists()
    if exists:
        if resume:
            results = _read_results(out)
            if results.get("settings") != json.loads(json.dumps(chosen)):
                raise ValueError(
                    f"{out} was made with other settings; pass force=True (--force) to start again"
                )
        elif not force:
            raise FileExistsError(f"{out} exists; pass --force to overwrite it or --resume to continue it")
    base = base if base is not None else pretrained_tiny_gpt()
    if "base" not in results:
        code_val, eval_chars = load_corpus("code", "val"), chosen["eval_chars"]
        results["base"] = {
            "code_bpc": bits_per_char(base, code_val, eval_chars),
            "code_report_bpc": _report_bpc(base, code_val, eval_chars),
            "prose_bpc": bits_per_char(base, load_corpus("prose", "val"), eval_chars),
            "parameters": sum(p.numel() for p in base.parameters()),
        }
    done = {_key(run) for run in results["runs"]}
    todo = [run for run in planned_runs(chosen) if _key(run) not in done]
    bar = todo
    if progress:
        from lora_teach.progress import tqdm

        bar = tqdm(todo, desc=f"experiment-gpt ({settings})", unit="run")
    written = False
    for run in bar:
        _, record = fine_tune_once(
            base,
            **run,
            steps=chosen["steps"],
            batch_size=chosen["batch_size"],
            eval_chars=chosen["eval_chars"],
        )
        results["runs"].append(record)
        text = json.dumps(results, indent=1) + "\n"
        # the first write creates the file exclusively (unless --force or --resume): a file that
        # appeared while this ran is never replaced; later writes replace our own file
        replace = force or (resume and exists) or written
        write_new_file(out, lambda tmp, text=text: tmp.write_text(text), force=replace, option="--out")
        written = True
    if not todo:
        write_new_file(out, lambda tmp: tmp.write_text(json.dumps(results, indent=1) + "\n"), force=exists)
    return results


def _read_results(out: Path) -> dict[str, Any]:
    """The results JSON that ``--resume`` continues, or a one-line ValueError naming the file."""
    fix = RESUME_FIX
    results = read_json_to_resume(out)
    if (
        not isinstance(results, dict)
        or not isinstance(results.get("runs"), list)
        or not all(isinstance(run, dict) for run in results["runs"])
    ):
        raise ValueError(f"--resume: {out} is not an experiment-gpt results file (no list of 'runs'); {fix}")
    try:
        {_key(run) for run in results["runs"]}
    except (KeyError, TypeError):
        raise ValueError(f"--resume: {out} has runs without kind/targets/r/lr/seed; {fix}") from None
    return results


def method_label(kind: str, targets: str | None, r: int | None) -> str:
    """A short label: "full fine-tuning" or e.g. "LoRA q,v r=8"."""
    if kind == "full":
        return "full fine-tuning"
    return f"LoRA {'q,v' if targets == 'qv' else 'all linear'} r={r}"


SLICES = ("code_bpc", "code_report_bpc")  # the two disjoint slices of held-out code every run is scored on


def grouped(results: dict[str, Any]) -> dict[tuple, dict[str, list[float]]]:
    """Runs grouped by (kind, targets, r, lr): lists over seeds of code_bpc, code_report_bpc (where the runs
    have it), prose_bpc and seed, and the trainable count."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for run in results["runs"]:
        key = (run["kind"], run["targets"], run["r"], run["lr"])
        g = groups.setdefault(
            key, {"code_bpc": [], "prose_bpc": [], "seed": [], "trainable": run["trainable"]}
        )
        for quantity in ("code_bpc", "prose_bpc", "seed", "code_report_bpc"):
            if run.get(quantity) is not None:
                g.setdefault(quantity, []).append(run[quantity])
    return groups


def best_lr(
    results: dict[str, Any], kind: str, targets: str | None, r: int | None, on: str = "code_bpc"
) -> float:
    """The learning rate of the grid with the lowest mean bits/char on code for one method, measured ``on`` one
    slice ("code_bpc", the first, or "code_report_bpc", the second); report it on the other."""
    if on not in SLICES:
        raise ValueError(f"on must be one of {SLICES}, got {on!r}")
    groups = {k: v for k, v in grouped(results).items() if k[:3] == (kind, targets, r)}
    if not groups:
        raise ValueError(f"no runs of {method_label(kind, targets, r)} in the results")
    if any(len(g.get(on, [])) != len(g["seed"]) for g in groups.values()):
        raise ValueError(
            f"the runs of {method_label(kind, targets, r)} have no {on}; rerun the sweep to score it"
        )
    return min(groups, key=lambda k: sum(groups[k][on]) / len(groups[k][on]))[3]
