"""Model-level verbs on both methods: add, freeze, switch, merge, save and load."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from lora_teach import (
    DigitsNet,
    LinearWithLoRA,
    add_lora,
    count_parameters,
    load_lora_state_dict,
    lora_disabled,
    lora_modules,
    lora_state_dict,
    mark_only_lora_as_trainable,
    merge_lora,
    set_lora_enabled,
)
from tests.conftest import TwoLayer

METHODS = ["wrapper", "parametrize"]


def trained_like(model, seed=0):
    """Give every adapter random non-zero factors, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            lora.lora_A.copy_(torch.randn(lora.lora_A.shape, generator=g))
            lora.lora_B.copy_(torch.randn(lora.lora_B.shape, generator=g) * 0.1)
    return model


def adapted(method, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = TwoLayer()
    add_lora(model, r=2, lora_alpha=2.0, method=method, **kwargs)
    return trained_like(model, seed)


@pytest.mark.parametrize("method", METHODS)
def test_add_lora_adapts_every_linear_by_default_and_returns_their_names(method, two_layer):
    names = add_lora(two_layer, r=2, method=method)
    assert names == ["encoder.0", "head"]
    assert [name for name, _ in lora_modules(two_layer)] == names


@pytest.mark.parametrize("method", METHODS)
def test_add_lora_adapts_only_the_named_targets(method, two_layer):
    assert add_lora(two_layer, r=1, target_modules=["head"], method=method) == ["head"]
    assert [name for name, _ in lora_modules(two_layer)] == ["head"]


def test_wrapper_method_replaces_the_module_and_keeps_the_original_as_base_layer(two_layer):
    head = two_layer.head
    add_lora(two_layer, r=1, target_modules=["head"])
    assert isinstance(two_layer.head, LinearWithLoRA)
    assert two_layer.head.base_layer is head


def test_parametrize_method_registers_on_the_weight(two_layer):
    add_lora(two_layer, r=1, target_modules=["head"], method="parametrize")
    assert parametrize.is_parametrized(two_layer.head, "weight")


def test_seed_trainable_counts_on_digitsnet():
    model = DigitsNet("original")
    assert count_parameters(model) == 235_146
    add_lora(model, r=2, method="parametrize")
    mark_only_lora_as_trainable(model)
    assert count_parameters(model) == 3_124
    assert count_parameters(model, trainable_only=False) == 238_270
    mark_only_lora_as_trainable(model, bias="all")
    assert count_parameters(model) == 3_124 + 256 + 128 + 10


@pytest.mark.parametrize("method", METHODS)
def test_bias_lora_only_trains_the_biases_of_adapted_layers(method, two_layer):
    add_lora(two_layer, r=1, target_modules=["head"], method=method)
    mark_only_lora_as_trainable(two_layer, bias="lora_only")
    trainable = {n for n, p in two_layer.named_parameters() if p.requires_grad}
    assert {n.rpartition(".")[2] for n in trainable} == {"lora_A", "lora_B", "bias"}
    assert not any(n.startswith("encoder") for n in trainable)


@pytest.mark.parametrize("method", METHODS)
def test_frozen_base_weights_are_bit_identical_after_training(method):
    torch.manual_seed(0)
    model = TwoLayer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, r=2, method=method)
    mark_only_lora_as_trainable(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(8, 12)).square().mean().backward()
        opt.step()
    assert any(lora.lora_B.abs().sum() > 0 for _, lora in lora_modules(model))
    with lora_disabled(model):
        x = torch.randn(3, 12)
        base = TwoLayer()
        base.load_state_dict(before)
        assert torch.equal(model(x), base(x))
    merged = merge_lora(model)
    assert torch.equal(merged.encoder[0].bias, before["encoder.0.bias"])


@pytest.mark.parametrize("method", METHODS)
def test_disabling_lora_gives_the_base_model_and_the_context_restores_it(method):
    model = adapted(method)
    x = torch.randn(4, 12)
    with_lora = model(x)
    with lora_disabled(model):
        without = model(x)
    assert not torch.allclose(with_lora, without)
    assert torch.equal(model(x), with_lora)
    set_lora_enabled(model, False)
    assert torch.equal(model(x), without)


