"""Exercises for notebook 05, LoRA as a wrapper layer."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from lora_teach.course.exercises import (
    Incorrect,
    Question,
    as_number,
    call_student,
    expect_close,
    expect_equal,
)


def _example(seed: int = 5) -> tuple[torch.Tensor, nn.Linear, torch.Tensor, torch.Tensor, float]:
    """x (3, 7), a Linear 7 -> 5, lora_A (2, 7), lora_B (5, 2), scaling 0.5."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's init must not move the student's RNG
        base_layer = nn.Linear(7, 5)
    with torch.no_grad():
        base_layer.weight.copy_(torch.randn(5, 7, generator=generator))
        base_layer.bias.copy_(torch.randn(5, generator=generator))
    x = torch.randn(3, 7, generator=generator)
    lora_A = torch.randn(2, 7, generator=generator)
    lora_B = torch.randn(5, 2, generator=generator)
    return x, base_layer, lora_A, lora_B, 0.5


# q1 --------------------------------------------------------------------------------


def _float64(value: object) -> object:
    """A floating tensor as float64 (float32 and float64 answers are compared alike); anything else as is."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().to(torch.float64)
    return value


def _check_q1(lora_linear_forward: Callable) -> str:
    x, base_layer, lora_A, lora_B, scaling = _example()
    with torch.no_grad():
        base = base_layer(x).double()
        side = (x.double() @ lora_A.double().T) @ lora_B.double().T
        expected = base + scaling * side
        got = call_student(
            lora_linear_forward, x, base_layer, lora_A, lora_B, scaling, name="lora_linear_forward"
        )
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`lora_linear_forward` should return a tensor, got {type(got).__name__}")
        got = _float64(got)
        if got.shape == expected.shape:
            if torch.allclose(got, base + side, atol=1e-5):
                raise Incorrect("`lora_linear_forward` forgets the scaling on the LoRA path")
            if torch.allclose(got, scaling * side, atol=1e-5):
                raise Incorrect("`lora_linear_forward` drops the frozen layer: add base_layer(x)")
            if torch.allclose(got, base, atol=1e-5):
                raise Incorrect("`lora_linear_forward` returns only base_layer(x); add the LoRA path")
        expect_close("lora_linear_forward", got, expected, context="for x (3, 7), a Linear 7 -> 5 and r=2")
    return "the wrapper never forms the (out, in) update; it multiplies x by A, then by B."


q1 = Question(
    "nb05.q1",
    _check_q1,
    hints=[
        "x is (batch, in). lora_A is (r, in), so x @ lora_A.T is (batch, r). What takes (batch, r) to (batch, out)?",
        "base_layer(x) + scaling * (x @ lora_A.T @ lora_B.T).",
    ],
)

# q2 --------------------------------------------------------------------------------


def _check_q2(bias_parameters: int) -> str:
    bias_parameters = as_number("bias_parameters", bias_parameters)
    if bias_parameters == 3_518:
        raise Incorrect("`bias_parameters` is the whole trainable count; subtract the LoRA factors (3,124)")
    if bias_parameters == 3_124:
        raise Incorrect(
            "`bias_parameters` is the LoRA count; which other parameters does the tutorial leave trainable?"
        )
    expect_equal("bias_parameters", bias_parameters, 394, context="(the biases of DigitsNet's three layers)")
    return "256 + 128 + 10 = 394 biases, the whole gap between 3,124 and 3,518."


q2 = Question(
    "nb05.q2",
    _check_q2,
    hints=[
        "The tutorial froze only `layer.weight`. What else does each nn.Linear hold?",
        "Each nn.Linear(in, out) has a bias of out_features entries; add them for 256, 128 and 10.",
    ],
)

# q3 --------------------------------------------------------------------------------


def _check_q3(merged_weight: Callable) -> str:
    x, base_layer, lora_A, lora_B, scaling = _example(6)
    with torch.no_grad():
        weight, A, B = (t.detach().double() for t in (base_layer.weight, lora_A, lora_B))
        expected = weight + scaling * (B @ A)
        wrapped = base_layer(x).double() + scaling * (x.double() @ A.T @ B.T)
        # the student's own copies, passed as they are, so that a change to the layer can be named
        layer_given, A_given, B_given = copy.deepcopy(base_layer), lora_A.clone(), lora_B.clone()
        got = call_student(
            merged_weight, layer_given, A_given, B_given, scaling, name="merged_weight", copies=False
        )
        if not torch.equal(layer_given.weight, base_layer.weight):
            raise Incorrect("`merged_weight` changed base_layer.weight in place; return a new tensor instead")
        if not isinstance(got, torch.Tensor):
            raise Incorrect(f"`merged_weight` should return a tensor, got {type(got).__name__}")
        got = _float64(got)
        if tuple(got.shape) == (7, 5):
            raise Incorrect("`merged_weight` has shape (in, out); nn.Linear keeps its weight as (out, in)")
        if got.shape == expected.shape and torch.allclose(got, weight + B @ A, atol=1e-5):
            raise Incorrect("`merged_weight` forgets the scaling")
        expect_close("merged_weight", got, expected, context="for a Linear 7 -> 5 and r=2")
        merged = x.double() @ got.T + base_layer.bias.double()
        expect_close("the layer with `merged_weight`", merged, wrapped, rtol=1e-4, atol=1e-5)
    return "one matmul with the merged weight computes what the wrapper computes with three."


q3 = Question(
    "nb05.q3",
    _check_q3,
    hints=[
        "x W^T + s (x A^T) B^T = x (W + s B A)^T: the merged weight is inside the brackets.",
        "Return base_layer.weight + scaling * (lora_B @ lora_A), without changing base_layer.",
    ],
)

__all__ = ["q1", "q2", "q3"]
