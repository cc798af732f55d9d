"""The verdicts of notebooks 07 and 08 do not depend on the thread count: the experiment functions
behind them (lora_teach.studies), rerun with fast settings at 1 and at 2 torch threads, give the same
verdicts (and the same numbers)."""

import pytest
import torch

from lora_teach.data import load_mnist
from lora_teach.experiment import WEAK_DIGITS, pretrained_digitsnet
from lora_teach.loraplus import loraplus_param_groups
from lora_teach.studies import (
    heldout_splits,
    lora_adapt,
    mixing_study,
    mixing_verdicts,
    rank_sweep,
    rank_verdicts,
    variant_study,
    variant_verdicts,
)

OTHER_DIGITS = (0, 1, 4, 6, 7)
FAST = {"num_steps": 30, "progress": False}


def loraplus_groups(model, lr):
    return loraplus_param_groups(model, lr, ratio=16)


@pytest.fixture(scope="module")
def setting():
    base = pretrained_digitsnet("corrected", progress=False)
    base.requires_grad_(False)
    val, test = heldout_splits(*load_mnist("test"))
    # fast settings: fewer images to score (evaluation dominates at 30 training steps)
    return base, load_mnist("train"), (val[0][:1000], val[1][:1000]), (test[0][:2000], test[1][:2000])


def at_threads(count, function):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return function()
    finally:
        torch.set_num_threads(before)


def test_mixing_verdicts_are_the_same_at_one_and_two_threads(setting):
    base, train_data, val, test = setting

    def run():
        return mixing_study(
            base,
            train_data,
            val,
            test,
            (WEAK_DIGITS, OTHER_DIGITS),
            seeds=(0, 1, 2),
            grid=(0.0, 0.5, 1.0),
            **FAST,
        )

    one, two = at_threads(1, run), at_threads(2, run)
    assert mixing_verdicts(one) == mixing_verdicts(two)
    assert one.chosen == two.chosen and one.swapped_chosen == two.swapped_chosen


def test_variant_and_rank_verdicts_are_the_same_at_one_and_two_threads(setting):
    base, train_data, val, test = setting
    weak = tuple(t[torch.isin(train_data[1], torch.tensor(WEAK_DIGITS))] for t in train_data)
    methods = {
        "LoRA": (lora_adapt(4, 4.0), None),
        "rsLoRA": (lora_adapt(4, 4.0, use_rslora=True), None),
        "LoRA+": (lora_adapt(4, 4.0), loraplus_groups),
        "DoRA": (lora_adapt(4, 4.0, use_dora=True), None),
        "PiSSA": (lora_adapt(4, 4.0, init_lora_weights="pissa"), None),
    }

    def run():
        study = variant_study(
            base,
            methods,
            weak,
            val,
            test,
            WEAK_DIGITS,
            OTHER_DIGITS,
            lrs=(3e-4, 3e-3),
            seeds=(0, 1, 2),
            extra_seeds=(3,),
            both_ways=True,
            **FAST,
        )
        sweep = rank_sweep(base, weak, test, WEAK_DIGITS, OTHER_DIGITS, ranks=(1, 8), seeds=(0, 1, 2), **FAST)
        return study, sweep

    (study1, sweep1), (study2, sweep2) = at_threads(1, run), at_threads(2, run)
    assert study1.best_lr == study2.best_lr and study1.test_lr == study2.test_lr
    assert variant_verdicts(study1, study1.swapped()) == variant_verdicts(study2, study2.swapped())
    for name in methods:  # both ways round, four seeds at the chosen rate: the grid's three and the extra one
        assert [run.seed for run in study1.at(name)] == [0, 1, 2, 3]
        assert [run.seed for run in study1.swapped().at(name)] == [0, 1, 2, 3]
    assert rank_verdicts(sweep1) == rank_verdicts(sweep2)


def test_nb07_states_a_mixing_verdict_only_where_all_four_ways_agree():
    """07's mixing sentences are asked on two base checkpoints, each choosing on one slice and scoring on the
    other, both ways round; a sentence with a verdict word gives all four ways' numbers."""
    import nbformat

    from tests.test_verdicts_0405 import ROOT, cell_with, shown

    notebook = nbformat.read(ROOT / "notebooks" / "07_adapters_in_practice.ipynb", as_version=4)
    cell = cell_with(notebook, "mixing_verdict = mixing_verdicts(mixing, mixing_1)")
    lines = [line for line in shown(cell).splitlines() if line.startswith("- the searched mix")]
    assert len(lines) == 3
    for line in lines:
        for k in (0, 1):
            for way in ("chosen on the validation slice", "chosen on the test slice"):
                assert f"on base checkpoint {k}, {way}" in line
        assert ("depends on the data" in line) == ("so no verdict is claimed" in line)


def test_nb07_compares_each_task_adapter_with_every_other_column_on_both_checkpoints():
    """No 'best other column' chosen on the scores it is compared on: the own adapter meets every column, on both
    base checkpoints, and a verdict is stated only where all those comparisons give it."""
    import nbformat

    from tests.test_verdicts_0405 import ROOT, cell_with, shown

    notebook = nbformat.read(ROOT / "notebooks" / "07_adapters_in_practice.ipynb", as_version=4)
    cell = cell_with(notebook, "own_adapter_verdicts = {}")
    assert "max(others" not in cell.source and "scores_1" in cell.source
    lines = [line for line in shown(cell).splitlines() if line.strip()]
    assert len(lines) == 3
    for line in lines:
        assert (
            "than every other column on both base checkpoints" in line or "so no verdict is claimed" in line
        )