@pytest.mark.parametrize("method", METHODS)
@given(seed=st.integers(0, 1000))
def test_merge_lora_leaves_plain_linears_computing_the_same_function(method, seed):
    model = adapted(method, seed)
    x = torch.randn(4, 12)
    expected = model(x)
    merged = merge_lora(model)
    assert merged is model
    assert all(type(m) is nn.Linear for m in [model.encoder[0], model.head])
    assert not parametrize.is_parametrized(model.head)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_merge_lora_keeps_the_frozen_flag_of_base_weights(method):
    model = adapted(method)
    mark_only_lora_as_trainable(model)
    merge_lora(model)
    assert not model.head.weight.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_lora_state_dict_holds_only_the_factors_and_scaling(method):
    state = lora_state_dict(adapted(method))
    assert sorted(state) == sorted(
        f"{layer}.{leaf}" for layer in ["encoder.0", "head"] for leaf in ["lora_A", "lora_B", "scaling"]
    )
    assert state["head.lora_A"].shape == (2, 8)
    assert state["head.scaling"].item() == 1.0


def test_lora_state_dict_with_biases():
    model = adapted("wrapper")
    assert {"encoder.0.bias", "head.bias"} <= set(lora_state_dict(model, bias="all"))


@pytest.mark.parametrize("source", METHODS)
@pytest.mark.parametrize("target", METHODS)
@given(seed=st.integers(0, 1000))
def test_saved_adapter_reproduces_outputs_in_a_fresh_model_of_either_method(
    tmp_path_factory, source, target, seed
):
    model = adapted(source, seed)
    path = tmp_path_factory.mktemp("adapter") / "adapter.pt"
    torch.save(lora_state_dict(model), path)
    torch.manual_seed(seed)  # the same base weights as `model`
    fresh = TwoLayer()
    add_lora(fresh, r=2, lora_alpha=2.0, method=target)
    trained_like(fresh, seed + 1)  # other factors, which the load must overwrite
    x = torch.randn(4, 12)
    assert not torch.allclose(fresh(x), model(x))
    load_lora_state_dict(fresh, torch.load(path, weights_only=True))
    torch.testing.assert_close(fresh(x), model(x), rtol=1e-5, atol=1e-5)


def test_loading_an_adapter_of_another_rank_names_the_shapes():
    state = lora_state_dict(adapted("wrapper"))
    model = TwoLayer()
    add_lora(model, r=1, lora_alpha=1.0)
    with pytest.raises(
        ValueError, match=r"head.lora_A: shape \(2, 8\) in the adapter, \(1, 8\) in the model"
    ):
        load_lora_state_dict(model, state)


def test_loading_an_adapter_with_missing_and_unexpected_layers_names_them():
    state = lora_state_dict(adapted("wrapper"))
    model = TwoLayer()
    add_lora(model, r=2, lora_alpha=2.0, target_modules=["head"])
    with pytest.raises(ValueError, match="unexpected key 'encoder.0.lora_A'"):
        load_lora_state_dict(model, state)
    del state["head.lora_B"]
    with pytest.raises(ValueError, match="missing key 'head.lora_B'"):
        load_lora_state_dict(model, {k: v for k, v in state.items() if k.startswith("head")})


def test_loading_an_adapter_trained_with_another_scaling_is_refused():
    state = lora_state_dict(adapted("wrapper"))
    model = TwoLayer()
    add_lora(model, r=2, lora_alpha=16.0)
    with pytest.raises(ValueError, match="trained with scaling 1, the model's layer has 8"):
        load_lora_state_dict(model, state)


def test_a_refused_load_changes_nothing():
    model = adapted("wrapper")
    before = {k: v.clone() for k, v in lora_state_dict(model).items()}
    bad = lora_state_dict(adapted("wrapper", seed=3))
    bad["head.lora_B"] = torch.zeros(5, 3)
    with pytest.raises(ValueError):
        load_lora_state_dict(model, bad)
    assert all(torch.equal(v, lora_state_dict(model)[k]) for k, v in before.items())


def test_loading_into_a_merged_adapter_is_refused():
    model = adapted("wrapper")
    model.head.merge()
    with pytest.raises(RuntimeError, match="merged; unmerge them before loading"):
        load_lora_state_dict(model, lora_state_dict(model))


def test_missing_target_is_named_with_the_available_linears(two_layer):
    with pytest.raises(
        ValueError,
        match=r"entry 'decoder' matches no module; nn.Linear modules are \['encoder.0', 'head'\]",
    ):
        add_lora(two_layer, r=1, target_modules=["decoder"])


def test_regex_target_that_matches_nothing_is_named(two_layer):
    with pytest.raises(ValueError, match=r"'dec.\*' \(a regular expression for the whole name\) matches no"):
        add_lora(two_layer, r=1, target_modules="dec.*")


