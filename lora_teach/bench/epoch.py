"""``epoch_seconds_bs128``: one epoch of the corrected DigitsNet at batch size 128. Each repeat
trains a fresh model once (``seconds_once``): a Timer would add whole warm-up epochs."""

from __future__ import annotations

import statistics

import torch

from lora_teach.bench.timing import num_threads, seconds_once
from lora_teach.data import Batches, load_mnist
from lora_teach.models import DigitsNet
from lora_teach.train import evaluate, set_seed, train


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
                seconds_once(
                    lambda m=model, b=batches: train(m, b, num_steps=num_steps, progress=False), device
                )
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
