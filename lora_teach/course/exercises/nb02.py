"""Exercises for notebook 02, LoRA from the math."""

from __future__ import annotations

import torch

from lora_teach.course.exercises import (
    Incorrect,
    Question,
    call_student,
    expect_close,
    expect_equal,
    miss,
    returned_number,
)

# q1: the shapes of lora_A, lora_B and delta W for nn.Linear(784, 256) at r = 4


def _as_shape(name: str, value) -> tuple:
    """A shape given as a tuple, list or torch.Size of whole numbers (python or numpy ints) as a tuple."""
    if isinstance(value, (tuple, list, torch.Size)):
        items = list(value)
        if all(hasattr(v, "__index__") and not isinstance(v, bool) for v in items):
            return tuple(int(v.__index__()) for v in items)
    raise Incorrect(f"`{name}` should be a tuple of whole numbers such as (3, 5), got {value!r}")


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
        expected = _reference_forward(x, W0, lora_A, lora_B, scaling)
        got = call_student(lora_forward, x, W0, lora_A, lora_B, scaling, name="lora_forward")
        if isinstance(got, torch.Tensor) and got.is_floating_point():
            got = got.detach().to(torch.float64)  # a float32 answer is compared, not refused
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
)

# q3: unmerging an adapter: recover W0 from a merged weight


def _reference_unmerge(W, lora_A, lora_B, scaling):
    return W - scaling * lora_B @ lora_A


def _check_q3(unmerge) -> str:
    generator = torch.Generator().manual_seed(3)
    for d_out, d_in, r, scaling in [(5, 7, 2, 0.5), (6, 3, 1, 2.0), (4, 4, 3, 0.25)]:
        W0 = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
        lora_A = torch.randn(r, d_in, generator=generator, dtype=torch.float64)
        lora_B = torch.randn(d_out, r, generator=generator, dtype=torch.float64)
        W = W0 + scaling * lora_B @ lora_A
        W_given = W.clone()  # its own copy, passed as is, so that a change to it can be named
        got = call_student(
            unmerge, W_given, lora_A.clone(), lora_B.clone(), scaling, name="unmerge", copies=False
        )
        if not torch.equal(W_given, W):
            raise Incorrect(
                "`unmerge` changed the merged weight it was given; return a new tensor "
                "(W - ..., not W -= ...) so the caller's W stays as it was"
            )
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`unmerge` should return a tensor, got {type(got).__name__}")
        if got.shape != W0.shape:
            raise Incorrect(
                f"`unmerge` returned shape {tuple(got.shape)} for a weight of shape {tuple(W0.shape)}; "
                "the update lora_B @ lora_A has the weight's shape (out, in)"
            )
        got = got.detach().to(torch.float64)
        if torch.allclose(got, W0):
            continue
        if torch.allclose(got, W + scaling * lora_B @ lora_A):
            raise Incorrect("`unmerge` adds the update a second time; unmerging subtracts it")
        if torch.allclose(got, W - lora_B @ lora_A):
            raise Incorrect(
                "`unmerge` subtracts lora_B @ lora_A without `scaling`; merging added scaling * B A"
            )
        if torch.allclose(got, W - lora_B @ lora_A / scaling):
            raise Incorrect("`unmerge` divides by `scaling`; merging multiplied B A by it")
        raise Incorrect(
            f"`unmerge` does not give back W0 for a {d_out} x {d_in} weight at r = {r}; see .hint()"
        )
    return "W0 comes back (up to rounding), so the layer is ready for another task's adapter."


q3 = Question(
    "q3 unmerge an adapter",
    _check_q3,
    hints=[
        "Merging computed W = W0 + scaling * (lora_B @ lora_A). Solve that for W0.",
        "return W - scaling * lora_B @ lora_A",
    ],
)

# q4: the size of an adapter checkpoint for a transformer


def _reference_bytes(num_layers, d_model, r, matrices_per_layer, bytes_per_param):
    return num_layers * matrices_per_layer * 2 * d_model * r * bytes_per_param


# Typical slips, each a formula a wrong answer matches on every case, and what to say about it. The cases
# below are chosen so that no two of these formulas agree on all of them.
_Q4_SLIPS = [
    (lambda L, d, r, n, b: L * n * 2 * d * r, "counts parameters; multiply by bytes_per_param to get bytes"),
    (
        lambda L, d, r, n, b: L * n * d * r * b,
        "counts one factor per matrix; each adapted d_model x d_model matrix has two, "
        "A (r x d_model) and B (d_model x r)",
    ),
    (
        lambda L, d, r, n, b: L * n * 2 * d * r * 2,
        "assumes 2 bytes per parameter; use the `bytes_per_param` argument",
    ),
    (
        lambda L, d, r, n, b: L * n * d * d * b,
        "counts the full d_model x d_model matrices; a LoRA checkpoint holds only A and B",
    ),
    (lambda L, d, r, n, b: n * 2 * d * r * b, "counts one layer; multiply by num_layers"),
    (
        lambda L, d, r, n, b: L * 2 * d * r * b,
        "counts one adapted matrix per layer; multiply by matrices_per_layer",
    ),
]


def _check_q4(checkpoint_bytes) -> str:
    cases = [(12, 768, 8, 4, 4), (96, 12288, 4, 2, 2), (36, 1280, 4, 3, 1), (2, 10, 1, 1, 2)]
    answers = []
    for case in cases:
        got = call_student(checkpoint_bytes, *case, name="checkpoint_bytes")
        answers.append(float(returned_number("checkpoint_bytes", got)))
    if all(a == _reference_bytes(*case) for a, case in zip(answers, cases)):
        gpt3 = _reference_bytes(96, 12288, 4, 2, 2)
        return f"GPT-3 175B at r = 4 on Wq and Wv: {gpt3:,} bytes = {gpt3 / 1e6:.1f} MB."
    for slip, message in _Q4_SLIPS:
        if all(a == slip(*case) for a, case in zip(answers, cases)):
            raise Incorrect(f"`checkpoint_bytes` {message}")
    for a, case in zip(answers, cases):
        expected = _reference_bytes(*case)
        if a != expected:
            direction = miss(a, expected)
            raise Incorrect(
                f"`checkpoint_bytes{case}` is {direction}; count A and B of one matrix first (.hint())"
            )
    raise AssertionError("unreachable")  # pragma: no cover


q4 = Question(
    "q4 checkpoint bytes",
    _check_q4,
    hints=[
        "One adapted d_model x d_model matrix has r * (d_model + d_model) LoRA parameters. "
        "Multiply by the matrices per layer and the layers.",
        "return num_layers * matrices_per_layer * 2 * d_model * r * bytes_per_param",
    ],
)

__all__ = ["q1", "q2", "q3", "q4"]
