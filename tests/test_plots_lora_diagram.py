"""The LoRA picture of notebook 02 labels both paths with their shapes and the scaling."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from lora_teach.plots import lora_diagram  # noqa: E402


def _texts(ax) -> str:
    return " | ".join(t.get_text() for t in ax.texts)


def test_the_diagram_labels_the_paper_shapes_and_the_scaling():
    ax = lora_diagram()
    texts = _texts(ax)
    assert "d × k" in texts and "r × k" in texts and "d × r" in texts and "α/r" in texts
    assert "frozen" in texts and ax.get_title().startswith("LoRA on one layer")
    plt.close(ax.figure)


def test_the_diagram_takes_numbers_and_shows_alpha_over_r():
    ax = lora_diagram(d=256, k=784, r=4, lora_alpha=8)
    texts = _texts(ax)
    assert "256 × 784" in texts and "4 × 784" in texts and "256 × 4" in texts and "= 8/4" in texts
    plt.close(ax.figure)
