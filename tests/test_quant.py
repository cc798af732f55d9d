"""lora_teach.quant on its own: the error bound of blockwise absmax quantization (hypothesis), packing round
trips, the 4-bit layer and quantize_model, QLoRA through the usual verbs, and every bad input refused with a
message that says what to do."""

import copy
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from lora_teach import (
    add_lora,
    load_adapter,
    lora_state_dict,
    mark_only_lora_as_trainable,
    merge_lora,
    save_adapter,
    set_lora_enabled,
)
from lora_teach.gpt import GPTConfig, TinyGPT, load_corpus, train_steps
from lora_teach.quant import (
    BLOCKSIZES,
    QUANT_TYPES,
    Linear4bit,
    code_of,
    dequantize_4bit,
    int4_code,
    nearest_code,
    pack_4bit,
    quantize_4bit,
    quantize_blockwise_to_code,
    quantize_model,
    unpack_4bit,
)
from tests.conftest import TwoLayer


def largest_half_gap(code: torch.Tensor) -> float:
    ordered = code.double().sort().values
    return (ordered[1:] - ordered[:-1]).max().item() / 2


weights = st.builds(
    lambda seed, rows, blocks, scale, outlier: _weight(seed, rows, blocks, scale, outlier),
    st.integers(0, 2**16),
    st.integers(1, 6),
    st.integers(1, 4),
    st.floats(1e-4, 1e2),
    st.booleans(),
)


def _weight(seed, rows, blocks, scale, outlier):
    weight = torch.randn(rows, 128 * blocks, generator=torch.Generator().manual_seed(seed)) * scale
    if outlier:
        weight[0, seed % weight.shape[1]] *= 50
    return weight


@given(weights, st.sampled_from(QUANT_TYPES), st.sampled_from([32, 64, 128]))
def test_every_value_is_within_half_the_largest_code_gap_times_its_block_absmax(
    weight, quant_type, blocksize
):
    packed, state = quantize_4bit(weight, blocksize, quant_type)
    error = (dequantize_4bit(packed, state) - weight).abs().reshape(-1, blocksize)
    absmax = weight.abs().reshape(-1, blocksize).amax(dim=1)
    bound = largest_half_gap(state.code) * absmax * (1 + 1e-6)
    assert (error <= bound[:, None]).all()


@given(weights, st.sampled_from(QUANT_TYPES))
def test_with_double_quantization_the_bound_grows_by_the_error_of_the_constant(weight, quant_type):
    packed, state = quantize_4bit(weight, 64, quant_type, compress_statistics=True)
    error = (dequantize_4bit(packed, state) - weight).abs().reshape(-1, 64)
    absmax = weight.abs().reshape(-1, 64).amax(dim=1)
    stored = state.constants()
    bound = largest_half_gap(state.code) * absmax + (absmax - stored).abs()
    assert (error <= bound[:, None] * (1 + 1e-5) + 1e-12).all()


@given(weights, st.sampled_from([32, 64, 256]))
def test_int4_obeys_the_same_bound(weight, blocksize):
    if weight.numel() % blocksize:
        blocksize = 32
    indices, absmax = quantize_blockwise_to_code(weight, int4_code(), blocksize)
    back = int4_code()[indices].reshape(-1, blocksize) * absmax[:, None]
    error = (back - weight.reshape(-1, blocksize)).abs()
    assert (error <= largest_half_gap(int4_code()) * absmax[:, None] * (1 + 1e-6)).all()


