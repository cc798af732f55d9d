"""Exercises for notebook 03, the DigitsNet baseline: label counts, a parameter count,
the weakest digits, and collapsing the tutorial's three Linear layers into one."""

from __future__ import annotations

import math

import numpy as np
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
from lora_teach.models import DigitsNet

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _as_int_list(name: str, value: object) -> list[int]:
    """Counts given as a list, tuple, tensor or array of numbers of any type (``bincount(...).float()``
    and a numpy float array alike), each a whole number, as a list of ints."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 1:
            raise Incorrect(f"`{name}` should be one row of counts, got shape {tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, (str, bytes, dict)):
        raise Incorrect(f"`{name}` should be a list or tensor of counts, got {type(value).__name__}")
    try:
        items = list(value)
    except TypeError as error:
        raise Incorrect(
            f"`{name}` should be a list or tensor of 10 counts, got {type(value).__name__}"
        ) from error
    numbers = [as_number(f"each entry of `{name}`", v) for v in items]
    if any(not math.isfinite(v) or not float(v).is_integer() for v in numbers):
        raise Incorrect(f"`{name}` should hold whole counts, not fractions or nan")
    return [int(v) for v in numbers]


# q1: images per digit in the training set ------------------------------------------------


def _check_counts(train_counts: object) -> str:
    counts = _as_int_list("train_counts", train_counts)
    if len(counts) != 10:
        raise Incorrect(f"`train_counts` should have one entry per digit 0-9 (10 entries), got {len(counts)}")
    if counts == TEST_COUNTS:
        raise Incorrect("`train_counts` holds the test set's counts; count the training labels `y_train`")
    if sum(counts) != 60_000:
        raise Incorrect(
            f"`train_counts` should add up to the 60,000 training images, but it adds up to {sum(counts):,}"
        )
    expect_equal("train_counts", counts, TRAIN_COUNTS)
    return f"the smallest class, 5, has {counts[5]:,} images and the largest, 1, has {counts[1]:,}"


q1 = Question(
    "q1 images per digit",
    _check_counts,
    hints=[
        "Each entry of `y_train` is a digit 0-9; count how often each value occurs.",
        "`torch.bincount(y_train, minlength=10)` counts every value from 0 to 9 in one call.",
    ],
)


# q2: DigitsNet's parameter count by hand ---------------------------------------------------


def _as_whole_number(name: str, value: object) -> int:
    """A python, numpy or 0-d tensor number with no fractional part, as an int."""
    number = as_number(name, value)
    if not float(number).is_integer():
        raise Incorrect(f"`{name}` should be a whole number (a count of parameters), got {value!r}")
    return int(number)


def _check_parameter_count(num_parameters: object) -> str:
    count = _as_whole_number("num_parameters", num_parameters)
    weights = [784 * 256, 256 * 128, 128 * 10]
    biases = [256, 128, 10]
    if count == sum(weights):
        raise Incorrect(
            "`num_parameters` counts the weights only; each Linear layer also has one bias per output"
        )
    if count == sum(weights) + sum(biases) - 10:
        raise Incorrect("`num_parameters` is missing the last layer's bias (one per output digit)")
    if count == sum(weights) + 784 + 256 + 128:
        raise Incorrect(
            "`num_parameters` gives each layer one bias per *input*; a bias belongs to each output"
        )
    if count == 784 * 256 * 128 * 10:
        raise Incorrect("`num_parameters` multiplies the layer sizes; add up the three layers instead")
    if count != sum(weights) + sum(biases):
        direction = "too high" if count > sum(weights) + sum(biases) else "too low"
        raise Incorrect(f"`num_parameters` is {direction}; count weight and bias of each layer (.hint())")
    share = 100 * weights[0] / (sum(weights) + sum(biases))
    return f"{count:,}; {share:.0f} % of them sit in the first layer's weight, which sees every pixel."


q2 = Question(
    "q2 parameters of DigitsNet",
    _check_parameter_count,
    hints=[
        "A Linear layer from n inputs to m outputs has an (m, n) weight matrix and m biases.",
        "Add up 784 * 256 + 256, then 256 * 128 + 128, then 128 * 10 + 10.",
    ],
)


# q3: the weakest digits, by error rate -------------------------------------------------------

_WRONG = [30, 12, 150, 120, 70, 60, 98, 95, 180, 150]  # raw counts and rates pick different digits
_TOTALS = [980, 1135, 1032, 1010, 982, 400, 958, 1028, 974, 1009]


def _reference_weakest(wrong_counts: list[int], digit_totals: list[int], k: int) -> list[int]:
    rates = torch.tensor(wrong_counts, dtype=torch.float64) / torch.tensor(digit_totals, dtype=torch.float64)
    return sorted(torch.argsort(rates, descending=True, stable=True)[:k].tolist())


def _check_weakest(weakest_digits: object) -> None:
    by_count = sorted(torch.argsort(torch.tensor(_WRONG), descending=True, stable=True)[:5].tolist())
    expected = _reference_weakest(_WRONG, _TOTALS, 5)
    got = call_student(weakest_digits, _WRONG, _TOTALS, 5, name="weakest_digits")
    got = _as_int_list("weakest_digits(...)", got)
    if len(got) != 5:
        raise Incorrect(f"`weakest_digits(wrong_counts, digit_totals, 5)` should return 5 digits, got {got}")
    if sorted(got) == by_count and by_count != expected:
        raise Incorrect(
            "`weakest_digits` ranks by raw wrong counts; divide by `digit_totals` first, "
            "since some digits have more test images than others"
        )
    if sorted(got) != expected:
        raise Incorrect(
            f"`weakest_digits(wrong_counts, digit_totals, 5)` gave {got}, which are not the five digits with "
            "the highest error rate (wrong / total); see .hint()"
        )
    if got != expected:
        raise Incorrect("`weakest_digits` found the right digits but should return them sorted")
    for k in (1, 3):
        expected_k = _reference_weakest(_WRONG, _TOTALS, k)
        expect_equal(
            "weakest_digits",
            _as_int_list("weakest_digits(...)", call_student(weakest_digits, _WRONG, _TOTALS, k)),
            expected_k,
            context=f"with k={k}",
        )


q3 = Question(
    "q3 the weakest digits",
    _check_weakest,
    hints=[
        "A digit with more test images can have more mistakes and still be better; compare error rates.",
        "rates = torch.tensor(wrong_counts) / torch.tensor(digit_totals); take the k largest with "
        "torch.argsort(rates, descending=True)[:k], then sort the digits.",
    ],
)


# q4: three Linear layers without a nonlinearity are one Linear layer ---------------------------


def collapse_reference(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The one linear map of the tutorial's DigitsNet: W (10, 784), b (10,) with
    linear3(linear2(linear1(x))) == x @ W.T + b."""
    w1, w2, w3 = model.linear1.weight, model.linear2.weight, model.linear3.weight
    b1, b2, b3 = model.linear1.bias, model.linear2.bias, model.linear3.bias
    return w3 @ w2 @ w1, w3 @ (w2 @ b1 + b2) + b3


