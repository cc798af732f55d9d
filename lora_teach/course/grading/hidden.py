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
CONSTANTS: dict[str, dict[str, Callable[[], object]]] = {"nb00.q2": {"_Q2_IMAGES": _nb00_q2_images}}


@contextlib.contextmanager
def hidden_inputs(key: str, module: types.ModuleType) -> Iterator[None]:
    """Within the block, ``module``'s checks draw other inputs: shifted seeds, and the replacement
    constants of question ``key``."""
    saved = dict(module.__dict__)
    try:
        if getattr(module, "torch", None) is torch:
            module.torch = _shifted_torch()
        for name, make in CONSTANTS.get(key, {}).items():
            setattr(module, name, make())
        yield
    finally:
        module.__dict__.clear()
        module.__dict__.update(saved)
