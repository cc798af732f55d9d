"""Training and evaluation: device, seeding, a training loop with a tqdm bar, per-digit scores."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lora_teach.progress import tqdm


def get_device() -> torch.device:
    """cuda if there is a GPU, else mps on Apple silicon, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices), so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def make_optimizer(params: Iterable[nn.Parameter], lr: float = 1e-3) -> torch.optim.Adam:
    """Adam, fused where torch supports it (one kernel per step instead of one per tensor)."""
    params = list(params)
    if not params:
        raise ValueError(
            "there are no trainable parameters; did mark_only_lora_as_trainable freeze everything?"
        )
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def train(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_epochs: int = 1,
    lr: float = 1e-3,
    num_steps: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """Train ``model`` with cross-entropy on ``batches`` of (x (batch, 784), y (batch,)).

    Only parameters with ``requires_grad`` are optimized (Adam, ``lr``, unless an
    ``optimizer`` is given). ``num_steps`` stops early, as the seed's ``limit``
    does. The tqdm bar shows the running mean loss. Returns the loss of every step.
    """
    if num_steps is not None and (
        isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1
    ):
        raise ValueError(f"num_steps must be a positive integer or None, got {num_steps!r}")
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a positive integer, got {num_epochs!r}")
    if optimizer is None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    device = next(model.parameters()).device
    optimizer = optimizer or make_optimizer((p for p in model.parameters() if p.requires_grad), lr)
    loss_fn = nn.CrossEntropyLoss()
    total = num_epochs * len(batches) if hasattr(batches, "__len__") else None
    if num_steps is not None:
        total = num_steps if total is None else min(total, num_steps)
    losses: list[float] = []
    model.train()
    with tqdm(total=total, desc=desc, disable=not progress, mininterval=0.5) as bar:
        for _ in range(num_epochs):
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                bar.update()
                if len(losses) % 100 == 0 or len(losses) == total:
                    bar.set_postfix(loss=f"{np.mean(losses):.3f}", refresh=False)
                if num_steps is not None and len(losses) >= num_steps:
                    return losses
    if not losses:
        raise ValueError("batches yielded no batch: there is nothing to train on (an empty dataset?)")
    return losses


@dataclass
class Evaluation:
    """Accuracy on a labelled set, with the per-digit picture."""

    correct: int
    total: int
    wrong_counts: list[int]  # per true digit 0-9
    digit_totals: list[int]  # examples per true digit
    confusion: torch.Tensor  # (10, 10): rows true digit, columns predicted

    @property
    def accuracy(self) -> float:
        """Fraction correct, 0-1."""
        return self.correct / self.total

    def accuracy_on(self, digits: Iterable[int]) -> float:
        """Fraction correct among examples whose true digit is in ``digits``."""
        digits = list(digits)
        total = sum(self.digit_totals[d] for d in digits)
        if total == 0:
            raise ValueError(f"no examples of the digits {digits} were evaluated; pass digits that occur")
        return 1 - sum(self.wrong_counts[d] for d in digits) / total

    def __str__(self) -> str:
        rows = [f"accuracy: {100 * self.accuracy:.1f} % ({self.correct:,} of {self.total:,})"]
        rows += [
            f"  digit {d}: {w:4d} wrong of {n:,}"
            for d, (w, n) in enumerate(zip(self.wrong_counts, self.digit_totals))
        ]
        return "\n".join(rows)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int = 2000,
    num_classes: int = 10,
) -> Evaluation:
    """Accuracy, per-digit wrong counts and the confusion matrix of ``model``.

    ``data`` is (x (N, 784), y (N,)) or any iterable of such batches (e.g. a DataLoader).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = next(model.parameters()).device
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        inputs, labels = data
        data = [
            (inputs[i : i + batch_size], labels[i : i + batch_size])
            for i in range(0, len(inputs), batch_size)
        ]
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for x, y in data:
        predicted = model(x.to(device)).argmax(dim=1).cpu()
        confusion += torch.bincount(y.cpu() * num_classes + predicted, minlength=num_classes**2).reshape(
            num_classes, num_classes
        )
    model.train(was_training)
    digit_totals = confusion.sum(dim=1)
    correct = int(confusion.diagonal().sum())
    return Evaluation(
        correct=correct,
        total=int(digit_totals.sum()),
        wrong_counts=(digit_totals - confusion.diagonal()).tolist(),
        digit_totals=digit_totals.tolist(),
        confusion=confusion,
    )
