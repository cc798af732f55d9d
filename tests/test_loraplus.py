"""loraplus_param_groups: B (and 1-d parameters) at ratio times A's learning rate, as PEFT groups them."""

import math

import pytest
import torch

from lora_teach import add_lora, loraplus_param_groups, mark_only_lora_as_trainable
from tests.conftest import TwoLayer


def named_groups(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return [(g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in groups]


def test_b_trains_ratio_times_faster_than_a_and_biases_have_no_decay(two_layer):
    add_lora(two_layer, 2, use_dora=True)
    mark_only_lora_as_trainable(two_layer, bias="lora_only")
    groups = loraplus_param_groups(two_layer, lr=1e-3, ratio=16, weight_decay=0.1)
    assert named_groups(two_layer, groups) == [
        (1e-3, 0.1, ["encoder.0.lora_A", "head.lora_A"]),
        (
            0.016,
            0.1,
            [
                "encoder.0.lora_B",
                "encoder.0.lora_magnitude_vector",
                "head.lora_B",
                "head.lora_magnitude_vector",
            ],
        ),
        (0.016, 0.0, ["encoder.0.base_layer.bias", "head.base_layer.bias"]),
    ]
    torch.optim.AdamW(groups)  # the groups are what torch.optim takes


def test_frozen_parameters_are_left_out_and_so_are_empty_groups(two_layer):
    add_lora(two_layer, 2, method="parametrize")
    mark_only_lora_as_trainable(two_layer)
    groups = loraplus_param_groups(two_layer, lr=0.1, ratio=4)
    assert [(g["lr"], len(g["params"])) for g in groups] == [(0.1, 2), (0.4, 2)]


@pytest.mark.parametrize(("argument", "value"), [("lr", 0), ("lr", math.nan), ("ratio", -1), ("ratio", "16")])
def test_bad_learning_rates_are_refused(argument, value, two_layer):
    kwargs = {"lr": 1e-3, "ratio": 16, argument: value}
    with pytest.raises(ValueError, match=f"{argument} must be a finite number > 0"):
        loraplus_param_groups(two_layer, **kwargs)


def test_a_fully_frozen_model_is_refused(two_layer):
    two_layer.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        loraplus_param_groups(two_layer, lr=1e-3, ratio=16)


def test_without_adapters_every_weight_is_group_a_and_every_bias_group_b():
    model = TwoLayer()
    groups = named_groups(model, loraplus_param_groups(model, lr=1.0, ratio=2))
    assert groups == [
        (1.0, 0.0, ["encoder.0.weight", "head.weight"]),
        (2.0, 0.0, ["encoder.0.bias", "head.bias"]),
    ]
