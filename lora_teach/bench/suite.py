"""Every figure in one run: ``run_benchmarks`` measures them (or those asked for) on the CPU,
and on CUDA when present, into {figure: {device: measurement}} plus ``meta``."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lora_teach.bench.course import bench_course
from lora_teach.bench.epoch import bench_epoch
from lora_teach.bench.latency import bench_latency
from lora_teach.bench.memory import bench_lora_vs_full, wide_mlp
from lora_teach.bench.pipeline import bench_data_pipeline_threads
from lora_teach.bench.serving import bench_serving, synthetic_bank
from lora_teach.bench.timing import devices_to_measure
from lora_teach.models import DigitsNet
from lora_teach.train import set_seed

FIGURES = (
    "data_pipeline_speedup_bs10",
    "epoch_seconds_bs128",
    "merged_latency_ratio",
    "unmerged_latency_ratio",
    "lora_vs_full_step",
    "serving_throughput",
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
SERVING_ROUNDS = {"quick": 5, "full": 15}  # interleaved rounds of serving_throughput


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
    serving_rounds: int | None = None,
    serving_lengths: Sequence[int] = (16, 64),
    serving_distinct: Sequence[int] = (1, 2, 4, 8),
) -> dict:
    """Measure every figure (or those in ``only``) on the CPU, and on CUDA when present.

    Returns {figure name: {device: measurement}} (``course_seconds``: one measurement
    or None) plus ``meta``. ``quick`` times ``pipeline_steps`` steps at batch size 10
    (default 600) instead of the whole epoch; the course runs only when not quick.
    ``serving_rounds`` (quick 5, full 15), ``serving_lengths`` and ``serving_distinct`` size the serving figure.
    """
    settings = QUICK if quick else FULL
    if pipeline_steps == "default":
        pipeline_steps = settings["pipeline_steps"]
    repeats = settings["repeats"] if repeats is None else repeats
    rounds = settings["rounds"] if rounds is None else rounds
    widths = tuple(settings["widths"] if widths is None else widths)
    serving_rounds = (
        SERVING_ROUNDS["quick" if quick else "full"] if serving_rounds is None else serving_rounds
    )
    counts = {
        "serving_rounds": serving_rounds,
        "repeats": repeats,
        "rounds": rounds,
        "latency_width": latency_width,
        "memory_steps": memory_steps,
    }
    counts.update({"pipeline_steps": pipeline_steps or 1, "epoch_steps": epoch_steps or 1})
    counts.update({f"widths[{i}]": w for i, w in enumerate(widths)})
    counts.update({f"thread_counts[{i}]": n for i, n in enumerate(thread_counts or ())})
    counts.update({f"serving_lengths[{i}]": n for i, n in enumerate(serving_lengths)})
    counts.update({f"serving_distinct[{i}]": n for i, n in enumerate(serving_distinct)})
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not widths:
        raise ValueError("widths must name at least one width")
    if serving_rounds < 2:
        raise ValueError(f"serving_rounds must be at least 2 (its figures are ranges), got {serving_rounds}")
    if not serving_lengths or not serving_distinct or max(serving_distinct) > 8:
        raise ValueError(
            f"serving_lengths and serving_distinct must be non-empty, distinct counts at most 8 (the bench's "
            f"adapters), got {list(serving_lengths)} and {list(serving_distinct)}"
        )
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
        if "serving_throughput" in only:
            log(f"[{name}] serving many adapters: grouped, gather, merged ...")
            bank = synthetic_bank(8, device)
            results.setdefault("serving_throughput", {})[name] = bench_serving(
                bank, lengths=serving_lengths, distinct=serving_distinct, rounds=serving_rounds, log=log
            )
    if "course_seconds" in only:
        if course:
            log("executing the notebooks ...")
            results["course_seconds"] = bench_course(notebook_dir)
        else:
            results["course_seconds"] = None
    return results
