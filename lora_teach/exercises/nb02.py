"""Exercises for notebook 02, LoRA from the math."""

from __future__ import annotations

import torch

from lora_teach.exercises import (
    Incorrect,
    Question,
    _describe,
    as_number,
    call_student,
    expect_close,
    expect_equal,
)

# q1: the shapes of lora_A, lora_B and delta W for nn.Linear(784, 256) at r = 4


def _as_shape(name: str, value) -> tuple:
    """A shape given as a tuple, list or torch.Size of whole numbers, as a tuple of ints."""
    if isinstance(value, (tuple, list, torch.Size)):
        try:
            shape = tuple(as_number(name, v) for v in value)
        except Incorrect:
            shape = None
        if shape is not None and all(isinstance(v, int) for v in shape):
            return shape
    raise Incorrect(f"`{name}` should be a tuple of ints such as (3, 5), got {_describe(value)}")


def _check_q1(lora_A_shape, lora_B_shape, delta_W_shape) -> str:
    lora_A_shape = _as_shape("lora_A_shape", lora_A_shape)
    lora_B_shape = _as_shape("lora_B_shape", lora_B_shape)
    delta_W_shape = _as_shape("delta_W_shape", delta_W_shape)
    if delta_W_shape == (784, 256):
        raise Incorrect(
            "`delta_W_shape` must match nn.Linear's weight, which PyTorch stores as (out_features, in_features)"
        )
    expect_equal("delta_W_shape", delta_W_shape, (256, 784), context="(the shape of layer.weight)")
    if lora_A_shape == (784, 4):
        raise Incorrect("`lora_A_shape` is transposed: lora_A is (r, in_features), so that lora_A @ x works")
    expect_equal("lora_A_shape", lora_A_shape, (4, 784))
    if lora_B_shape == (4, 256):
        raise Incorrect("`lora_B_shape` is transposed: lora_B is (out_features, r)")
    expect_equal("lora_B_shape", lora_B_shape, (256, 4))
    return "(256, 4) @ (4, 784) -> (256, 784), the shape of the weight it is added to."


q1 = Question(
    "q1 shapes",
    _check_q1,
    hints=[
        "nn.Linear(784, 256).weight has shape (out_features, in_features). delta W must have the same shape.",
        "delta W = lora_B @ lora_A with lora_B (out, r) and lora_A (r, in).",
    ],
    solution="lora_A_shape = (4, 784)\nlora_B_shape = (256, 4)\ndelta_W_shape = (256, 784)",
)

# q2: the LoRA forward without forming delta W


def _reference_forward(x, W0, lora_A, lora_B, scaling):
    return x @ W0.T + scaling * (x @ lora_A.T) @ lora_B.T


def _check_q2(lora_forward) -> str:
    generator = torch.Generator().manual_seed(2)
    for batch, d_in, d_out, r, scaling in [(3, 7, 5, 2, 0.5), (1, 4, 6, 1, 2.0), (5, 8, 8, 4, 0.25)]:
        x = torch.randn(batch, d_in, generator=generator, dtype=torch.float64)
        W0 = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
        lora_A = torch.randn(r, d_in, generator=generator, dtype=torch.float64)
        lora_B = torch.randn(d_out, r, generator=generator, dtype=torch.float64)
        got = call_student(lora_forward, x, W0, lora_A, lora_B, scaling, name="lora_forward")
        expected = _reference_forward(x, W0, lora_A, lora_B, scaling)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and scaling != 1.0:
            unscaled = x @ W0.T + (x @ lora_A.T) @ lora_B.T
            if torch.allclose(got, unscaled) and not torch.allclose(got, expected):
                raise Incorrect("`lora_forward` forgets to multiply the low-rank path by `scaling`")
            if torch.allclose(got, x @ W0.T) and not torch.allclose(got, expected):
                raise Incorrect("`lora_forward` returns only W0 x; add the low-rank path scaling * B A x")
        expect_close(
            "lora_forward(x, W0, lora_A, lora_B, scaling)", got, expected, context=f"for x {batch}x{d_in}"
        )
    return "h = W0 x + scaling * B (A x), with an r-wide bottleneck in the middle."


