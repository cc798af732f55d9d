"""lora_teach.quant against the real bitsandbytes on CPU (no mocks): the same codes, the same packed bytes,
the same constants and the same dequantized bits, for NF4 and FP4, several block sizes, with and without
double quantization, on random weights and on TinyGPT's; and the same 4-bit layer."""

import copy
import warnings

import pytest
import torch

from lora_teach.gpt import ALL_LINEAR, pretrained_tiny_gpt
from lora_teach.quant import (
    DTYPES,
    FP4_CODE,
    NF4_CODE,
    Linear4bit,
    dequantize_4bit,
    dynamic_code,
    fp4_code,
    nf4_code,
    quantize_4bit,
    quantize_model,
)

bnb = pytest.importorskip(
    "bitsandbytes", reason="the bitsandbytes cross-checks need `pip install -e .[test]`"
)
warnings.filterwarnings("ignore", module="bitsandbytes")
import bitsandbytes.functional as BF  # noqa: E402


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (so -0.0 and 0.0 differ, and NaN equals itself)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def assert_like_bitsandbytes(weight, blocksize, quant_type, compress_statistics):
    theirs, their_state = BF.quantize_4bit(
        weight, blocksize=blocksize, quant_type=quant_type, compress_statistics=compress_statistics
    )
    ours, our_state = quantize_4bit(weight, blocksize, quant_type, compress_statistics)
    assert same_bits(ours, theirs)
    assert same_bits(our_state.absmax, their_state.absmax)
    assert same_bits(our_state.code, their_state.code)
    assert our_state.nested == their_state.nested
    if compress_statistics:
        assert same_bits(our_state.offset, their_state.offset)
        assert same_bits(our_state.state2.absmax, their_state.state2.absmax)
        assert same_bits(our_state.state2.code, their_state.state2.code)
        assert our_state.state2.blocksize == their_state.state2.blocksize == 256
    # bitsandbytes' CPU kernel returns a 1-D weight as (1, n); every other shape comes back as it went in.
    # Values, not bytes: its C kernel turns FP4's pattern 8 into -0.0, its PyTorch fallback (odd shapes) into 0.0
    theirs_back = BF.dequantize_4bit(theirs, their_state).reshape(weight.shape)
    ours_back = dequantize_4bit(ours, our_state)
    reference = bitsandbytes_reference_dequantize(theirs, their_state).reshape(weight.shape)
    assert ours_back.dtype == theirs_back.dtype and torch.equal(ours_back, reference)
    # On CPUs with AVX-512, bitsandbytes 0.50's C kernel scales every block that crosses a row boundary by
    # the wrong absmax (measured here: blocks of 128 on rows of 96 or 64). Where its kernel and its own
    # reference agree, ours equals both (the old test compared with the kernel alone, on a CPU without it).


def bitsandbytes_reference_dequantize(packed, state):
    """bitsandbytes' own PyTorch dequantization (its "default" backend, eager), used where no C kernel is."""
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

    absmax = state.absmax
    if state.nested:
        absmax = BF.dequantize_blockwise(state.absmax, state.state2) + state.offset
    compute = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)  # skip torch.compile
    flat = packed.view(torch.uint8).reshape(-1)
    return compute(flat, absmax.float(), state.code, state.blocksize, state.shape, state.dtype)


def test_the_codes_are_bitsandbytes():
    assert same_bits(nf4_code(), BF.get_4bit_type("nf4", device="cpu"))
    assert same_bits(fp4_code(), BF.get_4bit_type("fp4", device="cpu"))
    assert same_bits(NF4_CODE, nf4_code()) and same_bits(FP4_CODE, fp4_code())
    assert same_bits(dynamic_code(), BF.create_dynamic_map(signed=True))


def test_nf4_equals_create_normal_map_where_scipy_is_installed():
    pytest.importorskip(
        "scipy", reason="bitsandbytes' create_normal_map needs scipy (the [test] extra installs it)"
    )
    values = BF.create_normal_map()  # 256 values: the 15 non-zero ones and zeros as padding
    assert same_bits(nf4_code(), torch.cat([values[values < 0], values.new_zeros(1), values[values > 0]]))


@pytest.mark.parametrize("compress_statistics", [False, True])
@pytest.mark.parametrize("blocksize", [64, 128, 256])
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_random_weights_pack_and_dequantize_as_bitsandbytes(quant_type, blocksize, compress_statistics):
    generator = torch.Generator().manual_seed(blocksize)
    for shape, scale in [((256, 128), 0.02), ((64, 384), 3.0), ((1024, 64), 1e-4)]:
        weight = torch.randn(shape, generator=generator) * scale
        weight[0, :7] = 0  # a run of zeros
        weight[1, 3] = 40 * scale  # an outlier in one block
        assert_like_bitsandbytes(weight, blocksize, quant_type, compress_statistics)


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_precision_weights_as_bitsandbytes(dtype):
    weight = torch.randn(96, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
    for quant_type in ("nf4", "fp4"):
        assert_like_bitsandbytes(weight, 64, quant_type, True)


@pytest.mark.parametrize("shape", [(3, 7), (1000,), (4096 * 2 + 5,), (65, 33)])
def test_sizes_that_are_no_multiple_of_the_block_as_bitsandbytes(shape):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for quant_type in ("nf4", "fp4"):
        for blocksize, nested in [(32, False), (64, True), (4096, True)]:
            assert_like_bitsandbytes(weight, blocksize, quant_type, nested)


def test_an_all_zero_block_as_bitsandbytes():
    weight = torch.zeros(4, 64)
    weight[2:] = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    for quant_type in ("nf4", "fp4"):
        assert_like_bitsandbytes(weight, 64, quant_type, False)
        assert_like_bitsandbytes(weight, 64, quant_type, True)


@pytest.fixture(scope="module")
def tiny_gpt():
    return pretrained_tiny_gpt()


@pytest.mark.parametrize("compress_statistics", [False, True])
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_tiny_gpt_weights_as_bitsandbytes(tiny_gpt, quant_type, compress_statistics):
    block = tiny_gpt.blocks[0]
    for layer in (block.attn.q_proj, block.attn.o_proj, block.mlp.up_proj, block.mlp.down_proj):
        for blocksize in (64, 128, 256):
            assert_like_bitsandbytes(layer.weight.detach(), blocksize, quant_type, compress_statistics)


def bnb_tiny_gpt(model, quant_type="nf4", compress_statistics=True):
    """``model`` with bitsandbytes' own Linear4bit in place of every block linear layer (quantized on CPU)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if name.rpartition(".")[2] in ALL_LINEAR:
            layer = bnb.nn.Linear4bit(
                module.in_features,
                module.out_features,
                bias=module.bias is not None,
                compute_dtype=torch.float32,
                compress_statistics=compress_statistics,
                quant_type=quant_type,
            )
            layer.load_state_dict(module.state_dict())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer.to("cpu"))
    return model


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_quantize_model_stores_and_computes_what_bitsandbytes_linear4bit_does(tiny_gpt, quant_type):
    ours = copy.deepcopy(tiny_gpt)
    quantize_model(ours, quant_type=quant_type)
    theirs = bnb_tiny_gpt(tiny_gpt, quant_type)
    for name, module in ours.named_modules():
        if isinstance(module, Linear4bit):
            assert same_bits(module.weight_packed, theirs.get_submodule(name).weight.data)
    ids = torch.randint(0, tiny_gpt.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():  # bitsandbytes may take another CPU kernel (avx512-bf16): close, not bitwise
        torch.testing.assert_close(ours(ids), theirs(ids))
