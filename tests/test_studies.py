"""lora_teach.studies: held-out slices, mixed adapters and the paired verdicts behind notebooks 07-08."""

import copy

import pytest
import torch
from torch import nn

from lora_teach.adapters import add_lora, lora_state_dict
from lora_teach.studies import (
    MixingResult,
    Run,
    VariantStudy,
    heldout_splits,
    mixed_model,
    mixing_verdicts,
    rank_verdicts,
    variant_verdicts,
)


def test_heldout_splits_are_disjoint_and_cover_the_set():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    (xv, yv), (xt, yt) = heldout_splits(x, y, val_size=4)
    assert yv.tolist() == [0, 1, 2, 3] and yt.tolist() == [4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("val_size", [0, 10, -1])
def test_heldout_splits_rejects_a_size_that_leaves_a_slice_empty(val_size):
    x, y = torch.zeros(10, 1), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="val_size must be between 1 and 9"):
        heldout_splits(x, y, val_size=val_size)


def test_mixed_model_adds_each_update_with_its_weight(two_layer):
    x = torch.randn(3, 12)
    states = []
    for seed in (0, 1):
        adapted = copy.deepcopy(two_layer)
        torch.manual_seed(seed)
        add_lora(adapted, r=2, lora_alpha=4.0)
        for _, p in adapted.named_parameters():
            if p.shape[-1] == 2:  # lora_B: make the update non-zero
                nn.init.normal_(p)
        states.append(lora_state_dict(adapted))
    with torch.no_grad():
        assert torch.equal(mixed_model(two_layer, states, (0.0, 0.0))(x), two_layer(x))
        layer = mixed_model(two_layer, states, (0.5, 2.0)).head
        expected = two_layer.head.weight.clone()
        for state, w in zip(states, (0.5, 2.0)):
            expected += w * state["head.scaling"] * state["head.lora_B"] @ state["head.lora_A"]
        assert torch.allclose(layer.weight, expected, atol=1e-6)


def test_variant_verdicts_pair_each_method_with_the_reference():
    study = VariantStudy()
    for seed, (a, b) in enumerate([(90.0, 95.0), (91.0, 96.0), (92.0, 97.1)]):
        study.runs += [Run("LoRA", 1e-3, seed, 1, 0, a, 50), Run("X", 1e-3, seed, 1, 0, b, 50 + seed % 2)]
    study.best_lr = {"LoRA": 1e-3, "X": 1e-3}
    verdicts = variant_verdicts(study)
    assert verdicts == {"X vs LoRA, test_target": "higher", "X vs LoRA, test_others": "indistinguishable"}


def two_method_study(x_target: list[float]) -> VariantStudy:
    """LoRA at 90, 91, 92 % on the target digits over three seeds, X at ``x_target``; 50 % on the others."""
    study = VariantStudy(best_lr={"LoRA": 1e-3, "X": 1e-3})
    for seed, (a, b) in enumerate(zip([90.0, 91.0, 92.0], x_target)):
        study.runs += [Run("LoRA", 1e-3, seed, 1, 0, a, 50), Run("X", 1e-3, seed, 1, 0, b, 50 + seed % 2)]
    return study


def test_variant_verdicts_over_two_bases_claim_only_what_both_say():
    higher, lower = two_method_study([95.0, 96.0, 97.1]), two_method_study([85.0, 86.0, 87.1])
    both = variant_verdicts(higher, two_method_study([94.0, 95.2, 96.0]))
    assert both == {"X vs LoRA, test_target": "higher", "X vs LoRA, test_others": "indistinguishable"}
    split = variant_verdicts(higher, lower)
    assert split == {"X vs LoRA, test_target": "depends", "X vs LoRA, test_others": "indistinguishable"}


def slices_disagree_study() -> VariantStudy:
    """LoRA and X over a grid of two rates; validation prefers 1e-3 for both, the test slice prefers 1e-2
    for X. At X's 1e-2 X is far better than LoRA on the validation slice, at 1e-3 no better on test."""
    study = VariantStudy()
    for seed in range(3):
        for name, lr, val, test in [
            ("LoRA", 1e-3, 90.0, 90.0),
            ("LoRA", 1e-2, 80.0, 80.0),
            ("X", 1e-3, 91.0, 90.0 + seed % 2),
            ("X", 1e-2, 99.0 + 0.1 * seed, 95.0),
        ]:
            study.runs.append(Run(name, lr, seed, 1, val, test, 50.0, val_others=60.0 + seed))
    for name in ("LoRA", "X"):
        for lr in (1e-3, 1e-2):
            study.val_means[name, lr] = sum(study.values(name, "val_target", lr)) / 3
            study.test_means[name, lr] = sum(study.values(name, "test_target", lr)) / 3
    study.best_lr = {"LoRA": 1e-3, "X": 1e-3}
    study.test_lr = {"LoRA": 1e-3, "X": 1e-2}
    return study


def test_swapped_chooses_on_the_test_slice_and_reports_the_validation_slice():
    study = slices_disagree_study()
    other = study.swapped()
    assert other.best_lr == {"LoRA": 1e-3, "X": 1e-2} and other.test_lr == study.best_lr
    assert other.values("X", "test_target") == [99.0, 99.1, 99.2]  # validation scores at the test-chosen rate
    assert other.values("X", "test_others") == [60.0, 61.0, 62.0]
    assert other.swapped() == study
    assert variant_verdicts(study) == {
        "X vs LoRA, test_target": "indistinguishable",
        "X vs LoRA, test_others": "indistinguishable",
    }
    assert variant_verdicts(other)["X vs LoRA, test_target"] == "higher"
    assert variant_verdicts(study, other)["X vs LoRA, test_target"] == "depends"


