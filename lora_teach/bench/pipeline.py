"""``data_pipeline_speedup_bs10``: the tutorial's DataLoader path against ``Batches`` at batch
size 10, interleaved, at each thread count. Each run trains a fresh model, so it is timed once
(``seconds_once``): a Timer would add warm-up runs of hundreds of steps."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from torch import nn

from lora_teach.bench.timing import num_threads, seconds_once
from lora_teach.data import Batches, load_mnist, torchvision_loader
from lora_teach.models import DigitsNet
from lora_teach.train import evaluate, make_optimizer, set_seed, train


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
                    seconds_once(
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