@given(st.lists(st.integers(0, 15), min_size=1, max_size=200))
def test_packing_codes_round_trips_high_nibble_first(codes):
    codes = torch.tensor(codes)
    packed = pack_4bit(codes)
    assert packed.dtype == torch.uint8 and packed.shape == ((len(codes) + 1) // 2, 1)
    assert torch.equal(unpack_4bit(packed, len(codes)), codes)
    assert packed[0, 0].item() >> 4 == codes[0].item()


@given(st.binary(min_size=1, max_size=100))
def test_unpacking_bytes_round_trips(data):
    packed = torch.tensor(list(data), dtype=torch.uint8)[:, None]
    assert torch.equal(pack_4bit(unpack_4bit(packed)), packed)


@given(weights, st.sampled_from(QUANT_TYPES))
def test_requantizing_a_dequantized_weight_changes_no_value(weight, quant_type):
    back = dequantize_4bit(*quantize_4bit(weight, 64, quant_type))
    again = dequantize_4bit(*quantize_4bit(back, 64, quant_type))
    assert torch.equal(back, again)


def test_nearest_code_sends_a_midpoint_to_the_smaller_neighbour():
    code = code_of("nf4")
    middle = (code[3] + code[4]) / 2
    assert nearest_code(torch.stack([middle, code[3], code[4]]), code).tolist() == [3, 3, 4]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("blocksize", [0, 48, 100, 8192, 64.0, True])
def test_a_block_size_bitsandbytes_does_not_have_is_refused(blocksize):
    with pytest.raises(ValueError, match=r"blocksize must be .*one of \(32, 64"):
        quantize_4bit(torch.randn(128), blocksize)


def test_an_unknown_quant_type_is_refused():
    with pytest.raises(ValueError, match="quant_type must be 'nf4' .* or 'fp4' .*, got 'int4'"):
        quantize_4bit(torch.randn(64), quant_type="int4")


@pytest.mark.parametrize("shape", [(0,), (0, 64), (4, 0)])
def test_an_empty_weight_is_refused(shape):
    with pytest.raises(
        ValueError, match=r"weight must hold at least one value, got an empty tensor of shape"
    ):
        quantize_4bit(torch.empty(shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_in_a_weight_is_refused_not_packed(bad):
    weight = torch.randn(4, 64)
    weight[2, 5] = bad
    with pytest.raises(
        ValueError, match=r"weight holds NaN or inf \(first at index \(2, 5\)\).*fix the weight"
    ):
        quantize_4bit(weight)


def test_a_weight_of_another_dtype_is_refused():
    with pytest.raises(ValueError, match="weight must be float32, float16 or bfloat16, got torch.float64"):
        quantize_4bit(torch.randn(64, dtype=torch.float64))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        quantize_4bit([0.5] * 64)


def test_a_size_that_is_no_multiple_of_the_block_gets_a_shorter_last_block():
    weight = torch.randn(3, 7)
    packed, state = quantize_4bit(weight, 32)
    assert packed.shape == (11, 1) and state.absmax.shape == (1,)
    assert torch.equal(state.absmax, weight.abs().max()[None])
    packed, state = quantize_4bit(torch.randn(100), 32)
    assert state.absmax.shape == (4,)


def test_dequantize_refuses_bytes_that_do_not_fit_the_state():
    packed, state = quantize_4bit(torch.randn(8, 64))
    with pytest.raises(
        ValueError, match=r"packed must be uint8 with 256 bytes for a weight of shape \(8, 64\)"
    ):
        dequantize_4bit(packed[:-1], state)
    with pytest.raises(
        TypeError, match="quant_state must be the QuantState quantize_4bit returned, got dict"
    ):
        dequantize_4bit(packed, {"absmax": state.absmax})


# ---------------------------------------------------------------- the layer and the model


def tiny() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=107, context=32, n_layer=2, n_head=2, d_model=64)).eval()


def test_linear4bit_keeps_no_float_weight_and_computes_with_the_dequantized_one():
    torch.manual_seed(1)
    linear = nn.Linear(64, 32)
    layer = Linear4bit(linear)
    assert [n for n, _ in layer.named_parameters()] == ["bias"] and not layer.bias.requires_grad
    assert {n for n, _ in layer.named_buffers()} == {
        "weight_packed",
        "absmax",
        "quant_map",
        "nested_absmax",
        "nested_offset",
    }
    assert layer.weight_packed.dtype == torch.uint8 and layer.weight_packed.numel() == 64 * 32 // 2
    x = torch.randn(5, 64)
    expected = x @ dequantize_4bit(*quantize_4bit(linear.weight, 64, "nf4", True)).T + linear.bias
    assert torch.equal(layer(x), expected)
    assert layer.nbytes() < linear.weight.numel() * 4 / 6


def test_quantize_model_by_default_takes_the_blocks_linear_layers_not_the_head():
    model = tiny()
    names = quantize_model(model)
    assert len(names) == 2 * 6 and all(n.startswith("blocks.") for n in names)
    assert type(model.head) is nn.Linear
    assert quantize_model(tiny(), ["q_proj", "v_proj"]) == [
        "blocks.0.attn.q_proj",
        "blocks.0.attn.v_proj",
        "blocks.1.attn.q_proj",
        "blocks.1.attn.v_proj",
    ]


def test_quantize_model_refuses_a_match_of_nothing_and_changes_nothing():
    model = tiny()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(
        ValueError, match="target_modules entry 'query' matches no module; nn.Linear modules are"
    ):
        quantize_model(model, ["q_proj", "query"])
    assert not any(isinstance(m, Linear4bit) for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_quantize_model_refuses_nan_naming_the_layer_and_changes_nothing():
    model = tiny()
    with torch.no_grad():
        model.blocks[1].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.up_proj: weight holds NaN or inf"):
        quantize_model(model)
    assert not any(isinstance(m, Linear4bit) for m in model.modules())


def test_quantize_model_refuses_other_targets_twice_and_adapted_models():
    model = tiny()
    with pytest.raises(TypeError, match="target 'tok_emb' is a Embedding, not an nn.Linear"):
        quantize_model(model, ["tok_emb"])
    quantize_model(model, ["q_proj"])
    with pytest.raises(ValueError, match="'blocks.0.attn.q_proj' is already 4-bit; quantize each layer once"):
        quantize_model(model, ["q_proj"])
    adapted = tiny()
    add_lora(adapted, 2, target_modules=["q_proj"])
    with pytest.raises(
        ValueError, match="already has LoRA adapters .* quantize the base first, then add_lora"
    ):
        quantize_model(adapted)
    with pytest.raises(ValueError, match="blocksize must be one of"):
        quantize_model(tiny(), blocksize=100)
    with pytest.raises(ValueError, match="quant_type must be"):
        quantize_model(tiny(), quant_type="int8")


def test_a_shared_layer_stays_shared_when_quantized():
    model = TwoLayer()
    model.again = model.encoder[0]
    quantize_model(model, target_modules=["encoder.0"])
    assert isinstance(model.encoder[0], Linear4bit) and model.again is model.encoder[0]


# ---------------------------------------------------------------- QLoRA through the usual verbs

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]


def qlora(seed: int = 0) -> TinyGPT:
    model = tiny()
    quantize_model(model)
    torch.manual_seed(seed)
    add_lora(model, 4, target_modules=TARGETS)
    mark_only_lora_as_trainable(model)
    return model


def test_training_qlora_moves_the_adapter_and_never_the_packed_weights():
    model = qlora()
    before = {n: b.clone() for n, b in model.named_buffers()}
    adapter = copy.deepcopy(lora_state_dict(model))
    losses = train_steps(model, load_corpus("code", "train"), 3, 1e-2, batch_size=2)
    assert len(losses) == 3
    assert all(torch.equal(b, before[n]) for n, b in model.named_buffers())
    assert any(not torch.equal(v, adapter[k]) for k, v in lora_state_dict(model).items() if "lora_B" in k)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n
    }


