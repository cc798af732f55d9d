"""Plots the notebooks share, with one colour per idea across the whole course."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

COLORS = {
    "base": "#4C72B0",  # the base (pre-trained) model
    "lora": "#DD8452",  # LoRA (either method)
    "wrapper": "#DD8452",
    "parametrize": "#C44E52",
    "full": "#55A868",  # full fine-tuning
    "replay": "#8172B3",  # fine-tuning with replay data
    "merged": "#937860",
    "random": "#8C8C8C",  # random baselines
}


def color_for(label: str) -> str | None:
    """The course colour of a series, matched on the start of its label (None: matplotlib's)."""
    key = label.lower()
    for name, color in COLORS.items():
        if key.startswith(name):
            return color
    return None


def per_digit_bars(
    series: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str = "wrong predictions (test set)",
    highlight: Sequence[int] = (),
    errors: Mapping[str, Sequence[float]] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Side-by-side bars per digit 0-9, one group per series (e.g. before / after);
    ``highlight`` shades the digits that were fine-tuned; ``errors`` adds error bars."""
    ax = ax or plt.subplots(figsize=(8, 3.5))[1]
    digits = np.arange(10)
    width = 0.8 / len(series)
    for d in highlight:
        ax.axvspan(d - 0.45, d + 0.45, color="#F2E8CF", zorder=0)
    for i, (label, values) in enumerate(series.items()):
        yerr = None if errors is None else errors.get(label)
        ax.bar(
            digits - 0.4 + width * (i + 0.5),
            values,
            width,
            label=label,
            color=color_for(label),
            yerr=yerr,
            capsize=2,
        )
    ax.set_xticks(digits)
    ax.set_xlabel("digit" + (" (shaded: fine-tuned on)" if highlight else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return ax
