"""Mean and spread over random seeds, and the course's rule for a comparing sentence.

A notebook says "A is higher than B" only when the mean difference lies outside its 95 % interval:
t standard errors over seeds, t being Student's critical value for the degrees of freedom (n - 1
differences when paired, Welch's df otherwise; 4.30 at 3 seeds, 2.78 at 5, near 2 only from about
60). Otherwise it says the two are indistinguishable here. With two standard errors at 3 seeds a
difference that is pure noise would be called "higher" or "lower" about 18 % of the time; with t, 5 %.
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
    uncertainty: float  # critical * the standard error of the difference: half the 95 % interval
    a: Spread
    b: Spread
    df: float = math.inf  # degrees of freedom of the t distribution used
    critical: float = 1.959963984540054  # its two-sided 95 % critical value

    def sentence(self, a_name: str, b_name: str, quantity: str, digits: int = 2, unit: str = "") -> str:
        """One sentence a notebook can print, e.g. 'LoRA is lower than full FT on forgetting by ...'."""
        unit = f" {unit}" if unit else ""
        numbers = (
            f"{self.a.mean:.{digits}f} vs {self.b.mean:.{digits}f}{unit}, difference "
            f"{self.difference:+.{digits}f} ± {self.uncertainty:.{digits}f} (95 % t interval)"
        )
        if self.verdict == "indistinguishable":
            return f"{a_name} and {b_name} are indistinguishable here on {quantity} ({numbers})"
        return f"{a_name} is {self.verdict} than {b_name} on {quantity} ({numbers})"


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


def t_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (t >= 0)."""
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2))
    return 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def t_critical(df: float, confidence: float = 0.95) -> float:
    """Two-sided critical value of Student's t: P(|T| > t) = 1 - confidence (df > 0, may be fractional).

    t_critical(2) = 4.303, t_critical(4) = 2.776, t_critical(inf) = 1.960. No scipy needed: bisection
    on ``t_tail``.
    """
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    tail = (1 - confidence) / 2
    low, high = 0.0, 1.0
    while t_tail(high, df) > tail:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_tail(mid, df) > tail:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2


def welch_df(first: np.ndarray, second: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of mean(first) - mean(second)."""
    v1, v2 = first.var(ddof=1) / len(first), second.var(ddof=1) / len(second)
    scale = max(v1, v2)
    if scale == 0:  # no spread at all: any difference is a verdict, whatever t is
        return float(len(first) + len(second) - 2)
    v1, v2 = v1 / scale, v2 / scale  # the df is scale-free; this keeps tiny variances from underflowing
    return float((v1 + v2) ** 2 / (v1**2 / (len(first) - 1) + v2**2 / (len(second) - 1)))


def compare(a: Sequence[float], b: Sequence[float], paired: bool = False) -> Comparison:
    """Compare two quantities measured over seeds.

    The verdict is "higher" or "lower" (a relative to b) only when |mean(a) - mean(b)| exceeds
    t standard errors of the difference, t the two-sided 95 % critical value of Student's t;
    otherwise "indistinguishable". ``paired=True`` when a[i] and b[i] share seed i (same data order
    and init): the standard error is that of the n differences, with n - 1 degrees of freedom.
    Unpaired: Welch's standard error and degrees of freedom.
    """
    first, second = _values("a", a), _values("b", b)
    if paired:
        if len(first) != len(second):
            raise ValueError(
                f"paired=True needs as many values in a as in b, got {len(first)} and {len(second)}"
            )
        diffs = first - second
        sem = float(diffs.std(ddof=1) / math.sqrt(len(diffs)))
        df = float(len(diffs) - 1)
    else:
        sem = math.sqrt(first.var(ddof=1) / len(first) + second.var(ddof=1) / len(second))
        df = welch_df(first, second)
    difference = float(first.mean() - second.mean())
    critical = t_critical(df)
    uncertainty = critical * sem
    if abs(difference) > uncertainty:
        verdict = "higher" if difference > 0 else "lower"
    else:
        verdict = "indistinguishable"
    return Comparison(verdict, difference, uncertainty, spread(first), spread(second), df, critical)


def agreed_verdict(comparisons: Sequence[Comparison]) -> str:
    """The verdict every one of ``comparisons`` gives (the same question asked on other data: another
    slice, another base checkpoint), or "depends" where they disagree."""
    if not comparisons:
        raise ValueError("comparisons needs at least one Comparison, got none")
    verdicts = {c.verdict for c in comparisons}
    return verdicts.pop() if len(verdicts) == 1 else "depends"


def agreed_sentence(
    comparisons: Sequence[tuple[str, Comparison]],
    a_name: str,
    b_name: str,
    quantity: str,
    digits: int = 2,
    unit: str = "",
) -> str:
    """One sentence for a comparison made several ways, each ``(label, Comparison)`` (e.g. ("on base 0", ...)):
    the first way's sentence and the others' numbers where every verdict agrees; otherwise "depends on" with
    each way's verdict and numbers, and no verdict claimed."""
    if not comparisons:
        raise ValueError("comparisons needs at least one (label, Comparison), got none")

    def numbers(c: Comparison) -> str:
        return f"{c.difference:+.{digits}f} ± {c.uncertainty:.{digits}f}"

    (label, first), rest = comparisons[0], comparisons[1:]
    if agreed_verdict([c for _, c in comparisons]) != "depends":
        others = "; ".join(f"{lbl}: {numbers(c)}" for lbl, c in rest)
        return f"{first.sentence(a_name, b_name, quantity, digits, unit)} {label}" + (
            f"; the same {others}" if rest else ""
        )
    each = ", ".join(f"{c.verdict} {lbl} ({numbers(c)})" for lbl, c in comparisons)
    return f"{a_name} against {b_name} on {quantity} depends on the data: {each}; so no verdict is claimed"