def trained_qlora() -> TinyGPT:
    model = qlora()
    train_steps(model, load_corpus("code", "train"), 2, 1e-2, batch_size=2)
    return model


def test_a_qlora_adapter_saves_and_loads_into_a_quantized_and_into_the_float_base(tmp_path):
    model = trained_qlora()
    save_adapter(model, tmp_path / "adapter")
    ids = load_corpus("code", "val")[:32][None]
    into_quantized = tiny()
    quantize_model(into_quantized)
    load_adapter(into_quantized, tmp_path / "adapter")
    into_float = tiny()
    load_adapter(into_float, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(into_quantized(ids), model(ids))
        float_logits = into_float(ids)
        merged = merge_lora(copy.deepcopy(model), dequantize=True)
        # the float base differs from the 4-bit one by the quantization error, and from nothing else
        assert not torch.equal(float_logits, model(ids))
        for name, module in merged.named_modules():
            if isinstance(module, nn.Linear) and name.rpartition(".")[2] in TARGETS:
                float_layer = into_float.get_submodule(name)
                delta = float_layer.delta_weight
                assert torch.allclose(
                    module.weight - delta, Linear4bit(float_layer.base_layer).weight, atol=1e-6
                )


def test_merging_into_a_4bit_base_is_refused_naming_the_choices_and_changes_nothing():
    model = trained_qlora()
    ids = load_corpus("code", "val")[:32][None]
    with torch.no_grad():
        before = model(ids)
    with pytest.raises(
        ValueError,
        match=r"'blocks\.0\.attn\.q_proj': the adapter sits on a 4-bit base layer.*"
        r"merge_lora\(model, dequantize=True\).*nothing was merged",
    ):
        merge_lora(model)
    layer = model.blocks[0].attn.q_proj
    with pytest.raises(RuntimeError, match="4-bit base layer, and merging into it would requantize"):
        layer.merge()
    assert not layer.merged and isinstance(layer.base_layer, Linear4bit)
    with torch.no_grad():
        assert torch.equal(model(ids), before)


def test_merging_with_dequantize_gives_float_layers_and_the_qlora_models_outputs():
    model = trained_qlora()
    ids = load_corpus("code", "val")[:32][None]
    with torch.no_grad():
        expected = model(ids)
        merged = merge_lora(copy.deepcopy(model), dequantize=True)
        assert not any(isinstance(m, Linear4bit) for m in merged.modules())
        assert all(
            type(merged.get_submodule(n)) is nn.Linear
            for n, m in model.named_modules()
            if hasattr(m, "lora_A")
        )
        torch.testing.assert_close(merged(ids), expected, rtol=0, atol=1e-4)
        set_lora_enabled(model, False)
        off = merge_lora(copy.deepcopy(model), dequantize=True)  # a disabled adapter adds nothing
        assert torch.equal(off(ids), model(ids))


def test_lora_on_a_4bit_layer_refuses_parametrize_and_pissa():
    for options in ({"method": "parametrize"}, {"init_lora_weights": "pissa"}):
        model = tiny()
        quantize_model(model)
        with pytest.raises(
            ValueError,
            match="is a 4-bit layer, whose weight cannot change: add LoRA to it with "
            "method='wrapper' and an init other than 'pissa'",
        ):
            add_lora(model, 2, target_modules=["q_proj"], **options)
        assert not any(hasattr(m, "lora_A") for m in model.modules())


def test_dora_trains_on_a_4bit_base():
    model = tiny()
    quantize_model(model)
    add_lora(model, 2, target_modules=["q_proj"], use_dora=True)
    mark_only_lora_as_trainable(model)
    train_steps(model, load_corpus("code", "train"), 2, 1e-2, batch_size=2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_quant_module_does_not_import_bitsandbytes():
    code = "import sys, lora_teach.quant, lora_teach; assert 'bitsandbytes' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_block_size_of_bitsandbytes_is_accepted():
    weight = torch.randn(4096)
    for blocksize in BLOCKSIZES:
        packed, state = quantize_4bit(weight, blocksize)
        assert state.absmax.numel() == 4096 // blocksize
