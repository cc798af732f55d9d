"""lora_teach.studies: held-out slices, mixed adapters and the paired verdicts behind notebooks 07-08."""

import copy

import pytest
import torch
from torch import nn

from lora_teach.adapters import add_lora, lora_state_dict
from lora_teach.studies import Run, VariantStudy, heldout_splits, mixed_model, variant_verdicts


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