def test_target_list_matches_a_suffix_after_a_dot_like_peft():
    blocks = nn.ModuleDict(
        {
            f"block{i}": nn.ModuleDict(
                {"q_proj": nn.Linear(4, 4), "k_proj": nn.Linear(4, 4), "v_proj": nn.Linear(4, 4)}
            )
            for i in range(2)
        }
    )
    adapted = add_lora(blocks, r=1, target_modules=["q_proj", "v_proj"])
    assert adapted == ["block0.q_proj", "block0.v_proj", "block1.q_proj", "block1.v_proj"]


def test_target_list_does_not_match_a_partial_word():
    model = nn.ModuleDict({"xq_proj": nn.Linear(4, 4), "q_proj": nn.Linear(4, 4)})
    assert add_lora(model, r=1, target_modules=["q_proj"]) == ["q_proj"]


def test_target_regex_must_match_the_whole_name():
    model = nn.ModuleDict({"q_proj": nn.Linear(4, 4), "q_proj2": nn.Linear(4, 4), "k": nn.Linear(4, 4)})
    assert add_lora(model, r=1, target_modules=r"q_proj") == ["q_proj"]


def test_targets_given_as_a_generator_are_all_adapted(two_layer):
    assert add_lora(two_layer, r=1, target_modules=(n for n in ["head", "encoder.0"])) == [
        "encoder.0",
        "head",
    ]


def test_duplicate_targets_adapt_a_layer_once(two_layer):
    assert add_lora(two_layer, r=1, target_modules=["head", "head"]) == ["head"]
    assert isinstance(two_layer.head, LinearWithLoRA)
    assert isinstance(two_layer.head.base_layer, nn.Linear)


def test_a_bare_linear_as_the_model_is_refused():
    with pytest.raises(TypeError, match="model is a bare nn.Linear"):
        add_lora(nn.Linear(4, 4), r=1)


def test_add_lora_takes_its_options_by_keyword_only(two_layer):
    with pytest.raises(TypeError):
        add_lora(two_layer, 1, 2.0)


def test_target_that_is_not_linear_is_refused(two_layer):
    with pytest.raises(TypeError, match="target 'encoder.1' is a ReLU, not an nn.Linear"):
        add_lora(two_layer, r=1, target_modules=["encoder.1"])


def test_target_modules_of_other_types_are_refused(two_layer):
    with pytest.raises(
        TypeError, match="target_modules must be None, a regular expression, or a non-empty list"
    ):
        add_lora(two_layer, r=1, target_modules=[1, 2])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("second", METHODS)
def test_adding_lora_twice_to_a_layer_is_refused(method, second, two_layer):
    add_lora(two_layer, r=1, method=method)
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        add_lora(two_layer, r=1, method=second, target_modules=["head"])
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        add_lora(two_layer, r=1, method=second)


def test_rank_too_large_for_a_layer_is_refused_before_changing_anything():
    model = DigitsNet()
    with pytest.raises(ValueError, match=r"min\(in_features, out_features\) = 10, got 64"):
        add_lora(model, r=64)


def test_unknown_method_is_refused(two_layer):
    with pytest.raises(ValueError, match="method must be one of"):
        add_lora(two_layer, r=1, method="adapter")


def test_dropout_with_parametrize_is_refused(two_layer):
    with pytest.raises(ValueError, match="use method='wrapper' for lora_dropout > 0"):
        add_lora(two_layer, r=1, method="parametrize", lora_dropout=0.1)


def test_unknown_bias_mode_is_refused(two_layer):
    add_lora(two_layer, r=1)
    with pytest.raises(ValueError, match="bias must be one of"):
        mark_only_lora_as_trainable(two_layer, bias="some")


@pytest.mark.parametrize(
    "verb",
    [
        lambda m: mark_only_lora_as_trainable(m),
        lambda m: set_lora_enabled(m, False),
        lambda m: merge_lora(m),
        lambda m: lora_state_dict(m),
        lambda m: load_lora_state_dict(m, {}),
        lambda m: lora_disabled(m).__enter__(),
    ],
)
def test_verbs_on_a_model_without_lora_say_to_add_it_first(verb, two_layer):
    with pytest.raises(ValueError, match=r"no LoRA adapters; call add_lora"):
        verb(two_layer)


def test_disabling_a_merged_adapter_is_refused():
    model = adapted("wrapper")
    model.head.merge()
    with pytest.raises(RuntimeError, match="merged; unmerge it before disabling"):
        set_lora_enabled(model, False)
