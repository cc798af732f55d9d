"""Hidden inputs for function answers: the same public check, run again on inputs the student never
saw. Checks draw their inputs from ``torch.Generator().manual_seed(k)`` or ``torch.manual_seed(k)``;
here every such seed is shifted, so the check builds other tensors and computes its expected values
from them. Checks whose inputs are constants get other constants, keyed by question."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator

import torch

SEED_SHIFT = 7919  # any seed no check uses


class _ShiftedGenerator(torch.Generator):
    def manual_seed(self, seed: int) -> torch.Generator:
        return super().manual_seed(int(seed) + SEED_SHIFT)


def _shifted_torch() -> types.ModuleType:
    """A stand-in for the ``torch`` module seen by a check module: the same, but with shifted seeds."""
    proxy = types.ModuleType("torch")
    proxy.__dict__.update(torch.__dict__)
    proxy.Generator = _ShiftedGenerator
    proxy.manual_seed = lambda seed: torch.manual_seed(int(seed) + SEED_SHIFT)
    return proxy


def _nb00_q2_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED_SHIFT)
    images = []
    for rows, cols in [(5, 3), (1, 7), (28, 28), (9, 4)]:
        values = torch.randint(0, 256, (rows, cols), generator=generator, dtype=torch.uint8)
        images.append(values * (torch.rand(rows, cols, generator=generator) < 0.4))
    return images


# question -> {module constant: a function making its hidden replacement}
CONSTANTS: dict[str, dict[str, Callable[[], object]]] = {"nb00.q2": {"_q2_images": lambda: _nb00_q2_images}}


@contextlib.contextmanager
def hidden_inputs(key: str, module: types.ModuleType) -> Iterator[None]:
    """Within the block, ``module``'s checks draw other inputs: shifted seeds, and the replacement
    constants of question ``key``."""
    saved = dict(module.__dict__)
    try:
        if getattr(module, "torch", None) is torch:
            module.torch = _shifted_torch()
        for name, make in CONSTANTS.get(key, {}).items():
            if not hasattr(module, name):  # a renamed input must not silently switch the hidden ones off
                raise RuntimeError(f"hidden inputs for {key}: {module.__name__} has no {name} to replace")
            setattr(module, name, make())
        yield
    finally:
        module.__dict__.clear()
        module.__dict__.update(saved)


# ---------------------------------------------------------------- checks whose inputs are fixed in the check
# For these, the student's function is compared with the course's reference solution (solutions.json,
# defined here, never from the notebook) on inputs drawn from the shifted seed; expected values first,
# each call on its own copies.


def _ints(generator: torch.Generator, low: int, high: int, n: int = 1) -> list[int]:
    return torch.randint(low, high, (n,), generator=generator).tolist()


def _cases_nb01_q3(g: torch.Generator) -> list[tuple]:
    cases = []
    for k in (3, 7, 12):
        S = torch.rand(k, generator=g, dtype=torch.float64).sort(descending=True).values * 10
        cases.append((S, _ints(g, 0, k)[0]))
    return cases


def _cases_nb02_q4(g: torch.Generator) -> list[tuple]:
    return [tuple(_ints(g, 1, 97, 5)) for _ in range(4)]


def _cases_nb03_q3(g: torch.Generator) -> list[tuple]:
    totals = _ints(g, 800, 1200, 10)
    return [(_ints(g, 0, 300, 10), totals, 5), (_ints(g, 0, 300, 10), totals, 3)]


def _cases_nb04_q1(g: torch.Generator) -> list[tuple]:
    return [tuple(_ints(g, 1, 2000, 2) + _ints(g, 1, 64)) for _ in range(4)]


def _cases_nb07_q2(g: torch.Generator) -> list[tuple]:
    state = {}
    for name, r in zip(("enc.0", "enc.2", "head"), _ints(g, 1, 17, 3), strict=True):
        state[f"{name}.lora_A"] = torch.randn(r, 5, generator=g)
        state[f"{name}.lora_B"] = torch.randn(4, r, generator=g)
    return [(state,)]


def _cases_nb10_q3(g: torch.Generator) -> list[tuple]:
    return [(0.97 + 0.02 * torch.rand(1, generator=g).item(),)]


def _cases_nb11_q1(g: torch.Generator) -> list[tuple]:
    names = ["math", "poetry", "code", "legal"]
    return [([names[i] for i in _ints(g, 0, 4, n)],) for n in (1, 6, 11)]


CASES: dict[str, Callable[[torch.Generator], list[tuple]]] = {
    "nb01.q3": _cases_nb01_q3,
    "nb02.q4": _cases_nb02_q4,
    "nb03.q3": _cases_nb03_q3,
    "nb04.q1": _cases_nb04_q1,
    "nb07.q2": _cases_nb07_q2,
    "nb10.q3": _cases_nb10_q3,
    "nb11.q1": _cases_nb11_q1,
}


def _copy(value: object) -> object:
    import copy

    return copy.deepcopy(value)


def same(got: object, expected: object) -> bool:
    """Equal, with numbers and tensors compared to a relative 1e-6."""
    import math

    if isinstance(expected, torch.Tensor) or isinstance(got, torch.Tensor):
        try:
            got_t, expected_t = torch.as_tensor(got).double(), torch.as_tensor(expected).double()
        except (TypeError, ValueError, RuntimeError):
            return False
        return got_t.shape == expected_t.shape and torch.allclose(got_t, expected_t, rtol=1e-6, atol=1e-9)
    if isinstance(expected, bool) or isinstance(got, bool):
        return got == expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(same(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in expected)
    return got == expected


def reference(key: str) -> Callable:
    """The course's reference solution of ``key``, defined from solutions.json."""
    import math

    from lora_teach.course.solutions import recorded_solutions

    source = recorded_solutions()[key]
    namespace: dict = {"torch": torch, "math": math}
    exec(compile(source, f"<reference {key}>", "exec"), namespace)  # noqa: S102 - the course's own code
    name = source.lstrip().removeprefix("def ").partition("(")[0]
    return namespace[name]


def compare_with_reference(key: str, function: Callable) -> str | None:
    """None when ``function`` agrees with the reference on the hidden cases of ``key`` (or it has
    none); otherwise a one-line reason that names no expected value."""
    if key not in CASES:
        return None
    expected_function = reference(key)
    cases = CASES[key](torch.Generator().manual_seed(SEED_SHIFT))
    expected = [expected_function(*_copy(case)) for case in cases]  # all expected values first
    for number, (case, want) in enumerate(zip(cases, expected, strict=True), start=1):
        try:
            got = function(*_copy(case))
        except Exception as error:  # noqa: BLE001 - any failure is a wrong answer here
            return f"hidden case {number} raised {type(error).__name__}"
        if not same(got, want):
            return f"hidden case {number} gives a different result"
    return None
