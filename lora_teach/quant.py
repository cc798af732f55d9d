"""4-bit weights as bitsandbytes stores them (NF4 and FP4, blockwise absmax, double quantization), a 4-bit
linear layer and ``quantize_model``: the frozen base of QLoRA, in plain PyTorch.

``quantize_4bit`` / ``dequantize_4bit`` take bitsandbytes' arguments and give its bytes and values (on CPU);
the course's tests compare them with the real library. Nothing here imports bitsandbytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

QUANT_TYPES = ("nf4", "fp4")
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # bitsandbytes' sizes for 4-bit blocks
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
NESTED_BLOCKSIZE = 256  # double quantization: the absmax constants, 8 bits each, in blocks of 256
NF4_OFFSET = 0.9677083  # the outermost probability bitsandbytes takes a normal quantile at
OUTPUT_HEADS = ("head", "lm_head")  # kept in float by quantize_model's default, as transformers does
MERGE_REFUSAL = (
    "the adapter sits on a 4-bit base layer, and merging into it would requantize W + delta W, rounding the "
    "update with the weights (what lies below the gaps between levels is lost, and a new rounding error is "
    "added); keep the adapter unmerged (the model as trained), or call merge_lora(model, dequantize=True) for "
    "float nn.Linear layers (dequantized W plus the update), and quantize_model that result only if you accept "
    "the rounding"
)


# ---------------------------------------------------------------- the codes


def normal_quantile(p: torch.Tensor) -> torch.Tensor:
    """Q(p), the inverse CDF of N(0, 1), in float64: the value below which a fraction p of the mass lies."""
    return torch.special.ndtri(p.to(torch.float64))


def nf4_code(offset: float = NF4_OFFSET) -> torch.Tensor:
    """NormalFloat4 (16,), sorted, from -1 to 1 with an exact 0: quantiles of N(0, 1), normalized.

    8 positive values at probabilities evenly spaced from ``offset`` down to (not including) 0.5, 7 negative
    ones mirrored from 7 such probabilities, and 0; divided by the largest. The probabilities are float32,
    the quantiles float64 rounded to float32 (as bitsandbytes' ``create_normal_map``).
    """
    positive = normal_quantile(torch.linspace(offset, 0.5, 9)[:-1]).float()
    negative = -normal_quantile(torch.linspace(offset, 0.5, 8)[:-1]).float()
    values = torch.cat([negative, torch.zeros(1), positive]).sort().values
    return values / values.max()


def fp4_code() -> torch.Tensor:
    """bitsandbytes' FP4 (16,), indexed by the 4-bit pattern: 1 sign bit, 2 exponent bits, 1 mantissa bit.

    Exponent field e = 1, 2, 3 gives 2^(4 - e) (it counts down), times 1 + mantissa / 2; e = 0 gives the
    subnormals 0 and 1/16. Divided by the largest magnitude, 12. The sign bit is 8; pattern 8 is a second 0.
    """
    values = []
    for bits in range(16):
        sign, exponent, mantissa = bits >> 3, (bits >> 1) & 3, bits & 1
        magnitude = 2.0 ** (4 - exponent) * (1 + mantissa / 2) if exponent else mantissa / 16
        values.append(-magnitude if sign and magnitude else magnitude)  # pattern 8 is 0.0, not -0.0
    code = torch.tensor(values, dtype=torch.float64) / 12
    return code.float()


def int4_code() -> torch.Tensor:
    """Symmetric integer code (15,): -7/7, ..., 0, ..., 7/7 (the paper's Int4; bitsandbytes packs no Int4)."""
    return torch.arange(-7, 8, dtype=torch.float32) / 7


def dynamic_code() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic code (256,), sorted: for k = 0..6, 2^k values 10^(k - 6) times
    the midpoints of 2^k + 1 points evenly spaced in [0.1, 1], and their negatives; plus 0 and 1.
    Double quantization stores the absmax constants in it."""
    values = [torch.zeros(1), torch.ones(1)]
    for k in range(7):
        bounds = torch.linspace(0.1, 1, 2**k + 1)
        middles = (bounds[:-1] + bounds[1:]) / 2
        values += [10.0 ** (k - 6) * middles, -(10.0 ** (k - 6)) * middles]
    return torch.cat(values).sort().values


NF4_CODE = nf4_code()
FP4_CODE = fp4_code()
DYNAMIC_CODE = dynamic_code()


def code_of(quant_type: str) -> torch.Tensor:
    """The 16 values of ``quant_type`` ("nf4" or "fp4"), indexed by the 4-bit pattern (a copy)."""
    _check_quant_type(quant_type)
    return (NF4_CODE if quant_type == "nf4" else FP4_CODE).clone()


# ---------------------------------------------------------------- nearest code value, per block


def _absmax_scaled(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) float32 -> values scaled into [-1, 1] by their block's absmax (n,), and the absmax (blocks,).

    Whole blocks are multiplied by 1 / absmax; a last, shorter block has its own absmax and is divided by it
    (bitsandbytes' arithmetic, to the last bit). A block of zeros has absmax 0 and scales to 0.
    """
    n = flat.numel()
    full = n - n % blocksize
    blocks = flat[:full].view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1, 1).reshape(-1)
    if full < n:
        last = flat[full:].abs().amax().clamp(min=1e-38)
        absmax = torch.cat([absmax, last[None]])  # clamped, as bitsandbytes stores it
        scaled = torch.cat([scaled, (flat[full:] / last).clamp(-1, 1)])
    return scaled, absmax


def nearest_code(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index (int64, same shape) of the value of ``code`` nearest to each of ``scaled``; a value exactly
    halfway goes to the smaller neighbour. ``code`` need not be sorted (FP4 is in bit order): where two
    entries are equal (FP4's 0 and -0), the one with the smaller index comes first in value order."""
    order = torch.sort(code, stable=True).indices
    ordered = code[order]
    midpoints = (ordered[:-1] + ordered[1:]) / 2
    return order[torch.bucketize(scaled, midpoints)]


def quantize_blockwise_to_code(
    weight: torch.Tensor, code: torch.Tensor, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax quantization with any code: weight (any shape) -> (indices (n,) int64, absmax (blocks,)).

    Each block of ``blocksize`` values (flattened) is divided by its largest |value| and each value
    replaced by the index of its nearest code value. Used for 4-bit codes and for the notebook's Int4.
    """
    scaled, absmax = _absmax_scaled(
        _checked_weight(weight).reshape(-1).float(), _checked_blocksize(blocksize, any_size=True)
    )
    return nearest_code(scaled, code.float()), absmax


def dequantize_blockwise_from_code(
    indices: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, shape: Iterable[int]
) -> torch.Tensor:
    """code[indices] times the block's absmax, in float32, reshaped to ``shape``."""
    shape = tuple(shape)
    n = math.prod(shape)
    values = code.float()[indices.reshape(-1)[:n].long()]
    scale = absmax.float().repeat_interleave(blocksize)[:n]
    return (values * scale).reshape(shape)


# ---------------------------------------------------------------- 8-bit blockwise (double quantization)

LUT_SIZE = 65536


def _lut_indices(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' CPU kernel finds the nearest of 256 code values through a table over 65,536 evenly
    spaced points of [-1, 1]: each value goes to the code nearest to the grid point it rounds to. Equal to
    the nearest code value except within half a grid step (1.5e-5) of a midpoint between two codes."""
    grid = -1.0 + (2.0 * torch.arange(LUT_SIZE, dtype=torch.float32)) / (LUT_SIZE - 1)
    midpoints = 0.5 * (code[:-1] + code[1:])
    table = torch.searchsorted(midpoints, grid)  # how many midpoints lie below each grid point
    position = ((scaled.clamp(-1, 1) + 1.0) * 0.5 * (LUT_SIZE - 1) + 0.5).to(torch.int64)
    return table[position]


def quantize_blockwise_8bit(values: torch.Tensor, blocksize: int = NESTED_BLOCKSIZE):
    """(n,) float32 -> (codes (n,) uint8 in ``dynamic_code()``, absmax (blocks,) float32), as bitsandbytes'
    ``quantize_blockwise`` does on CPU. A block of zeros gets absmax 0 and codes 0."""
    flat = values.reshape(-1).float()
    n = flat.numel()
    blocks = -(-n // blocksize)
    padded = F.pad(flat, (0, blocks * blocksize - n)).view(blocks, blocksize)
    absmax = padded.abs().amax(dim=1)
    scaled = (padded * (1.0 / absmax)[:, None]).reshape(-1)[:n]
    codes = _lut_indices(scaled.nan_to_num(0.0), DYNAMIC_CODE).to(torch.uint8)
    zero_block = (absmax == 0).repeat_interleave(blocksize)[:n]
    return codes.masked_fill(zero_block, 0), absmax


def dequantize_blockwise_8bit(codes: torch.Tensor, absmax: torch.Tensor, blocksize: int = NESTED_BLOCKSIZE):
    """(n,) uint8, (blocks,) -> (n,) float32: dynamic_code()[codes] times the block's absmax."""
    return dequantize_blockwise_from_code(codes, absmax, DYNAMIC_CODE, blocksize, (codes.numel(),))


# ---------------------------------------------------------------- 4-bit storage, as bitsandbytes.functional


@dataclass(frozen=True)
class QuantState:
    """What ``dequantize_4bit`` needs besides the packed bytes (bitsandbytes' names).

    ``absmax``: one constant per block, float32 (blocks,), or with double quantization uint8 codes whose
    own constants are ``state2``, after subtracting ``offset``. ``code``: the 16 values. ``shape``/``dtype``:
    the weight's.
    """

    absmax: torch.Tensor
    shape: torch.Size
    code: torch.Tensor
    blocksize: int
    quant_type: str
    dtype: torch.dtype
    offset: torch.Tensor | None = None
    state2: QuantState | None = None

    @property
    def nested(self) -> bool:
        """True with double quantization (``compress_statistics=True``)."""
        return self.state2 is not None

    def constants(self) -> torch.Tensor:
        """The absmax of every block as float32 (blocks,), dequantized from 8 bits when nested."""
        if not self.nested:
            return self.absmax
        return dequantize_blockwise_8bit(self.absmax, self.state2.absmax, self.state2.blocksize) + self.offset

    def nbytes(self) -> int:
        """Bytes of the constants (absmax, and with double quantization their 8-bit codes, their own
        absmax and the offset); the 16-value code is shared by every layer and not counted."""
        total = self.absmax.numel() * self.absmax.element_size()
        if self.nested:
            total += self.state2.absmax.numel() * self.state2.absmax.element_size() + 4
        return total


def _check_quant_type(quant_type: str) -> None:
    if quant_type not in QUANT_TYPES:
        raise ValueError(
            f"quant_type must be 'nf4' (NormalFloat) or 'fp4' (4-bit float), got {quant_type!r}; "
            "Int4 is the notebook's baseline, quantized with quantize_blockwise_to_code(weight, int4_code())"
        )


def _checked_blocksize(blocksize: int, any_size: bool = False) -> int:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int):
        raise ValueError(f"blocksize must be an integer, one of {BLOCKSIZES}, got {blocksize!r}")
    if any_size and blocksize >= 1:
        return blocksize
    if blocksize not in BLOCKSIZES:
        raise ValueError(f"blocksize must be one of {BLOCKSIZES} (bitsandbytes' sizes), got {blocksize}")
    return blocksize


def _checked_weight(weight: torch.Tensor) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype not in DTYPES:
        raise ValueError(
            f"weight must be float32, float16 or bfloat16, got {weight.dtype}; convert it with .float()"
        )
    if weight.numel() == 0:
        raise ValueError(
            f"weight must hold at least one value, got an empty tensor of shape {tuple(weight.shape)}"
        )
    finite = torch.isfinite(weight)
    if not finite.all():
        where = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"weight holds NaN or inf (first at index {where}); 4 bits cannot store it and the whole block "
            "would be lost: fix the weight before quantizing"
        )
    return weight.detach()


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes (n,) with values 0..15 -> bytes (ceil(n / 2), 1) uint8, the first code of each pair in the
    high nibble. An odd count is padded with ``pad`` = 0 ... see ``quantize_4bit`` for what it pads with."""
    codes = codes.reshape(-1).to(torch.uint8)
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    return ((codes[0::2] << 4) | codes[1::2]).unsqueeze(1)


def unpack_4bit(packed: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Bytes (m, 1) or (m,) uint8 -> 4-bit codes (2m,) int64, high nibble first; the first ``n`` if given."""
    flat = packed.reshape(-1)
    codes = torch.stack([flat >> 4, flat & 15], dim=1).reshape(-1).long()
    return codes if n is None else codes[:n]


def quantize_4bit(
    weight: torch.Tensor, blocksize: int = 64, quant_type: str = "nf4", compress_statistics: bool = False
) -> tuple[torch.Tensor, QuantState]:
    """weight (any shape, float32/16, bf16) -> (packed (ceil(n / 2), 1) uint8, QuantState).

    bitsandbytes' ``quantize_4bit`` (whose default quant_type is "fp4"; here "nf4", what QLoRA uses): the
    flattened weight in blocks of ``blocksize``, each value scaled by its block's absmax and replaced by its
    nearest code value, two codes per byte. ``compress_statistics``: double quantization, the absmax
    constants minus their mean stored in 8 bits in blocks of 256.
    """
    _check_quant_type(quant_type)
    blocksize = _checked_blocksize(blocksize)
    weight = _checked_weight(weight)
    code = code_of(quant_type)
    scaled, absmax = _absmax_scaled(weight.reshape(-1).float(), blocksize)
    if scaled.numel() % 2:  # bitsandbytes pads an odd count with a 0, which takes the code of 0
        scaled = F.pad(scaled, (0, 1))
    packed = pack_4bit(nearest_code(scaled, code))
    state = QuantState(absmax, weight.shape, code, blocksize, quant_type, weight.dtype)
    if compress_statistics:
        offset = absmax.mean()
        codes, absmax2 = quantize_blockwise_8bit(absmax - offset)
        nested = QuantState(absmax2, codes.shape, DYNAMIC_CODE, NESTED_BLOCKSIZE, "dynamic", torch.float32)
        state = replace(state, absmax=codes, offset=offset, state2=nested)
    return packed, state


def dequantize_4bit(packed: torch.Tensor, quant_state: QuantState) -> torch.Tensor:
    """(packed, QuantState) from ``quantize_4bit`` -> the weight (shape, dtype): code value times absmax."""
    if not isinstance(quant_state, QuantState):
        raise TypeError(
            f"quant_state must be the QuantState quantize_4bit returned, got {type(quant_state).__name__}"
        )
    n = math.prod(quant_state.shape)
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.numel() != -(-n // 2):
        got = (
            f"{packed.dtype} with {packed.numel()} bytes"
            if isinstance(packed, torch.Tensor)
            else type(packed).__name__
        )
        raise ValueError(
            f"packed must be uint8 with {-(-n // 2)} bytes for a weight of shape {tuple(quant_state.shape)}, got {got}"
        )
    # one lookup per byte: a table of the 256 possible bytes' two code values (high nibble first)
    pairs = quant_state.code.float()[unpack_4bit(torch.arange(256, dtype=torch.uint8)).view(256, 2)]
    values = pairs[packed.reshape(-1).long()].reshape(-1)[:n]
    absmax, blocksize = quant_state.constants(), quant_state.blocksize
    if n % blocksize == 0:
        weight = (values.view(-1, blocksize) * absmax[:, None]).reshape(quant_state.shape)
    else:
        weight = (values * absmax.repeat_interleave(blocksize)[:n]).reshape(quant_state.shape)
    return weight.to(quant_state.dtype)


# ---------------------------------------------------------------- the 4-bit layer and the model


class _LinearOn4bit(torch.autograd.Function):
    """F.linear(x, W, bias) with W dequantized in the forward pass and again in the backward pass, so no float
    W is kept between the two (bitsandbytes does the same): memory for time."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bias: torch.Tensor | None, layer: Linear4bit) -> torch.Tensor:
        ctx.layer, ctx.has_bias = layer, bias is not None
        return F.linear(x, layer.weight.to(x.dtype), bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_x = grad @ ctx.layer.weight.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_bias = (
            grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias and ctx.needs_input_grad[1] else None
        )
        return grad_x, grad_bias, None


class Linear4bit(nn.Linear):
    """A frozen ``nn.Linear`` whose weight is stored in 4 bits: the packed bytes and the constants are buffers,
    and no float copy of the weight is kept.

    ``forward(x)``: x (..., in) -> x @ W.T + bias (..., out), with W dequantized to x's dtype at every call
    (and again in the backward pass: no float W is kept for it).
    ``weight`` is that dequantized W (out, in), computed when read and never stored. An ``nn.Linear``
    subclass, as bitsandbytes' is, so ``add_lora`` wraps it like any linear layer (QLoRA).
    """

    def __init__(
        self,
        linear: nn.Linear,
        blocksize: int = 64,
        quant_type: str = "nf4",
        compress_statistics: bool = True,
    ):
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate a float weight
        if not isinstance(linear, nn.Linear) or isinstance(linear, Linear4bit):
            raise TypeError(f"linear must be a float nn.Linear, got {type(linear).__name__}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        packed, state = quantize_4bit(linear.weight, blocksize, quant_type, compress_statistics)
        self.blocksize, self.quant_type, self.dtype = blocksize, quant_type, linear.weight.dtype
        self.register_buffer("weight_packed", packed)
        self.register_buffer("absmax", state.absmax)
        self.register_buffer("quant_map", state.code)
        if state.nested:
            self.register_buffer("nested_absmax", state.state2.absmax)
            self.register_buffer("nested_offset", state.offset)
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        )

    @property
    def compress_statistics(self) -> bool:
        """True when the absmax constants are themselves quantized (double quantization)."""
        return hasattr(self, "nested_absmax")

    @property
    def quant_state(self) -> QuantState:
        """The QuantState of the stored weight (views of the buffers)."""
        shape = torch.Size((self.out_features, self.in_features))
        state = QuantState(self.absmax, shape, self.quant_map, self.blocksize, self.quant_type, self.dtype)
        if self.compress_statistics:
            nested = QuantState(
                self.nested_absmax,
                self.absmax.shape,
                DYNAMIC_CODE,
                NESTED_BLOCKSIZE,
                "dynamic",
                torch.float32,
            )
            state = replace(state, offset=self.nested_offset, state2=nested)
        return state

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (out, in), in the original dtype; a new tensor at every read."""
        return dequantize_4bit(self.weight_packed, self.quant_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return _LinearOn4bit.apply(x, bias, self)

    def nbytes(self) -> int:
        """Bytes this layer stores: packed weight, constants and bias (the 16-value code not counted)."""
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return self.weight_packed.numel() + self.quant_state.nbytes() + bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"quant_type={self.quant_type}, blocksize={self.blocksize}, "
            f"compress_statistics={self.compress_statistics}"
        )


def default_quant_targets(model: nn.Module) -> list[str]:
    """Every float ``nn.Linear`` of ``model`` except an output head ("head" or "lm_head", kept in float as
    transformers keeps ``lm_head``): for TinyGPT, the six linear layers of each block."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and not isinstance(module, Linear4bit)
        and name.rpartition(".")[2] not in OUTPUT_HEADS
    ]


def quantize_model(
    model: nn.Module,
    target_modules: str | Iterable[str] | None = None,
    blocksize: int = 64,
    quant_type: str = "nf4",
    compress_statistics: bool = True,
) -> list[str]:
    """Replace the ``nn.Linear`` layers that ``target_modules`` selects by ``Linear4bit``, in place.

    ``target_modules`` as in PEFT and ``add_lora`` (a list of names or name endings, or a regular expression
    for the whole name); None: ``default_quant_targets``. QLoRA's defaults: NF4, blocks of 64, double
    quantization. All or nothing: every target is checked and quantized before the model changes. Returns
    the quantized names, in model order.
    """
    from lora_teach.adapters import _places, _select_targets, _set_module, lora_modules

    _check_quant_type(quant_type)
    _checked_blocksize(blocksize)
    if isinstance(model, nn.Linear):
        raise TypeError(
            "model is a bare nn.Linear, which quantize_model cannot replace in place; use Linear4bit(layer)"
        )
    adapted = [name for name, _ in lora_modules(model)]
    if adapted:
        raise ValueError(
            f"the model already has LoRA adapters ({adapted[0]!r}, ...); quantize the base first, then add_lora "
            "(QLoRA's order), or merge_lora(model) before quantizing"
        )
    names = [n for n, _ in model.named_modules() if n]
    linear_names = default_quant_targets(model)
    chosen = linear_names if target_modules is None else _select_targets(names, target_modules, linear_names)
    if not chosen:
        raise ValueError(
            "the model has no float nn.Linear layer to quantize (an output head is kept in float)"
        )
    modules, places = dict(model.named_modules()), _places(model)
    replacements = {}
    for name in [n for n in modules if n in set(chosen)]:  # in model order
        module = modules[name]
        if isinstance(module, Linear4bit):
            raise ValueError(f"{name!r} is already 4-bit; quantize each layer once")
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"target {name!r} is a {type(module).__name__}, not an nn.Linear; "
                f"nn.Linear modules are {linear_names}"
            )
        try:
            replacements[name] = Linear4bit(module, blocksize, quant_type, compress_statistics)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    for name, layer in replacements.items():
        for place in places[id(modules[name])]:  # a layer shared by several parents stays shared
            _set_module(model, place, layer)
    return list(replacements)
