"""Mean and spread over random seeds, and the course's rule for a comparing sentence.

A notebook says "A is higher than B" only when the mean difference is larger than two standard
errors over seeds; otherwise it says the two are indistinguishable here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _values(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    if array.ndim != 1 or len(array) < 2:
        raise ValueError(f"{name} needs at least two values (one per seed), got {len(array)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains a value that is not finite: {array.tolist()}")
    return array


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (ddof=1) of one quantity over seeds."""

    mean: float
    std: float
    values: tuple[float, ...]

    @property
    def sem(self) -> float:
        """Standard error of the mean: std / sqrt(n)."""
        return self.std / math.sqrt(len(self.values))

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"

    def format(self, digits: int = 2, unit: str = "", over: str = "seeds") -> str:
        """'mean ± std unit (n seeds: v1, v2, ...)', every number rounded to ``digits``; ``over`` names what
        the values vary over ("seeds", or e.g. "repeats" for timings)."""
        unit = f" {unit}" if unit else ""
        shown = ", ".join(f"{v:.{digits}f}" for v in self.values)
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}{unit} ({len(self.values)} {over}: {shown})"


def spread(values: Sequence[float]) -> Spread:
    """Mean ± sample standard deviation (ddof=1) of ``values``, one per seed."""
    array = _values("values", values)
    return Spread(float(array.mean()), float(array.std(ddof=1)), tuple(float(v) for v in array))


@dataclass(frozen=True)
class Comparison:
    """The verdict of ``compare``: "higher", "lower" or "indistinguishable", and its numbers."""

    verdict: str
    difference: float
    uncertainty: float
    a: Spread
    b: Spread

    def sentence(self, a_name: str, b_name: str, quantity: str, digits: int = 2, unit: str = "") -> str:
        """One sentence a notebook can print, e.g. 'LoRA is lower than full FT on forgetting by ...'."""
        unit = f" {unit}" if unit else ""
        numbers = (
            f"{self.a.mean:.{digits}f} vs {self.b.mean:.{digits}f}{unit}, difference "
            f"{self.difference:+.{digits}f} ± {self.uncertainty:.{digits}f} (2 standard errors)"
        )
        if self.verdict == "indistinguishable":
            return f"{a_name} and {b_name} are indistinguishable here on {quantity} ({numbers})"
        return f"{a_name} is {self.verdict} than {b_name} on {quantity} ({numbers})"


def compare(a: Sequence[float], b: Sequence[float], paired: bool = False) -> Comparison:
    """Compare two quantities measured over seeds.

    The verdict is "higher" or "lower" (a relative to b) only when |mean(a) - mean(b)| exceeds two
    standard errors of the difference; otherwise "indistinguishable". ``paired=True`` when a[i] and
    b[i] share seed i (same data order and init): the standard error is then that of the differences.
    """
    first, second = _values("a", a), _values("b", b)
    if paired:
        if len(first) != len(second):
            raise ValueError(
                f"paired=True needs as many values in a as in b, got {len(first)} and {len(second)}"
            )
        diffs = first - second
        sem = float(diffs.std(ddof=1) / math.sqrt(len(diffs)))
    else:
        sem = math.sqrt(first.var(ddof=1) / len(first) + second.var(ddof=1) / len(second))
    difference = float(first.mean() - second.mean())
    uncertainty = 2 * sem
    if abs(difference) > uncertainty:
        verdict = "higher" if difference > 0 else "lower"
    else:
        verdict = "indistinguishable"
    return Comparison(verdict, difference, uncertainty, spread(first), spread(second))
