"""Exercises for notebook 10, QLoRA from first principles: the bits per parameter of 4-bit storage with and
without double quantization, absmax quantization to int8, the 16 values of NF4 from normal quantiles, and
packing two 4-bit codes into a byte. Function checks compute the expected result first and give the student's function copies
of inputs drawn from the seeds and shapes below (a list a grader can extend). Wrong-answer messages say what
went wrong, never the expected value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from lora_teach.course.exercises import Incorrect, Question, as_number, call_student
from lora_teach.quant import NF4_OFFSET, nf4_code, pack_4bit

# (seed, shape) of the inputs each function check tries; an outlier goes into every other one
INT8_CASES = [(0, (7,)), (1, (4, 16)), (2, (3, 5, 8)), (3, (300,))]
NF4_OFFSETS = [NF4_OFFSET, 0.95, 0.99]
PACK_CASES = [(0, 2), (1, 16), (2, 96)]


def _int8_input(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if seed % 2:
        x.view(-1)[seed % x.numel()] = -25.0  # an outlier sets the absmax
    return x


def _tensor(name: str, value: Any, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Incorrect(f"`{name}` should return a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise Incorrect(f"`{name}` should return shape {tuple(shape)}, got {tuple(value.shape)}")
    return value.detach()


# q1 --------------------------------------------------------------------------------

PLAIN = 4 + 32 / 64
DOUBLE = 4 + 8 / 64 + 32 / (64 * 256)


def _check_q1(bits_plain: Any, bits_double: Any) -> str:
    plain = float(as_number("bits_plain", bits_plain))
    if math.isclose(plain, PLAIN - 4):
        raise Incorrect("`bits_plain` counts only the constants; add the 4 bits of the code itself")
    if math.isclose(plain, 4 + 32 / 256) or math.isclose(plain, 4 + 16 / 64):
        raise Incorrect("`bits_plain`: one float32 absmax (32 bits) for every block of 64 values")
    if not math.isclose(plain, PLAIN, rel_tol=1e-9):
        raise Incorrect(
            "`bits_plain` is not the bits per parameter of 4-bit codes plus a float32 absmax per 64"
        )
    double = float(as_number("bits_double", bits_double))
    if math.isclose(double, DOUBLE - 4):
        raise Incorrect("`bits_double` counts only the constants; add the 4 bits of the code itself")
    if math.isclose(double, 4 + 8 / 64):
        raise Incorrect(
            "`bits_double` forgets the second level: each block of 256 constants has its own float32 absmax"
        )
    if not math.isclose(double, DOUBLE, rel_tol=1e-9):
        raise Incorrect(
            "`bits_double` is not right: 4 bits of code, 8 bits of constant per 64 values, and a float32 per "
            "64 * 256 values"
        )
    return (
        f"the constants cost {PLAIN - 4:.3f} bits per parameter plain and {DOUBLE - 4:.3f} with double "
        "quantization: the paper's 0.5 and 0.127."
    )


q1 = Question(
    "nb10.q1",
    _check_q1,
    hints=[
        "Bits per parameter = 4 (the code) + the bits of the constants divided by how many values share them.",
        "bits_plain = 4 + 32 / 64; bits_double = 4 + 8 / 64 + 32 / (64 * 256)",
    ],
)

# q2 --------------------------------------------------------------------------------


def _check_q2(quantize_int8: Callable) -> str:
    for seed, shape in INT8_CASES:
        x = _int8_input(seed, shape)
        absmax = x.abs().max()
        expected = torch.round(x / absmax * 127)
        got = call_student(quantize_int8, x.clone(), name="quantize_int8")
        if not isinstance(got, tuple) or len(got) != 2:
            raise Incorrect("`quantize_int8` should return two things: (q, absmax)")
        q, scale = got
        q = _tensor("quantize_int8(x)[0]", q, shape)
        if q.dtype != torch.int8:
            raise Incorrect(
                f"`q` should be stored as torch.int8 (one byte each), got {q.dtype}; use .to(torch.int8)"
            )
        scale = as_number("absmax", scale)
        if math.isclose(scale, absmax.item() / 127, rel_tol=1e-6):
            raise Incorrect("return the absmax itself (the largest |x|), not absmax / 127")
        if not math.isclose(scale, absmax.item(), rel_tol=1e-6):
            raise Incorrect("the second result should be the absmax of x: the largest absolute value")
        q = q.to(torch.float32)
        if torch.equal(q, torch.round(x / absmax * 128).clamp(-128, 127)):
            raise Incorrect("scale by 127, not 128: absmax quantization maps the absmax onto 127")
        if q.abs().max() > 127:
            raise Incorrect("some codes lie outside -127..127; scale x / absmax by 127")
        if torch.equal(q, torch.trunc(x / absmax * 127)) and not torch.equal(q, expected):
            raise Incorrect("the codes are truncated towards zero; round to the nearest integer instead")
        if not torch.equal(q, expected):
            raise Incorrect(f"the codes of an input of shape {shape} are wrong: q = round(127 * x / absmax)")
    return "one byte per value and one float for the whole tensor: the outlier sets the step for everybody."


q2 = Question(
    "nb10.q2",
    _check_q2,
    hints=[
        "Scale x so that its largest absolute value lands on 127, round, and store as int8.",
        "absmax = x.abs().max(); q = torch.round(x / absmax * 127).to(torch.int8); return q, absmax",
    ],
)

# q3 --------------------------------------------------------------------------------


def _check_q3(normal_float_code: Callable) -> str:
    for offset in NF4_OFFSETS:
        expected = nf4_code(offset).double()
        got = call_student(normal_float_code, offset, name="normal_float_code")
        if not isinstance(got, torch.Tensor):
            got = torch.as_tensor(got)
        got = got.detach().reshape(-1).double()
        if got.numel() != 16:
            raise Incorrect(
                f"a 4-bit code has 16 values; `normal_float_code({offset})` returned {got.numel()}"
            )
        if not torch.isfinite(got).all():
            raise Incorrect("the code holds inf or NaN: a quantile of probability 0 or 1 is infinite")
        if not (got[1:] > got[:-1]).all():
            raise Incorrect("the 16 values should be distinct and sorted from smallest to largest")
        if not (got == 0).any():
            raise Incorrect("the code should hold an exact 0 (so zeros, and padding, stay exactly 0)")
        if got.max() != 1 and not math.isclose(got.max().item(), 1.0, abs_tol=1e-6):
            raise Incorrect("normalize the code so its largest value is 1 (divide by the largest quantile)")
        if (got > 0).sum() != 8:
            raise Incorrect(
                f"NF4 has 8 positive values and 7 negative ones; yours has {(got > 0).sum().item()} positive"
            )
        if not torch.allclose(got, expected, atol=2e-6):
            raise Incorrect(
                f"`normal_float_code({offset})` gives other values: quantiles at probabilities evenly spaced from "
                "offset down to 0.5 (9 points for the positive side, 8 for the negative, 0.5 itself dropped)"
            )
    return (
        "NF4 puts its 16 levels where a normal distribution puts its mass: dense near 0, sparse in the tails."
    )


q3 = Question(
    "nb10.q3",
    _check_q3,
    hints=[
        "torch.special.ndtri(p) is the normal quantile Q(p). Positive side: Q at torch.linspace(offset, 0.5, 9)[:-1].",
        "pos = ndtri(torch.linspace(offset, 0.5, 9)[:-1].double()); neg = -ndtri(torch.linspace(offset, 0.5, 8)[:-1]"
        ".double()); v = torch.cat([neg, torch.zeros(1), pos]).sort().values; return v / v.max()",
    ],
)

# q4 --------------------------------------------------------------------------------


def _check_q4(pack: Callable) -> str:
    for seed, n in PACK_CASES:
        codes = torch.randint(0, 16, (n,), generator=torch.Generator().manual_seed(seed))
        expected = pack_4bit(codes).reshape(-1)
        got = call_student(pack, codes.clone(), name="pack")
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`pack` should return a torch.Tensor, got {type(got).__name__}")
        if got.numel() != n // 2:
            raise Incorrect(f"{n} codes of 4 bits fill {n}/2 bytes; `pack` returned {got.numel()} values")
        if got.dtype != torch.uint8:
            raise Incorrect(f"`pack` should return bytes (torch.uint8), got {got.dtype}")
        got = got.reshape(-1)
        if torch.equal(got, ((codes[1::2] << 4) | codes[0::2]).to(torch.uint8)) and not torch.equal(
            got, expected
        ):
            raise Incorrect(
                "the first code of each pair goes into the high nibble (bits 4-7), as bitsandbytes does"
            )
        if not torch.equal(got, expected):
            raise Incorrect(
                "the bytes differ from bitsandbytes' packing: byte i = codes[2i] * 16 + codes[2i + 1]"
            )
    return "two codes per byte, the first in the high nibble: the layout bitsandbytes stores."


q4 = Question(
    "nb10.q4",
    _check_q4,
    hints=[
        "Shift the even-indexed codes left by 4 bits and combine them with the odd-indexed ones.",
        "return ((codes[0::2] << 4) | codes[1::2]).to(torch.uint8)",
    ],
)

__all__ = ["q1", "q2", "q3", "q4"]
