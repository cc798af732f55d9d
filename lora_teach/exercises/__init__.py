"""Checked exercises in the style of Kaggle's learntools: ``q1.check(answer)``,
``q1.hint()``, ``q1.hint(2)``, ``q1.solution()``.

A check prints one line that starts with "Correct", "Incorrect" or
"Not attempted yet" and returns True only when the answer is right.
An untouched placeholder (``____``, or a function that still raises
``NotImplementedError``) is "not attempted yet", never a crash, and an
exception raised by the student's code becomes a readable message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


class _Placeholder:
    """The blank a student fills in: ``answer = ____``."""

    def __repr__(self) -> str:
        return "____"


____ = _Placeholder()


class NotAttempted(Exception):
    """The answer is still a placeholder."""


class Incorrect(Exception):
    """The answer is wrong; the message says how."""


def _is_placeholder(value: Any) -> bool:
    if isinstance(value, _Placeholder):
        return True
    if isinstance(value, (list, tuple)):
        return any(_is_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(_is_placeholder(v) for v in value.values())
    return False


def call_student(function: Callable, *args: Any, name: str | None = None) -> Any:
    """Call the student's function; NotImplementedError means "not attempted yet",
    any other exception becomes an Incorrect that names the call."""
    label = name or getattr(function, "__name__", "your function")
    if not callable(function):
        raise Incorrect(f"`{label}` should be a function, got {type(function).__name__}")
    try:
        return function(*args)
    except NotImplementedError as error:
        raise NotAttempted(f"`{label}` still raises NotImplementedError") from error
    except Exception as error:  # noqa: BLE001 - the point is to report any failure kindly
        shown = ", ".join(_describe(a) for a in args)
        raise Incorrect(f"`{label}({shown})` raised {type(error).__name__}: {error}") from error


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def expect_equal(name: str, got: Any, expected: Any, context: str = "") -> None:
    """Exact equality (numbers, strings, tuples, ints from tensors via .item())."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if got != expected:
        where = f" {context}" if context else ""
        raise Incorrect(f"`{name}`{where} should be {expected!r}, but it is {got!r}")


def expect_close(
    name: str, got: Any, expected: Any, rtol: float = 1e-4, atol: float = 1e-6, context: str = ""
) -> None:
    """Numerical closeness for numbers and tensors, with a shape check first."""
    where = f" {context}" if context else ""
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise Incorrect(f"`{name}`{where} should be a number or tensor, got {type(got).__name__}") from error
    if got_t.shape != expected_t.shape:
        raise Incorrect(
            f"`{name}`{where} should have shape {tuple(expected_t.shape)}, but it has {tuple(got_t.shape)}"
        )
    if not torch.allclose(got_t, expected_t, rtol=rtol, atol=atol):
        if got_t.numel() == 1:
            raise Incorrect(
                f"`{name}`{where} should be {expected_t.item():.6g}, but it is {got_t.item():.6g}"
            )
        worst = (got_t - expected_t).abs().max().item()
        raise Incorrect(f"`{name}`{where} has the right shape but wrong values (largest error {worst:.3g})")


class CheckResult:
    """What ``check`` returns: true only for a right answer. A notebook shows nothing
    for it, since the printed line already says everything."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __eq__(self, other: object) -> bool:
        return self.passed == bool(other) if isinstance(other, (bool, CheckResult)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.passed)

    def __repr__(self) -> str:
        return repr(self.passed)

    def _ipython_display_(self) -> None:
        """Display nothing in IPython (no ``Out[n]: True`` under the message)."""


class Question:
    """One exercise: a checking function, graded hints and a reference solution.

    ``checker(*answers)`` raises Incorrect (or NotAttempted) with a message, and
    may return a short message to print after "Correct".
    """

    def __init__(
        self,
        name: str,
        checker: Callable[..., str | None],
        hints: Sequence[str],
        solution: str,
    ) -> None:
        self.name, self._checker, self._hints, self._solution = name, checker, list(hints), solution

    def check(self, *answers: Any) -> CheckResult:
        """Print whether the answer is right; the result is true only if it is."""
        try:
            if any(_is_placeholder(a) for a in answers):
                raise NotAttempted("replace ____ with your answer")
            message = self._checker(*answers)
        except NotAttempted as reason:
            print(f"Not attempted yet ({self.name}): {reason}. Try it, or call .hint() for a nudge.")
            return CheckResult(False)
        except Incorrect as reason:
            print(f"Incorrect ({self.name}): {reason}")
            return CheckResult(False)
        print(f"Correct ({self.name})" + (f": {message}" if message else "!"))
        return CheckResult(True)

    def hint(self, n: int = 1) -> None:
        """Print hint ``n`` (1 is gentle, the last nearly gives it away)."""
        if not 1 <= n <= len(self._hints):
            raise ValueError(f"{self.name} has hints 1 to {len(self._hints)}, got {n}")
        print(f"Hint {n} of {len(self._hints)} ({self.name}): {self._hints[n - 1]}")

    def solution(self) -> None:
        """Print a reference solution."""
        print(f"Solution ({self.name}):\n{self._solution}")

    @property
    def answer(self) -> str:
        """The reference solution as text (for the instructor guide)."""
        return self._solution

    def __repr__(self) -> str:
        return f"<exercise {self.name}: .check(...), .hint(), .solution()>"


__all__ = [
    "____",
    "CheckResult",
    "Incorrect",
    "NotAttempted",
    "Question",
    "call_student",
    "expect_close",
    "expect_equal",
]
