"""The two-ways diagram of notebooks 04/05: both data flows drawn, labelled, and the highlight fades the other."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from lora_teach.plots import lora_two_ways_diagram  # noqa: E402


def _texts(ax):
    return " ".join(t.get_text() for t in ax.texts)


def test_both_panels_are_titled_and_name_their_shapes():
    fig = lora_two_ways_diagram()
    parametrize_ax, wrapper_ax = fig.axes
    assert "parametrize" in parametrize_ax.get_title() and "wrapper" in wrapper_ax.get_title()
    assert "W0 + s·B A" in _texts(parametrize_ax) and "A (r, in)" in _texts(parametrize_ax)
    assert "(batch, r)" in _texts(wrapper_ax) and "+" in _texts(wrapper_ax)
    plt.close(fig)


def test_highlight_fades_only_the_other_panel():
    fig = lora_two_ways_diagram(highlight="wrapper")
    parametrize_ax, wrapper_ax = fig.axes
    labels = [[t for t in ax.texts if t.get_text()] for ax in (parametrize_ax, wrapper_ax)]
    assert max(t.get_alpha() for t in labels[0]) < 1
    assert min(t.get_alpha() for t in labels[1]) == 1
    plt.close(fig)
