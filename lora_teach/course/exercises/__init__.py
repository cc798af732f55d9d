"""Checked exercises in the style of Kaggle's learntools: ``q1.check(answer)``,
``q1.hint()``, ``q1.hint(2)``, ``q1.solution()``.

A check prints exactly one line that starts with "Correct", "Incorrect" or
"Not attempted yet", whatever the answer, and never raises (only KeyboardInterrupt,
the notebook's stop button, passes through). Feedback on a wrong number says too high,
too low or wrong units, never the right value (that is for ``solution()``); where the
right value is a small whole number it says only "not right", since the direction would
let a student find it by bisection. A check of a function computes what it expects from
pristine inputs and hands the function copies, so a function that changes its inputs
changes nothing the check reads. A grader reads outcomes through ``set_check_listener``.
"""

from __future__ import annotations

import copy
import decimal
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
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


class Outcome(NamedTuple):
    """What one ``check`` concluded: ``status`` is "correct", "incorrect" or "not_attempted"."""

    notebook: str
    question: str
    status: str
    message: str


_listener: Callable[[str, str, str, str], None] | None = None


def set_check_listener(listener: Callable[[str, str, str, str], None] | None) -> None:
    """Call ``listener(notebook, question, status, message)`` after every check (None: stop).

    ``notebook`` is e.g. "nb03", ``question`` e.g. "q2", ``status`` one of "correct",
    "incorrect", "not_attempted", ``message`` the line the check printed.
    """
    global _listener
    if listener is not None and not callable(listener):
        raise TypeError(f"set_check_listener needs a function or None, got {type(listener).__name__}")
    _listener = listener


