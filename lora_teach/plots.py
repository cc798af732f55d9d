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


def subspace_similarity_diagram(angles_degrees: Sequence[float] = (0.0, 35.0, 90.0)):
    """Notebook 06's picture of the subspace similarity phi, one panel per angle.

    Each panel draws the subspace of one adapter as a line (its top-j directions), the top
    direction of another adapter as an arrow, and the arrow's projection onto the line: phi is
    the squared length of that projection, cos^2 of the angle. Returns the figure.
    """
    fig, axes = plt.subplots(1, len(angles_degrees), figsize=(3.4 * len(angles_degrees), 3.2))
    axes = np.atleast_1d(axes)
    for ax, degrees in zip(axes, angles_degrees):
        angle = np.radians(degrees)
        u = np.array([np.cos(angle), np.sin(angle)])  # unit top direction of adapter 1
        shadow = np.array([u[0], 0.0])  # its projection onto adapter 2's subspace (the x axis)
        ax.plot([-1.2, 1.2], [0, 0], color=COLORS["lora"], lw=4, alpha=0.5, label="span of U2 (adapter 2)")
        ax.annotate("", xy=u, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=COLORS["base"], lw=2))
        ax.plot([u[0], shadow[0]], [u[1], shadow[1]], ls=":", color="black", lw=1)
        ax.plot([0, shadow[0]], [0, 0], color="black", lw=2.5, label="projection U2^T u1")
        ax.text(u[0] * 1.05 + 0.03, u[1] * 1.05, "u1", color=COLORS["base"], fontsize=10)
        ax.set_title(f"angle {degrees:g}°: phi = cos² = {np.cos(angle) ** 2:.2f}", fontsize=10)
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-0.3, 1.2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        "Subspace similarity: how much of adapter 1's direction u1 lies in adapter 2's subspace "
        "(phi = ||U1^T U2||_F² / min(i, j))",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
