"""``serving_throughput``: characters per second of an ``AdapterBank``'s three strategies on mixed batches,
against the number of distinct adapters in the batch and how popular each is. Every strategy is timed on
the same batch in each round, in a rotating order, and the figures are ranges over rounds, with the ratio
merged / unmerged taken within each round."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from lora_teach.bench.timing import sync
from lora_teach.serving import STRATEGIES, AdapterBank

POPULARITY = ("uniform", "skewed")


def popularity_names(names: Sequence[str], distinct: int, rows: int, popularity: str) -> list[str]:
    """Row i's adapter, for ``rows`` rows over the first ``distinct`` of ``names``, each used at least once.

    "uniform": round robin (equal shares); "skewed": shares proportional to 1/rank (Zipf's law: the first
    adapter is the most requested), rounded by largest remainder.
    """
    if popularity not in POPULARITY:
        raise ValueError(f"popularity must be one of {POPULARITY}, got {popularity!r}")
    if not 1 <= distinct <= min(len(names), rows):
        raise ValueError(
            f"distinct must be between 1 and min(len(names), rows) = {min(len(names), rows)}, got {distinct}"
        )
    chosen = list(names[:distinct])
    if popularity == "uniform":
        return [chosen[i % distinct] for i in range(rows)]
    weights = [1 / (i + 1) for i in range(distinct)]
    spare = rows - distinct  # one row each first, the rest by weight
    shares = [spare * w / sum(weights) for w in weights]
    counts = [1 + int(s) for s in shares]
    order = sorted(range(distinct), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in order[: rows - sum(counts)]:
        counts[i] += 1
    return [name for name, count in zip(chosen, counts) for _ in range(count)]


def _seconds_per_call(fn: Callable[[], object], device: torch.device, min_seconds: float) -> float:
    """Mean seconds per call over as many calls as fill ``min_seconds`` (at least one)."""
    calls, start = 0, time.perf_counter()
    sync(device)
    while True:
        fn()
        calls += 1
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def _range(values: Sequence[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_serving(
    bank: AdapterBank,
    rows: int = 16,
    lengths: Sequence[int] = (16, 64),
    distinct: Sequence[int] = (1, 2, 4, 8),
    popularity: Sequence[str] = POPULARITY,
    rounds: int = 5,
    min_seconds: float = 0.05,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Characters per second (rows x length / seconds per call) of every strategy on every workload.

    A workload is a batch of ``rows`` rows of ``length`` random token ids whose names spread over
    ``distinct`` adapters of the bank with the given popularity (skewed equals uniform at 1 adapter, so it is
    left out there). Each round times every workload and strategy once, strategies in a rotating order.
    Returns {"rows", "rounds", "threads", "device", "workloads": [{"length", "distinct", "popularity",
    "chars_per_s": {strategy: [one per round]}, "range": {strategy: {median, min, max}},
    "merged_over": {strategy: {median, min, max}} (merged / unmerged, paired by round)}],
    "crossover": {length: the first distinct count at which an unmerged strategy beat merged in every
    round, or None}}.
    """
    if rounds < 2:
        raise ValueError(f"rounds must be at least 2 (the figures are ranges over rounds), got {rounds}")
    vocab = bank.base.config.vocab_size if hasattr(bank.base, "config") else 2
    device = bank.base_device
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for length in lengths:
        ids = torch.randint(0, vocab, (rows, length), generator=generator).to(device)
        for k in distinct:
            for pop in popularity:
                if pop == "skewed" and k == 1:
                    continue
                names = popularity_names(bank.names, k, rows, pop)
                cases.append({"length": length, "distinct": k, "popularity": pop, "ids": ids, "names": names})
    times = {(i, s): [] for i in range(len(cases)) for s in STRATEGIES}
    with torch.inference_mode():
        for case in cases:  # warm-up: the gather stacks, allocator, caches
            for strategy in STRATEGIES:
                bank(case["ids"], case["names"], strategy)
        for r in range(rounds):
            if log:
                log(f"  round {r + 1} of {rounds}")
            order = list(STRATEGIES[r % 3 :] + STRATEGIES[: r % 3])
            for i, case in enumerate(cases):
                for strategy in order:

                    def call(case=case, strategy=strategy):
                        return bank(case["ids"], case["names"], strategy)

                    times[(i, strategy)].append(_seconds_per_call(call, device, min_seconds))
    workloads = []
    for i, case in enumerate(cases):
        chars = rows * case["length"]
        per_s = {s: [chars / t for t in times[(i, s)]] for s in STRATEGIES}
        workloads.append(
            {
                **{k: case[k] for k in ("length", "distinct", "popularity")},
                "chars_per_s": per_s,
                "range": {s: _range(v) for s, v in per_s.items()},
                "merged_over": {
                    s: _range([m / u for m, u in zip(per_s["merged"], per_s[s])])
                    for s in STRATEGIES
                    if s != "merged"
                },
            }
        )
    return {
        "rows": rows,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "device": device.type,
        "adapters": {name: sorted({f.r for f in layers.values()}) for name, layers in bank.adapters.items()},
        "workloads": workloads,
        "crossover": {str(length): crossover(workloads, length) for length in lengths},
    }


def crossover(workloads: list[dict], length: int, popularity: str = "uniform") -> int | None:
    """The smallest number of distinct adapters at which grouped or gather was faster than merged in
    every round (the range of merged / unmerged entirely below 1), or None where that never happened."""
    for w in sorted(workloads, key=lambda w: w["distinct"]):
        if w["length"] == length and w["popularity"] == popularity:
            if any(r["max"] < 1 for r in w["merged_over"].values()):
                return w["distinct"]
    return None


def synthetic_bank(num_adapters: int = 8, device: torch.device | str = "cpu", seed: int = 0) -> AdapterBank:
    """A bank on a randomly initialised TinyGPT (the committed size) with ``num_adapters`` random
    adapters of the ranks and targets of notebook 11's (no data needed: speed does not depend on weights)."""
    from lora_teach.adapters import add_lora
    from lora_teach.gpt import GPTConfig, TinyGPT
    from lora_teach.gpt_adapters import ADAPTERS, TARGETS

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = TinyGPT(GPTConfig()).to(device).eval()
        specs = list(ADAPTERS.values())
        adapters = {}
        for i in range(num_adapters):
            _, targets, r = specs[i % len(specs)]
            model = copy.deepcopy(base)
            add_lora(model, r, target_modules=TARGETS[targets])
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if name.endswith("lora_B"):
                        param.normal_(0, 0.02)  # a trained adapter, not the zero start
            adapters[f"adapter{i}"] = model
    return AdapterBank(base, adapters)
