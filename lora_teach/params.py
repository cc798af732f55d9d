"""Counting parameters: how much of a model is trained."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameter elements; only those with ``requires_grad`` by default."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_report(model: nn.Module) -> str:
    """One line, e.g. ``trainable: 3,124 of 238,270 parameters (1.31 %)``."""
    trainable = count_parameters(model)
    total = count_parameters(model, trainable_only=False)
    percent = 100 * trainable / total if total else 0.0
    return f"trainable: {trainable:,} of {total:,} parameters ({percent:.2f} %)"
