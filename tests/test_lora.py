"""The two LoRA layers: shapes, init, scaling, merge/unmerge, and their equality."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from lora_teach import LinearWithLoRA, LoRAParametrization, lora_scaling, pissa_factors


@st.composite
def layer_and_rank(draw):
    d_in = draw(st.integers(1, 24))
    d_out = draw(st.integers(1, 24))
    r = draw(st.integers(1, min(d_in, d_out)))
    seed = draw(st.integers(0, 2**16))
    return d_in, d_out, r, seed


def randomize_factors(lora, seed):
    """Give lora_A and lora_B non-zero values, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lora.lora_A.copy_(torch.randn(lora.lora_A.shape, generator=g))
        lora.lora_B.copy_(torch.randn(lora.lora_B.shape, generator=g))


def test_factor_shapes_follow_loralib_convention():
    layer = LinearWithLoRA(nn.Linear(7, 3), r=2)
    assert layer.lora_A.shape == (2, 7)
    assert layer.lora_B.shape == (3, 2)
    assert layer.delta_weight.shape == layer.base_layer.weight.shape


@given(layer_and_rank(), st.sampled_from([True, "gaussian", "normal"]), st.booleans())
def test_fresh_adapter_leaves_output_unchanged(case, init, use_rslora):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    x = torch.randn(4, d_in)
    expected = base(x)
    wrapped = LinearWithLoRA(base, r, lora_alpha=3.0, init_lora_weights=init, use_rslora=use_rslora)
    assert torch.equal(wrapped(x), expected)
    param = nn.Linear(d_in, d_out)
    param.load_state_dict(base.state_dict())
    parametrize.register_parametrization(
        param, "weight", LoRAParametrization(d_in, d_out, r, 3.0, init_lora_weights=init)
    )
    assert torch.equal(param(x), expected)


@given(layer_and_rank())
def test_merge_then_forward_equals_unmerged_forward(case):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    layer = LinearWithLoRA(nn.Linear(d_in, d_out), r, lora_alpha=2.0)
    randomize_factors(layer, seed)
    x = torch.randn(5, d_in)
    unmerged = layer(x)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-5)


@given(layer_and_rank())
def test_merge_then_unmerge_restores_the_weight(case):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    layer = LinearWithLoRA(nn.Linear(d_in, d_out), r)
    randomize_factors(layer, seed)
    before = layer.base_layer.weight.detach().clone()
    layer.merge()
    assert not torch.allclose(layer.base_layer.weight, before) or layer.delta_weight.abs().max() < 1e-6
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.base_layer.weight, before, rtol=1e-5, atol=1e-5)


