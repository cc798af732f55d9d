"""``merged_latency_ratio`` and ``unmerged_latency_ratio``: forward time of a model with LoRA
merged in, or kept as wrapper or parametrize adapters, against the base model. Timed with
``Timer.blocked_autorange`` in interleaved rounds."""

from __future__ import annotations

import copy
import functools
import statistics
from collections.abc import Sequence

import torch
from torch import nn

from lora_teach.adapters import add_lora, merge_lora
from lora_teach.bench.timing import LORA_R, median_seconds


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
    threads: int | None = None,
) -> list[dict]:
    """Forward time (ms, median over ``rounds``) of each model's base, merged, wrapper and
    parametrize versions on x (batch, in_features). ``models``: name -> (model, in_features).
    Each round times every candidate once, in a rotating order (to cancel drift), by
    ``Timer.blocked_autorange`` (its warm-up, then blocks of calls for ``min_seconds``), at
    ``threads`` intra-op threads (None: the current count)."""
    device = torch.device(device)
    cases = []
    for name, (base, in_features) in models.items():
        candidates = {k: m.to(device) for k, m in _latency_candidates(base.to(device)).items()}
        for batch_size in batch_sizes:
            x = torch.randn(batch_size, in_features, device=device)
            times: dict[str, list[float]] = {k: [] for k in candidates}
            keys = list(candidates)
            with torch.inference_mode():
                for i in range(rounds):
                    for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                        forward = functools.partial(candidates[key], x)
                        times[key].append(median_seconds(forward, threads, min_seconds))
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
