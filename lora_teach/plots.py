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


def dora_diagram(ax: plt.Axes | None = None) -> plt.Axes:
    """DoRA's split of one output row of the weight into a magnitude and a direction, in 2-D:
    the frozen row of W0, the LoRA row V = W0 + s·B·A, its unit direction V/||V||, and the
    trained length m that DoRA puts on that direction."""
    ax = ax or plt.subplots(figsize=(8, 4.4))[1]
    w0 = np.array([1.6, 0.5])
    v = w0 + np.array([-0.55, 0.75])  # W0 + s·B·A
    unit = v / np.linalg.norm(v)
    m = 2.3
    theta = np.linspace(0, np.pi / 2, 100)
    ax.plot(np.cos(theta), np.sin(theta), color="#BBBBBB", linewidth=1)
    ax.text(0.72, 0.55, "‖·‖ = 1", color="#888888", fontsize=8)
    arrows = [  # drawn in this order: the longest first, so each shorter one stays visible on top
        (m * unit, COLORS["merged"], "W' = m_i · V / ‖V‖ (DoRA's row)", 4),
        (w0, COLORS["base"], "row i of W0 (frozen)", 2),
        (v, COLORS["lora"], "V = W0 + s·B·A (LoRA's row)", 2),
        (unit, COLORS["random"], "direction V / ‖V‖ (length 1)", 2),
    ]
    for vec, color, label, width in arrows:
        style = {"arrowstyle": "-|>", "color": color, "linewidth": width}
        ax.annotate("", xy=vec, xytext=(0, 0), arrowprops=style)
        ax.plot([], [], color=color, linewidth=width, label=label)
    ax.annotate(
        "", xy=v, xytext=w0, arrowprops={"arrowstyle": "-|>", "color": COLORS["lora"], "linestyle": ":"}
    )
    ax.text(
        *(w0 + (v - w0) / 2 + np.array([0.05, 0.0])), "s·B·A\n(direction)", color=COLORS["lora"], fontsize=8
    )
    ax.text(
        *(m * unit + np.array([-0.55, 0.08])), "length m_i\n(magnitude)", color=COLORS["merged"], fontsize=8
    )
    ax.text(
        1.75,
        -0.45,
        "shapes: W0 (out, in), B (out, r), A (r, in), m (out,)\nnorm ‖V‖ taken per output row",
        fontsize=8,
        ha="left",
    )
    ax.set_xlim(-0.1, 3.9)
    ax.set_ylim(-0.65, 2.2)
    ax.set_aspect("equal")
    ax.set_xlabel("input coordinate 1 (a row lives in R^in; 2 of its coordinates shown)")
    ax.set_ylabel("input coordinate 2")
    ax.set_title("DoRA: each output row = magnitude m_i × unit direction V/‖V‖")
    ax.legend(loc="upper right", fontsize=8)
    return ax
