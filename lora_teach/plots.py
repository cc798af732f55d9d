"""Plots the notebooks share, with one colour per idea across the whole course."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

# Log-axis tick labels (10^2) are mathtext. Its default font set, DejaVu Sans, loads every STIX font as a
# fallback, and a matplotlib whose font list lacks STIX then prints a "findfont" line per family. DejaVu
# Sans alone has every glyph the course's figures use, so mathtext uses it with no fallback.
matplotlib.rcParams.update({"mathtext.fontset": "custom", "mathtext.fallback": None, "mathtext.cal": "sans"})

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


def lora_two_ways_diagram(highlight: str | None = None) -> plt.Figure:
    """Two panels: LoRA as a parametrization (the weight W0 + s·BA is rebuilt on every forward) and
    as a wrapper (a side path x -> A -> B added beside W0 x); ``highlight`` ("parametrize" or "wrapper")
    draws the other panel faded."""
    from matplotlib.patches import FancyBboxPatch

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))

    def box(ax, xy, wh, text, color, alpha):
        x, y = xy
        w, h = wh
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="black", alpha=0.35 * alpha, lw=1
            )
        )
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9, alpha=alpha)

    def arrow(ax, start, end, alpha, text=""):
        ax.annotate("", end, start, arrowprops={"arrowstyle": "->", "lw": 1.3, "alpha": alpha})
        if text:
            mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.04)
            ax.text(*mid, text, ha="center", fontsize=8, alpha=alpha)

    # parametrize: W0, A, B -> W = W0 + s BA (every forward) -> x W^T
    ax = axes[0]
    a = 1.0 if highlight in (None, "parametrize") else 0.35
    box(ax, (0.02, 0.72), (0.2, 0.14), "W0 (out, in)\nfrozen", COLORS["base"], a)
    box(ax, (0.02, 0.45), (0.2, 0.14), "A (r, in)\ntrainable", COLORS["lora"], a)
    box(ax, (0.02, 0.18), (0.2, 0.14), "B (out, r)\ntrainable", COLORS["lora"], a)
    box(ax, (0.34, 0.42), (0.26, 0.2), "W = W0 + s·B A\n(out, in), rebuilt\non every forward", "#F2E8CF", a)
    for y in (0.79, 0.52, 0.25):
        arrow(ax, (0.23, y), (0.34, 0.52), a)
    box(ax, (0.72, 0.42), (0.25, 0.2), "h = x Wᵀ + b\n(batch, out)", COLORS["parametrize"], a)
    arrow(ax, (0.61, 0.52), (0.72, 0.52), a)
    ax.text(0.845, 0.85, "x (batch, in)", ha="center", fontsize=9, alpha=a)
    arrow(ax, (0.845, 0.82), (0.845, 0.63), a)
    ax.set_title("parametrize: LoRA changes the weight\n(one matmul with x, plus rebuilding W)", fontsize=10)

    # wrapper: x -> W0 x + b ; x -> A -> B -> * s ; add
    ax = axes[1]
    a = 1.0 if highlight in (None, "wrapper") else 0.35
    ax.text(0.06, 0.52, "x\n(batch, in)", ha="center", va="center", fontsize=9, alpha=a)
    box(ax, (0.22, 0.68), (0.3, 0.14), "W0 x + b (frozen)\n(batch, out)", COLORS["base"], a)
    box(ax, (0.2, 0.2), (0.16, 0.14), "A: x Aᵀ\n(batch, r)", COLORS["lora"], a)
    box(ax, (0.45, 0.2), (0.2, 0.14), "B, times s\n(batch, out)", COLORS["lora"], a)
    box(ax, (0.76, 0.44), (0.08, 0.14), "+", "#F2E8CF", a)
    ax.text(0.96, 0.51, "h", ha="center", va="center", fontsize=10, alpha=a)
    arrow(ax, (0.11, 0.56), (0.22, 0.75), a)
    arrow(ax, (0.11, 0.48), (0.2, 0.27), a)
    arrow(ax, (0.37, 0.27), (0.45, 0.27), a, "r numbers")
    arrow(ax, (0.53, 0.75), (0.76, 0.53), a)
    arrow(ax, (0.66, 0.27), (0.76, 0.49), a)
    arrow(ax, (0.85, 0.51), (0.93, 0.51), a)
    ax.set_title("wrapper: LoRA adds a side path beside W0\n(B A is never formed)", fontsize=10)
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0.1, 0.95)
        ax.axis("off")
    fig.suptitle("Two ways to attach LoRA to a linear layer (s = lora_alpha / r)", fontsize=11)
    fig.tight_layout()
    return fig


def lora_diagram(
    d: int | str = "d",
    k: int | str = "k",
    r: int | str = "r",
    lora_alpha: float | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """The LoRA picture for one layer W0 (d x k): x (k numbers) goes through the frozen W0 and, beside it,
    down through A (r x k) and up through B (d x r), scaled by lora_alpha / r; the two paths add to h (d).
    Sizes may be numbers or letters (the default: the paper's d, k, r); ``lora_alpha`` None shows α/r only."""
    from matplotlib.patches import FancyArrowPatch, Polygon, Rectangle

    ax = ax or plt.subplots(figsize=(9, 4.2))[1]
    frozen, trained = COLORS["base"], COLORS["lora"]

    def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="black", lw=1.2))

    # input and output
    ax.text(0.2, 3.0, f"x\n({k})", ha="center", va="center", fontsize=12)
    ax.text(9.7, 3.0, f"h\n({d})", ha="center", va="center", fontsize=12)
    # frozen path
    ax.add_patch(Rectangle((3.2, 4.0), 2.6, 1.6, facecolor=frozen, alpha=0.35, edgecolor=frozen, lw=2))
    ax.text(4.5, 4.8, f"W₀  (frozen)\n{d} × {k}", ha="center", va="center", fontsize=11)
    # low-rank path: A narrows k -> r, B widens r -> d
    ax.add_patch(
        Polygon(
            [(2.4, 0.2), (3.9, 0.9), (3.9, 1.7), (2.4, 2.4)], facecolor=trained, alpha=0.45, edgecolor=trained
        )
    )
    ax.text(3.1, 1.3, f"A\n{r} × {k}", ha="center", va="center", fontsize=10)
    ax.add_patch(
        Polygon(
            [(4.6, 0.9), (6.1, 0.2), (6.1, 2.4), (4.6, 1.7)], facecolor=trained, alpha=0.45, edgecolor=trained
        )
    )
    ax.text(5.4, 1.3, f"B\n{d} × {r}", ha="center", va="center", fontsize=10)
    ax.text(4.25, 0.45, f"{r} numbers", ha="center", va="center", fontsize=9, color="dimgray")
    ax.add_patch(Rectangle((6.6, 0.8), 1.2, 1.0, facecolor="white", edgecolor=trained, lw=2))
    scale = "× α/r" if lora_alpha is None else f"× α/r\n= {lora_alpha:g}/{r}"
    ax.text(7.2, 1.3, scale, ha="center", va="center", fontsize=9)
    # sum
    ax.add_patch(plt.Circle((8.7, 3.0), 0.3, facecolor="white", edgecolor="black", lw=1.2))
    ax.text(8.7, 3.0, "+", ha="center", va="center", fontsize=14)
    arrow((0.6, 3.2), (3.2, 4.6))
    arrow((0.6, 2.8), (2.4, 1.5))
    arrow((3.9, 1.3), (4.6, 1.3))
    arrow((6.1, 1.3), (6.6, 1.3))
    arrow((5.8, 4.8), (8.5, 3.2))
    arrow((7.8, 1.3), (8.55, 2.75))
    arrow((9.0, 3.0), (9.4, 3.0))
    ax.text(4.5, 3.55, "trained: A and B only, r·(d + k) numbers", ha="center", fontsize=9, color=trained)
    ax.set_xlim(-0.2, 10.2)
    ax.set_ylim(-0.1, 5.9)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("LoRA on one layer: h = W₀x + (α/r)·B A x, with B = 0 at the start")
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