def _check_collapse(collapse: object) -> str:
    with torch.random.fork_rng(devices=[]):  # a check must not move the student's random state
        torch.manual_seed(3)
        model = DigitsNet("original")
    with torch.no_grad():
        expected_W, expected_b = collapse_reference(model)
        last_bias = model.linear3.bias.double()
        got = call_student(collapse, model, name="collapse")  # a copy: the model above stays as it is
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Incorrect(f"`collapse(model)` should return a pair (W, b), got {type(got).__name__}")
        W, b = got
        expect_close("W", W, expected_W, rtol=1e-4, atol=1e-5, context="(the product of the three weights)")
        if torch.as_tensor(b).shape == (10,) and torch.allclose(torch.as_tensor(b).double(), last_bias):
            raise Incorrect(
                "`b` is only the last layer's bias; the first two biases also pass through the later weights"
            )
        expect_close(
            "b", b, expected_b, rtol=1e-4, atol=1e-5, context="(the biases carried through the layers)"
        )
    return "the tutorial's network is one (10, 784) linear map followed by a ReLU"


q4 = Question(
    "q4 collapse the tutorial's network",
    _check_collapse,
    hints=[
        "Write linear3(linear2(linear1(x))) out: W3 (W2 (W1 x + b1) + b2) + b3, and multiply the brackets out.",
        "W = W3 @ W2 @ W1 has shape (10, 784); b = W3 @ (W2 @ b1 + b2) + b3.",
    ],
)

__all__ = ["collapse_reference", "q1", "q2", "q3", "q4"]
