"""Issue 11's contract for the core: bad input is refused with one clear line and the model is
left bit-identical; what is accepted does the documented thing (shared layers, merge, unmerge, load).
"""

import copy
import math

import pytest
import torch
from torch import nn

from lora_teach import (
    LinearWithLoRA,
    LoRAParametrization,
    add_lora,
    load_lora_state_dict,
    lora_modules,
    lora_state_dict,
    mark_only_lora_as_trainable,
    merge_lora,
)
from tests.conftest import TwoLayer

METHODS = ["wrapper", "parametrize"]


def snapshot(model: nn.Module) -> tuple[list, dict]:
    """What must not change: every module's type at every place, and every tensor's bits."""
    types = [(n, type(m)) for n, m in model.named_modules(remove_duplicate=False)]
    return types, {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: tuple[list, dict]) -> None:
    types, state = before
    assert [(n, type(m)) for n, m in model.named_modules(remove_duplicate=False)] == types
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k in state:  # bit for bit, NaN included
        torch.testing.assert_close(now[k], state[k], rtol=0, atol=0, equal_nan=True)


def trained_like(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            lora.lora_B.copy_(torch.randn(lora.lora_B.shape, generator=g) * 0.1)
    return model


class Shared(nn.Module):
    """One nn.Linear at two places (tied layers): ``first`` and ``second.inner`` are the same module."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.second = nn.Sequential()
        self.second.inner = self.first
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second.inner(torch.relu(self.first(x))))


# --- 4. lora_alpha and r: numbers that would silently break the adapter are refused ------------


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -math.inf, 0, 0.0, -2.0, True, "8", None])
@pytest.mark.parametrize("method", METHODS)
def test_add_lora_refuses_an_alpha_that_is_not_a_finite_positive_number(alpha, method, two_layer):
    before = snapshot(two_layer)
    with pytest.raises(ValueError, match=r"lora_alpha must be a finite number > 0 .*got"):
        add_lora(two_layer, 2, lora_alpha=alpha, method=method)
    assert_unchanged(two_layer, before)


@pytest.mark.parametrize("alpha", [math.nan, math.inf, 0])
def test_the_layers_refuse_a_bad_alpha(alpha):
    with pytest.raises(ValueError, match="lora_alpha must be a finite number > 0"):
        LinearWithLoRA(nn.Linear(4, 4), 2, lora_alpha=alpha)
    with pytest.raises(ValueError, match="lora_alpha must be a finite number > 0"):
        LoRAParametrization(4, 4, 2, lora_alpha=alpha)


@pytest.mark.parametrize("r", [2.0, 2.5, "2", True, 0])
def test_add_lora_refuses_an_r_that_is_not_a_positive_integer(r, two_layer):
    before = snapshot(two_layer)
    with pytest.raises(ValueError, match=r"r must be an integer between 1 and"):
        add_lora(two_layer, r)
    assert_unchanged(two_layer, before)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"rank_pattern": {"head": 2.0}}, "rank_pattern values must be integers r >= 1, got 2.0"),
        (
            {"rank_pattern": {"head": 9}},
            r"r must be an integer between 1 and min\(in_features, out_features\) = 5",
        ),
        ({"rank_pattern": {"nothing_here": 1}}, "rank_pattern key 'nothing_here' matches no target"),
        ({"alpha_pattern": {"head": math.nan}}, "lora_alpha must be a finite number"),
        ({"alpha_pattern": {"(": 2}}, "alpha_pattern key '\\(' is not a valid regular expression"),
        ({"rank_pattern": ["head"]}, "rank_pattern must be a dict"),
    ],
)
def test_bad_rank_and_alpha_patterns_are_refused(option, message, two_layer):
    before = snapshot(two_layer)
    with pytest.raises((ValueError, TypeError), match=message):
        add_lora(two_layer, 2, **option)
    assert_unchanged(two_layer, before)


@pytest.mark.parametrize("p", [math.nan, "0.1", True])
def test_add_lora_refuses_a_dropout_that_is_not_a_number_in_0_1(p, two_layer):
    before = snapshot(two_layer)
    with pytest.raises(ValueError, match=r"lora_dropout must be in \[0, 1\)"):
        add_lora(two_layer, 2, lora_dropout=p)
    assert_unchanged(two_layer, before)


# --- 9. a layer shared by two parents stays shared ---------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", [["first"], ["inner"], None])
def test_a_shared_layer_gets_one_adapter_installed_at_every_place(method, target):
    torch.manual_seed(0)
    model = Shared()
    x = torch.randn(4, 6)
    expected = model(x)
    names = add_lora(model, 2, target_modules=target, method=method)
    assert names[0] == "first"
    assert model.first is model.second.inner
    assert [n for n, _ in lora_modules(model)] == names
    assert torch.equal(model(x), expected)
    trained_like(model)
    adapted = model(x)
    merge_lora(model)
    assert model.first is model.second.inner
    assert type(model.first) is nn.Linear
    torch.testing.assert_close(model(x), adapted, rtol=1e-5, atol=1e-6)


def test_training_a_shared_adapter_updates_it_at_both_places():
    torch.manual_seed(0)
    model = Shared()
    add_lora(model, 2, target_modules=["first"])
    mark_only_lora_as_trainable(model)
    model(torch.randn(4, 6)).square().sum().backward()
    assert model.first.lora_B.grad is model.second.inner.lora_B.grad
    assert model.first.lora_B.grad.abs().sum() > 0


# --- 10. merging a deepcopy of a parametrized model leaves the original working ----------------


def test_merging_a_deepcopy_of_a_parametrized_model_leaves_the_original_intact():
    torch.manual_seed(0)
    model = trained_like(TwoLayer())
    add_lora(model, 2, method="parametrize")
    trained_like(model)
    x = torch.randn(3, 12)
    expected = model(x)
    merged = merge_lora(copy.deepcopy(model))
    torch.testing.assert_close(merged(x), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(model(x), expected)  # the old code: AttributeError ... has no attribute 'weight'
    assert [n for n, _ in lora_modules(model)] == ["encoder.0", "head"]
    merge_lora(model)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


# --- 11. a merge that would write NaN or inf is refused, the weights untouched ------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_layer_merge_refuses_a_non_finite_delta_and_keeps_the_weight(bad):
    layer = LinearWithLoRA(nn.Linear(4, 3), 2)
    with torch.no_grad():
        layer.lora_B[0, 0] = bad
    weight = layer.base_layer.weight.detach().clone()
    with pytest.raises(ValueError, match="merging would put NaN or inf into the base weight"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, weight)
    assert not layer.merged


@pytest.mark.parametrize("method", METHODS)
def test_merge_lora_refuses_a_non_finite_adapter_and_changes_no_layer(method):
    torch.manual_seed(0)
    model = TwoLayer()
    add_lora(model, 2, method=method)
    trained_like(model)
    lora = dict(lora_modules(model))["head"]
    with torch.no_grad():
        lora.lora_B[0, 0] = math.nan
    before = snapshot(model)
    with pytest.raises(ValueError, match="merging 'head' would put NaN or inf into its weight"):
        merge_lora(model)
    assert_unchanged(model, before)
    if method == "wrapper":
        assert not model.encoder[0].merged  # the earlier layer was not merged either


# --- 12. unmerge takes out exactly what merge put in ---------------------------------------------


@pytest.mark.parametrize("use_dora", [False, True])
def test_unmerge_restores_the_weight_even_if_lora_b_changed_while_merged(use_dora):
    torch.manual_seed(0)
    layer = LinearWithLoRA(nn.Linear(5, 4), 2, use_dora=use_dora)
    trained_like(nn.ModuleDict({"l": layer}))
    weight = layer.base_layer.weight.detach().clone()
    layer.merge()
    with torch.no_grad():
        layer.lora_B.add_(1.0)  # e.g. an optimizer step while merged
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, weight, rtol=0, atol=1e-6)


# --- 13. load_lora_state_dict refuses NaN values, NaN scalings and stray scalings ---------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["head.lora_A"].__setitem__((0, 0), math.nan), r"head.lora_A: holds NaN or inf"),
        (lambda s: s["head.lora_B"].__setitem__((0, 0), math.inf), r"head.lora_B: holds NaN or inf"),
        (lambda s: s.__setitem__("head.scaling", torch.tensor(math.nan)), "the scaling is nan"),
        (lambda s: s.__setitem__("head.scaling", "big"), "a scaling must be one number"),
        (
            lambda s: s.__setitem__("encoder.1.scaling", torch.tensor(1.0)),
            r"unexpected key 'encoder.1.scaling': 'encoder.1' has no adapter",
        ),
        (lambda s: s.__setitem__("head.lora_A", [[1.0]]), "head.lora_A: expected a tensor, got list"),
    ],
)
def test_load_lora_state_dict_refuses_bad_values_and_copies_nothing(method, change, message):
    torch.manual_seed(0)
    model = TwoLayer()
    add_lora(model, 2, method=method)
    state = lora_state_dict(trained_like(copy.deepcopy(model), seed=3))
    change(state)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        load_lora_state_dict(model, state)
    assert_unchanged(model, before)


def test_load_lora_state_dict_refuses_what_is_not_a_dict(two_layer):
    add_lora(two_layer, 2)
    with pytest.raises(TypeError, match="state must be a dict"):
        load_lora_state_dict(two_layer, [("head.lora_A", torch.zeros(2, 8))])