def test_swapped_is_refused_for_a_study_chosen_one_way_only():
    with pytest.raises(ValueError, match="both_ways=True"):
        two_method_study([95.0, 96.0, 97.1]).swapped()


def test_at_edge_says_whether_the_chosen_rate_is_an_end_of_its_grid():
    study = slices_disagree_study()
    study.val_means["X", 3e-3] = 0.0  # a three-rate grid for X: 1e-3 < 3e-3 < 1e-2
    study.best_lr["X"] = 3e-3
    assert study.at_edge("LoRA") and not study.at_edge("X")
    assert study.swapped().at_edge("X")  # 1e-2, chosen on the test slice


def rank_study(shrink: float) -> VariantStudy:
    """A rank sweep whose ||ΔW|| at r = 8 is ``shrink`` below r = 1 for both rules (seed noise 0.01)."""
    study = VariantStudy()
    for rule in ("LoRA", "rsLoRA"):
        for r, size in ((1, 2.0), (8, 2.0 - shrink)):
            study.best_lr[f"{rule} r={r}"] = 1e-3
            for seed in range(3):
                norm = size + 0.01 * seed * (r == 8)
                study.runs.append(Run(f"{rule} r={r}", 1e-3, seed, 1, float("nan"), 98.0, 90.0 + seed, norm))
    return study


def test_rank_verdicts_over_two_bases_say_depends_where_they_disagree():
    assert rank_verdicts(rank_study(0.5))["LoRA r=8 vs r=1, delta_norm"] == "lower"
    assert rank_verdicts(rank_study(0.5), rank_study(0.5))["rsLoRA r=8 vs r=1, delta_norm"] == "lower"
    split = rank_verdicts(rank_study(0.5), rank_study(0.0))
    assert split["LoRA r=8 vs r=1, delta_norm"] == "depends"
    assert split["LoRA r=8 vs r=1, test_others"] == "indistinguishable"


@pytest.mark.parametrize("verdicts", [variant_verdicts, rank_verdicts])
def test_verdicts_of_no_study_are_refused(verdicts):
    with pytest.raises(ValueError, match="at least one"):
        verdicts()


def _mixing(val_first, test_first, swapped_mix=None):
    """A mixing result whose first half is better on the validation slice by val_first points, and on the
    test slice by test_first points (three seeds); the mix chosen on test scores ``swapped_mix`` on val."""
    names = ("base", "first half only", "second half only", "sum (1, 1)", "searched mix", "control")
    accuracy = {name: [90.0, 91.0, 92.0] for name in names}
    val = {name: [90.0, 91.0, 92.0] for name in names}
    accuracy["first half only"] = [v + test_first for v in accuracy["second half only"]]
    accuracy["searched mix"] = [92.0, 93.1, 93.9]  # about 2 above the second half on test
    val["first half only"] = [v + val_first for v in val["second half only"]]
    swapped = [92.0, 93.1, 93.9] if swapped_mix is None else swapped_mix
    return MixingResult(accuracy, [(1.0, 1.0)] * 3, (0, 1, 2), val, swapped, [(1.0, 1.0)] * 3)


@pytest.mark.parametrize(
    ("val_first", "test_first", "chosen", "verdict"),
    [(1.0, -5.0, "first", "higher"), (-1.0, 5.0, "second", "higher"), (1.0, 5.0, "first", "depends")],
)
def test_the_better_single_half_is_chosen_on_one_slice_and_compared_on_the_other(
    val_first, test_first, chosen, verdict
):
    result = _mixing(val_first, test_first)
    assert result.better_single() == f"{chosen} half only"
    (way_val, on_test), (way_test, on_val) = result.mix_against("better single")
    assert way_val == "chosen on the validation slice" and way_test == "chosen on the test slice"
    # chosen on val, scored on test: the mix (about 2 above the second half) against the half val chose
    assert on_test.verdict == ("higher" if chosen == "second" or test_first < 0 else "lower")
    # chosen on test, scored on val: the half test chose, against the swapped mix on val
    test_choice = result.better_single(on="test")
    assert test_choice == ("first half only" if test_first > 0 else "second half only")
    assert mixing_verdicts(result)["searched mix vs best single half"] == verdict


def test_a_verdict_the_two_ways_round_disagree_on_is_not_claimed():
    agree = _mixing(1.0, -5.0)
    assert mixing_verdicts(agree)["searched mix vs control"] == "higher"
    disagree = _mixing(
        1.0, -5.0, swapped_mix=[90.0, 91.0, 92.0]
    )  # chosen on test, the mix equals the control
    assert [c.verdict for _, c in disagree.mix_against("control")] == ["higher", "indistinguishable"]
    assert mixing_verdicts(disagree)["searched mix vs control"] == "depends"
    assert mixing_verdicts(agree, disagree)["searched mix vs control"] == "depends"  # over two results too


def test_mixing_refuses_what_it_cannot_compare():
    result = _mixing(1.0, -5.0)
    with pytest.raises(ValueError, match="other must be a variant of"):
        result.mix_against("controls")
    with pytest.raises(ValueError, match='on must be "val" or "test"'):
        result.better_single(on="train")
    with pytest.raises(ValueError, match="swapped_mix is empty"):
        MixingResult({"first half only": [1.0]}, [(1.0, 0.0)], (0,)).mix_against("base")
    with pytest.raises(ValueError, match="val_accuracy is empty"):
        MixingResult({}, [(1.0, 0.0)], (0,)).better_single()
    with pytest.raises(ValueError, match="at least one MixingResult"):
        mixing_verdicts()