@given(layer_and_rank(), st.booleans())
def test_parametrize_and_wrapper_give_identical_outputs_and_gradients(case, use_rslora):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    wrapper = LinearWithLoRA(base, r, lora_alpha=4.0, use_rslora=use_rslora)
    randomize_factors(wrapper, seed)
    param_layer = nn.Linear(d_in, d_out)
    param_layer.load_state_dict(base.state_dict())
    lora = LoRAParametrization(d_in, d_out, r, 4.0, use_rslora=use_rslora)
    lora.load_state_dict({"lora_A": wrapper.lora_A.detach(), "lora_B": wrapper.lora_B.detach()})
    parametrize.register_parametrization(param_layer, "weight", lora)
    x = torch.randn(6, d_in)
    out_w, out_p = wrapper(x), param_layer(x)
    torch.testing.assert_close(out_w, out_p, rtol=1e-4, atol=1e-4)
    out_w.square().sum().backward()
    out_p.square().sum().backward()
    torch.testing.assert_close(wrapper.lora_A.grad, lora.lora_A.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(wrapper.lora_B.grad, lora.lora_B.grad, rtol=1e-3, atol=1e-3)


def test_forward_matches_the_formula_with_scaling():
    torch.manual_seed(0)
    layer = LinearWithLoRA(nn.Linear(6, 4), r=2, lora_alpha=3.0)
    randomize_factors(layer, 1)
    x = torch.randn(3, 6)
    W, b = layer.base_layer.weight, layer.base_layer.bias
    expected = x @ W.T + b + (3.0 / 2) * x @ (layer.lora_B @ layer.lora_A).T
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize(
    ("r", "alpha", "rs", "expected"), [(2, 1.0, False, 0.5), (8, 16.0, False, 2.0), (4, 2.0, True, 1.0)]
)
def test_scaling_is_alpha_over_r_or_alpha_over_sqrt_r(r, alpha, rs, expected):
    assert lora_scaling(r, alpha, rs) == pytest.approx(expected)
    assert LoRAParametrization(10, 10, r, alpha, use_rslora=rs).scaling == pytest.approx(expected)


def test_normal_init_draws_a_from_a_unit_normal_and_zeroes_b():
    torch.manual_seed(0)
    lora = LoRAParametrization(2000, 50, 8, init_lora_weights="normal")
    assert lora.lora_A.std().item() == pytest.approx(1.0, abs=0.02)
    assert torch.count_nonzero(lora.lora_B) == 0


def test_gaussian_init_is_peft_normal_with_std_one_over_r():
    torch.manual_seed(0)
    lora = LoRAParametrization(2000, 50, 8, init_lora_weights="gaussian")
    assert lora.lora_A.std().item() == pytest.approx(1 / 8, rel=0.02)
    assert torch.count_nonzero(lora.lora_B) == 0


def test_default_init_is_kaiming_uniform_like_peft():
    torch.manual_seed(0)
    default = LoRAParametrization(100, 50, 8)
    torch.manual_seed(0)
    explicit = LoRAParametrization(100, 50, 8, init_lora_weights=True)
    assert torch.equal(default.lora_A, explicit.lora_A)
    assert default.lora_alpha == 8.0


def test_kaiming_init_stays_within_the_kaiming_uniform_bound():
    lora = LoRAParametrization(100, 50, 8, init_lora_weights=True)
    bound = 1 / math.sqrt(100)  # kaiming_uniform with a=sqrt(5): gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
    assert lora.lora_A.abs().max().item() <= bound + 1e-6
    assert lora.lora_A.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert torch.count_nonzero(lora.lora_B) == 0


def test_disabled_parametrization_returns_the_weight_unchanged():
    lora = LoRAParametrization(4, 3, 1)
    randomize_factors(lora, 0)
    W = torch.randn(3, 4)
    lora.enabled = False
    assert torch.equal(lora(W), W)


def test_wrapper_never_forms_delta_w_in_forward(monkeypatch):
    layer = LinearWithLoRA(nn.Linear(4, 3), r=1)
    monkeypatch.setattr(type(layer), "delta_weight", property(lambda self: pytest.fail("formed delta W")))
    layer(torch.randn(2, 4))


def test_dropout_applies_only_to_the_lora_path():
    torch.manual_seed(0)
    layer = LinearWithLoRA(nn.Linear(5, 5), r=2, lora_dropout=0.5)
    randomize_factors(layer, 0)
    x = torch.randn(8, 5)
    layer.eval()
    deterministic = layer(x)
    layer.train()
    assert not torch.allclose(layer(x), deterministic)
    layer.lora_B.data.zero_()
    assert torch.equal(layer(x), layer.base_layer(x))


@pytest.mark.parametrize("r", [0, -1, 4, 2.0, True])
def test_rank_outside_the_layer_is_refused_with_the_limit(r):
    with pytest.raises(
        ValueError, match=r"r must be an integer between 1 and min\(in_features, out_features\) = 3"
    ):
        LinearWithLoRA(nn.Linear(3, 5), r=r)


@pytest.mark.parametrize("init", ["zeros", "kaiming", 1, False, None])
def test_unknown_init_is_refused(init):
    with pytest.raises(ValueError, match="init_lora_weights must be True"):
        LoRAParametrization(4, 4, 1, init_lora_weights=init)


def test_wrapping_something_other_than_linear_is_refused():
    with pytest.raises(TypeError, match="base_layer must be an nn.Linear, got Conv1d"):
        LinearWithLoRA(nn.Conv1d(2, 2, 1), r=1)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_dropout_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match="lora_dropout must be in"):
        LinearWithLoRA(nn.Linear(3, 3), r=1, lora_dropout=p)


