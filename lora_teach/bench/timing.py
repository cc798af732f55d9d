"""What every figure shares: the devices, intra-op thread control, and the two clocks
(``torch.utils.benchmark.Timer`` for calls it can repeat, one plain timed run for the rest).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch.utils.benchmark import Timer

LORA_R = 8  # the adapter rank of the latency and memory figures


def devices_to_measure() -> list[torch.device]:
    """Always the CPU; CUDA as well when there is a GPU."""
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing to wait for on the CPU."""
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


@functools.cache
def _benchmark() -> ModuleType:
    """``torch.utils.benchmark``, imported without the "No CUDA runtime is found" line that
    its C++ build helper (unused here) logs on a CUDA build of torch without a GPU."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.benchmark as benchmark
    finally:
        logger.setLevel(before)
    return benchmark


def make_timer(fn: Callable[[], object], threads: int | None = None) -> Timer:
    """A ``torch.utils.benchmark.Timer`` of ``fn()`` at ``threads`` intra-op threads (None: the
    current count, where the Timer's own default is 1). Its clock synchronizes CUDA."""
    return _benchmark().Timer("fn()", globals={"fn": fn}, num_threads=threads or torch.get_num_threads())


def median_seconds(fn: Callable[[], object], threads: int | None = None, min_run_time: float = 0.2) -> float:
    """Median seconds per call of ``fn()`` by ``Timer.blocked_autorange``: it warms up, picks a
    block of calls long enough to hide the clock, and times blocks for ``min_run_time`` s."""
    return make_timer(fn, threads).blocked_autorange(min_run_time=min_run_time).median


def seconds_once(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call of ``fn()``, ``device`` synchronized before and after.
    For work a Timer cannot repeat (it would add warm-up calls): a whole training run."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


@dataclass(frozen=True)
class TimingRange:
    """Seconds per call of one function over interleaved rounds, and its ratio to the reference's in the
    same round (paired: both timed under the same load). A measured range, never a verdict: on a shared
    machine a rerun moves the numbers, so the course reports them and lets the reader judge."""

    seconds: tuple[float, ...]  # one median per round
    ratios: tuple[float, ...]  # seconds / the reference's seconds, round by round

    def __str__(self) -> str:
        low, high = min(self.ratios), max(self.ratios)
        return (
            f"{low:.2f}-{high:.2f} × the reference (median {statistics.median(self.ratios):.2f}, "
            f"{len(self.ratios)} rounds)"
        )

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)


def interleaved_ranges(
    fns: dict[str, Callable[[], object]],
    reference: str,
    rounds: int = 5,
    min_run_time: float = 0.05,
    threads: int | None = None,
    around: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None,
) -> dict[str, TimingRange]:
    """Time every ``fns[label]()`` in ``rounds`` interleaved rounds (each round times each function once,
    ``blocked_autorange`` for ``min_run_time`` s, in an order rotated every round, so drifting load falls
    on all alike) and pair each with ``fns[reference]`` of the same round. ``around[label]()`` makes a
    context entered around that label's block of calls (e.g. ``parametrize.cached``)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise ValueError(f"rounds must be a whole number of at least 2 (a range needs two), got {rounds!r}")
    if reference not in fns:
        raise ValueError(f"reference must be one of the labels {list(fns)}, got {reference!r}")
    around = around or {}
    if set(around) - set(fns):
        raise ValueError(f"around names labels that are not in fns: {sorted(set(around) - set(fns))}")
    timers = {label: make_timer(fn, threads) for label, fn in fns.items()}
    labels = list(fns)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    for round_ in range(rounds):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            with around.get(label, contextlib.nullcontext)():
                seconds[label].append(timers[label].blocked_autorange(min_run_time=min_run_time).median)
    ref = seconds[reference]
    return {
        label: TimingRange(tuple(s), tuple(a / b for a, b in zip(s, ref))) for label, s in seconds.items()
    }