def _is_placeholder(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _Placeholder):
        return True
    if depth > 10:
        return False
    if isinstance(value, (list, tuple)):
        return any(_is_placeholder(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_is_placeholder(v, depth + 1) for v in value.values())
    return False


def call_student(
    function: Callable, *args: Any, name: str | None = None, returns: bool = True, copies: bool = True
) -> Any:
    """Call the student's function on deep copies of ``args`` (``copies``; pass False only where the
    function must work on the check's own object, and then compare that object with what it was
    before). NotImplementedError means "not attempted yet"; any other exception, SystemExit
    included (everything but KeyboardInterrupt), becomes an Incorrect that names the call, and so
    does ``None`` returned where a value is expected (``returns``)."""
    label = name or getattr(function, "__name__", "your function")
    if not callable(function):
        raise Incorrect(f"`{label}` should be a function, got {type(function).__name__}")
    given = copy.deepcopy(args) if copies else args
    try:
        result = function(*given)
    except KeyboardInterrupt:
        raise
    except NotImplementedError as error:
        raise NotAttempted(f"`{label}` still raises NotImplementedError") from error
    except BaseException as error:  # noqa: BLE001 - the point is to report any failure kindly
        shown = ", ".join(_describe(a) for a in args)
        raise Incorrect(f"`{label}({shown})` raised {type(error).__name__}: {error}") from error
    if returns and result is None:
        raise Incorrect(f"`{label}(...)` returned None: did you forget to `return`?")
    return result


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break the check
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def as_number(name: str, value: Any, context: str = "") -> int | float:
    """``value`` as a Python int or float: accepts real numbers of any type (int, float, Fraction,
    Decimal, numpy scalars), 0-d arrays and one-element tensors; anything else (bools, strings, None,
    complex numbers, longer tensors) is Incorrect."""
    where = f" {context}" if context else ""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Incorrect(
                f"`{name}`{where} should be one number, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            raise Incorrect(f"`{name}`{where} should be one number, got an array of shape {value.shape}")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Incorrect(f"`{name}`{where} should be a number, got {_describe(value)}")
    if not isinstance(value, (int, float)):  # a Fraction, or another registered Real
        value = int(value) if isinstance(value, numbers.Rational) and value.denominator == 1 else float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def returned_number(function_name: str, value: Any) -> int | float:
    """What a student's function returned, as a number (as ``as_number`` reads it), or an Incorrect
    saying that ``function_name`` should return a number: a string such as "42" is no number."""
    try:
        return as_number(function_name, value)
    except Incorrect:
        raise Incorrect(f"`{function_name}` should return a number, got {_describe(value)}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


SMALL_WHOLE = 32  # up to this size a whole-number answer gets no direction: bisection would find it


def miss(got: float, expected: float) -> str:
    """ "too high", "too low", "not a finite number" (nan, inf) or, where ``expected`` is a small whole
    number (|expected| <= SMALL_WHOLE) and "too high / too low" would let a student bisect the few
    candidates, "not right". Never the expected value."""
    if not math.isfinite(got):
        return "not a finite number"
    if float(expected).is_integer() and abs(expected) <= SMALL_WHOLE:
        return "not right"
    return "too high" if got > expected else "too low"


def _how_far(name: str, where: str, got: int | float, expected: float) -> str:
    """Why ``got`` is not ``expected``, without saying ``expected``."""
    if not math.isfinite(got):
        return f"`{name}`{where} is {got}, not a finite number"
    if got != 0 and expected != 0 and (got > 0) == (expected > 0):
        exponent = math.log10(abs(got / expected))
        k = round(exponent)
        if k != 0 and abs(exponent - k) < 0.05:
            return (
                f"`{name}`{where} is off by a factor of about 10^{k}: check your units; "
                "`.hint()` gives a nudge"
            )
    side = miss(got, expected)
    shown = f"{got:,}" if isinstance(got, int) else f"{got:.12g}"
    return f"`{name}`{where} is {side} (you gave {shown}); `.hint()` gives a nudge"


def expect_equal(name: str, got: Any, expected: Any, context: str = "") -> None:
    """Exact equality. Where ``expected`` is a number, any number type that equals it passes
    (np.int64, 4.0, a one-element tensor), and a wrong one is told too high / too low / units;
    other values (tuples, lists, dicts) must be equal. The expected value is never printed."""
    where = f" {context}" if context else ""
    if _is_number(expected):
        value = as_number(name, got, context)
        if value != expected:
            raise Incorrect(_how_far(name, where, value, float(expected)))
        return
    try:
        same = bool(got == expected)
    except Exception:  # noqa: BLE001 - e.g. a many-element tensor against a tuple
        same = False
    if not same:
        raise Incorrect(f"`{name}`{where} is not right: you gave {_describe(got)}; `.hint()` gives a nudge")


def expect_close(
    name: str, got: Any, expected: Any, rtol: float = 1e-4, atol: float = 1e-6, context: str = ""
) -> None:
    """Numerical closeness for numbers and tensors, with a shape check first; a wrong number is
    told too high / too low / units, never the expected value."""
    where = f" {context}" if context else ""
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    if expected_t.dim() == 0:
        value = float(as_number(name, got, context))
        if not math.isclose(value, expected_t.item(), rel_tol=rtol, abs_tol=atol):
            raise Incorrect(_how_far(name, where, value, expected_t.item()))
        return
    if isinstance(got, (str, bytes)) or got is None:
        raise Incorrect(f"`{name}`{where} should be a tensor, got {_describe(got)}")
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64)
    except Exception as error:  # noqa: BLE001 - any unconvertible answer gets the same message
        raise Incorrect(f"`{name}`{where} should be a tensor, got {type(got).__name__}") from error
    if got_t.shape != expected_t.shape:
        raise Incorrect(
            f"`{name}`{where} should have shape {tuple(expected_t.shape)}, but it has {tuple(got_t.shape)}"
        )
    if not torch.allclose(got_t, expected_t, rtol=rtol, atol=atol):
        if not torch.isfinite(got_t).all():
            raise Incorrect(f"`{name}`{where} holds nan or inf values")
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


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Question:
    """One exercise: a checking function, graded hints and a reference solution.

    The solution is the notebook's ``# BEGIN SOLUTION`` block, copied into ``solutions.json`` by
    ``scripts/sync_solutions.py``; pass ``solution`` only for a question no notebook solves (a worked example).

    ``checker(*answers)`` raises Incorrect (or NotAttempted) with a message, and
    may return a short message to print after "Correct". ``last_outcome`` keeps
    what the latest ``check`` concluded (an ``Outcome``, or None before any).
    """

    def __init__(
        self,
        name: str,
        checker: Callable[..., str | None],
        hints: Sequence[str],
        solution: str | None = None,
    ) -> None:
        self.name, self._checker, self._hints, self._solution = name, checker, list(hints), solution
        self.last_outcome: Outcome | None = None
        self.last_answers: tuple = ()  # what the latest check was given (the grader re-checks it)
        self._where: tuple[str, str] | None = None

    def _address(self) -> tuple[str, str]:
        """("nb03", "q2"): the module and attribute this question is published as."""
        if self._where is None:
            module_name = getattr(self._checker, "__module__", "") or ""
            module = sys.modules.get(module_name)
            attribute = next((k for k, v in vars(module).items() if v is self), None) if module else None
            self._where = (module_name.rpartition(".")[2], attribute or self.name)
        return self._where

    def check(self, *answers: Any) -> CheckResult:
        """Print one line saying whether the answer is right; the result is true only if it is.
        Never raises, and leaves torch's random state as it was."""
        self.last_answers = answers
        try:
            with torch.random.fork_rng(devices=[]):
                if any(_is_placeholder(a) for a in answers):
                    raise NotAttempted("replace ____ with your answer")
                message = self._checker(*answers)
            status, line = (
                "correct",
                f"Correct ({self.name})" + (f": {_one_line(message)}" if message else "!"),
            )
        except NotAttempted as reason:
            status = "not_attempted"
            line = (
                f"Not attempted yet ({self.name}): {_one_line(reason)}. Try it, or call .hint() for a nudge."
            )
        except Incorrect as reason:
            status, line = "incorrect", f"Incorrect ({self.name}): {_one_line(reason)}"
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - a check must answer, whatever it is given
            status = "incorrect"
            line = (
                f"Incorrect ({self.name}): this answer could not be checked "
                f"({type(error).__name__}: {_one_line(error, 200)}); check its type and shape"
            )
        print(line)
        self._report(status, line)
        return CheckResult(status == "correct")

    def _report(self, status: str, line: str) -> None:
        notebook, question = self._address()
        self.last_outcome = Outcome(notebook, question, status, line)
        if _listener is not None:
            try:
                _listener(notebook, question, status, line)
            except Exception as error:  # noqa: BLE001 - a grader's bug must not break the student's check
                print(f"check listener failed: {type(error).__name__}: {error}", file=sys.stderr)

    def hint(self, n: int = 1) -> None:
        """Print hint ``n`` (1 is gentle, the last nearly gives it away)."""
        if not 1 <= n <= len(self._hints):
            raise ValueError(f"{self.name} has hints 1 to {len(self._hints)}, got {n}")
        print(f"Hint {n} of {len(self._hints)} ({self.name}): {self._hints[n - 1]}")

    def solution(self) -> None:
        """Print a reference solution."""
        print(f"Solution ({self.name}):\n{self.answer}")

    @property
    def answer(self) -> str:
        """The reference solution as text: the notebook's solution block (or the one given here)."""
        if self._solution is not None:
            return self._solution
        from lora_teach.course.solutions import recorded_solutions

        key = ".".join(self._address())
        recorded = recorded_solutions()
        if key not in recorded:
            return f"(no reference solution is recorded for {key}; run scripts/sync_solutions.py)"
        return recorded[key]

    def __repr__(self) -> str:
        return f"<exercise {self.name}: .check(...), .hint(), .solution()>"


__all__ = [
    "____",
    "CheckResult",
    "Incorrect",
    "NotAttempted",
    "Outcome",
    "Question",
    "as_number",
    "call_student",
    "expect_close",
    "expect_equal",
    "miss",
    "returned_number",
    "set_check_listener",
]