def test_merging_twice_is_refused():
    layer = LinearWithLoRA(nn.Linear(3, 3), r=1)
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_unmerging_what_is_not_merged_is_refused():
    with pytest.raises(RuntimeError, match="not merged"):
        LinearWithLoRA(nn.Linear(3, 3), r=1).unmerge()


def test_merging_a_disabled_adapter_is_refused():
    layer = LinearWithLoRA(nn.Linear(3, 3), r=1)
    layer.enabled = False
    with pytest.raises(RuntimeError, match="disabled"):
        layer.merge()


# --- DoRA and PiSSA in the layers -------------------------------------------------------------


@given(layer_and_rank(), st.sampled_from(["wrapper", "parametrize"]))
def test_dora_starts_with_the_row_norms_of_the_weight_and_leaves_the_output(case, method):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    x = torch.randn(4, d_in)
    expected = base(x)
    norms = base.weight.detach().norm(dim=1)
    if method == "wrapper":
        layer = LinearWithLoRA(base, r, use_dora=True)
    else:
        lora = LoRAParametrization(d_in, d_out, r, use_dora=True)
        lora.init_from_base(base.weight)
        parametrize.register_parametrization(base, "weight", lora)
        layer = base
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    magnitude = layer.lora_magnitude_vector if method == "wrapper" else lora.lora_magnitude_vector
    torch.testing.assert_close(magnitude, norms)


@given(layer_and_rank())
def test_dora_weight_rows_have_the_magnitudes_as_lengths(case):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    lora = LoRAParametrization(d_in, d_out, r, use_dora=True)
    randomize_factors(lora, seed)
    with torch.no_grad():
        lora.lora_magnitude_vector.uniform_(0.5, 2.0)
    weight = lora(torch.randn(d_out, d_in))
    torch.testing.assert_close(weight.norm(dim=1), lora.lora_magnitude_vector, rtol=1e-4, atol=1e-5)


def test_dora_norm_gets_no_gradient():
    torch.manual_seed(0)
    lora = LoRAParametrization(5, 4, 2, use_dora=True)
    randomize_factors(lora, 0)
    W = torch.randn(4, 5)
    lora(W).sum().backward()
    grad_with_detached_norm = lora.lora_A.grad.clone()
    lora.zero_grad()
    V = W + lora.delta_weight
    (lora.lora_magnitude_vector[:, None] * V / V.norm(dim=1, keepdim=True)).sum().backward()
    assert not torch.allclose(lora.lora_A.grad, grad_with_detached_norm)  # the two differ...
    lora.zero_grad()
    (
        lora.lora_magnitude_vector[:, None]
        * V.detach().norm(dim=1, keepdim=True) ** -1
        * (W + lora.delta_weight)
    ).sum().backward()
    torch.testing.assert_close(lora.lora_A.grad, grad_with_detached_norm)  # ...ours is the detached one


@given(layer_and_rank(), st.sampled_from([0.5, 1.0, 4.0]), st.booleans())
def test_pissa_puts_the_top_r_singular_part_in_b_a_and_the_rest_in_the_weight(case, alpha, use_rslora):
    d_in, d_out, r, seed = case
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    W = base.weight.detach().clone()
    x = torch.randn(3, d_in)
    expected = base(x)
    layer = LinearWithLoRA(base, r, lora_alpha=alpha, init_lora_weights="pissa", use_rslora=use_rslora)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    best = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
    torch.testing.assert_close(layer.delta_weight, best, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.base_layer.weight + layer.delta_weight, W, rtol=1e-4, atol=1e-4)


def test_pissa_factors_share_the_singular_values_evenly():
    W = torch.diag(torch.tensor([9.0, 4.0, 1.0]))
    lora_A, lora_B, residual = pissa_factors(W, 2, scaling=1.0)
    torch.testing.assert_close(lora_A.norm(dim=1), torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(lora_B.norm(dim=0), torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(residual, torch.diag(torch.tensor([0.0, 0.0, 1.0])))