q2 = Question(
    "q2 LoRA forward",
    _check_q2,
    hints=[
        "x is (batch, in). nn.Linear computes x @ W0.T. The LoRA path goes through A first (to r numbers), then B.",
        "return x @ W0.T + scaling * (x @ lora_A.T) @ lora_B.T",
    ],
    solution=(
        "def lora_forward(x, W0, lora_A, lora_B, scaling):\n"
        "    return x @ W0.T + scaling * (x @ lora_A.T) @ lora_B.T"
    ),
)

# q3: counting the LoRA parameters of one layer


def _check_q3(lora_parameter_count) -> str:
    for in_features, out_features, r in [(784, 256, 2), (256, 128, 4), (12288, 12288, 4), (10, 3, 1)]:
        got = call_student(lora_parameter_count, in_features, out_features, r, name="lora_parameter_count")
        got = as_number("lora_parameter_count", got, context=f"({in_features}, {out_features}, {r})")
        if got == in_features * out_features:
            raise Incorrect("`lora_parameter_count` counts the full weight; count lora_A and lora_B instead")
        if got == 2 * in_features * r and in_features != out_features:
            raise Incorrect(
                "`lora_parameter_count` assumes a square layer; lora_B has out_features * r entries"
            )
        expect_equal(
            "lora_parameter_count",
            got,
            r * (in_features + out_features),
            context=f"({in_features}, {out_features}, {r})",
        )
    return "r * (in + out): lora_A holds r * in numbers and lora_B holds out * r."


q3 = Question(
    "q3 LoRA parameter count",
    _check_q3,
    hints=[
        "lora_A is (r, in_features) and lora_B is (out_features, r). How many numbers does each hold?",
        "return r * in_features + out_features * r",
    ],
    solution="def lora_parameter_count(in_features, out_features, r):\n    return r * (in_features + out_features)",
)

# q4: the size of an adapter checkpoint for a transformer


def _reference_bytes(num_layers, d_model, r, matrices_per_layer, bytes_per_param):
    return num_layers * matrices_per_layer * 2 * d_model * r * bytes_per_param


def _check_q4(checkpoint_bytes) -> str:
    cases = [(12, 768, 8, 4, 4), (96, 12288, 4, 2, 2), (36, 1280, 4, 2, 2), (2, 10, 1, 1, 1)]
    for case in cases:
        got = call_student(checkpoint_bytes, *case, name="checkpoint_bytes")
        got = as_number("checkpoint_bytes", got, context=f"for {case}")
        expected = _reference_bytes(*case)
        if got == expected // case[4] and case[4] != 1:
            raise Incorrect("`checkpoint_bytes` counts parameters; multiply by bytes_per_param to get bytes")
        if got == expected // 2:
            raise Incorrect(
                "`checkpoint_bytes` is half the answer: each adapted d_model x d_model matrix has two factors, "
                "A (r x d_model) and B (d_model x r)"
            )
        expect_equal("checkpoint_bytes", got, expected, context=f"for {case}")
    gpt3 = _reference_bytes(96, 12288, 4, 2, 2)
    return f"GPT-3 175B at r = 4 on Wq and Wv: {gpt3:,} bytes = {gpt3 / 1e6:.1f} MB."


q4 = Question(
    "q4 checkpoint bytes",
    _check_q4,
    hints=[
        "One adapted d_model x d_model matrix has r * (d_model + d_model) LoRA parameters. "
        "Multiply by the matrices per layer and the layers.",
        "return num_layers * matrices_per_layer * 2 * d_model * r * bytes_per_param",
    ],
    solution=(
        "def checkpoint_bytes(num_layers, d_model, r, matrices_per_layer, bytes_per_param):\n"
        "    return num_layers * matrices_per_layer * 2 * d_model * r * bytes_per_param"
    ),
)

__all__ = ["q1", "q2", "q3", "q4"]
