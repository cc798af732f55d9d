"""Notebook 00's worked example and warm-ups: reference answers pass in any number type, typical mistakes
are named without giving the answer away, blanks are not attempted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_teach.course.exercises import ____, nb00
from tests.conftest import check_output as check


def ink_fraction(image):
    return (image > 0).float().mean().item()


@pytest.mark.parametrize("answer", [10, 10.0, np.int64(10), torch.tensor(10)])
def test_q0_worked_example_accepts_ten_in_any_number_type(capsys, answer):
    ok, out = check(nb00.q0, answer, capsys=capsys)
    assert ok and out.startswith("Correct (q0")


def test_q0_off_by_one_is_named(capsys):
    ok, out = check(nb00.q0, 9, capsys=capsys)
    assert not ok and "`number_of_classes` is one short" in out


@pytest.mark.parametrize("answer", [28 * 28, 784.0, np.int64(784), torch.tensor(784)])
def test_q1_reference_answer_passes_in_any_number_type(capsys, answer):
    ok, out = check(nb00.q1, answer, capsys=capsys)
    assert ok and out.startswith("Correct (q1")


@pytest.mark.parametrize(
    "wrong, words", [(56, "adds the two sides"), (28, "counts one row"), (60_000 * 784, "whole training set")]
)
def test_q1_typical_mistakes_are_named(capsys, wrong, words):
    ok, out = check(nb00.q1, wrong, capsys=capsys)
    assert not ok and out.startswith("Incorrect (q1") and "`pixels_per_image`" in out and words in out


@pytest.mark.parametrize("wrong", [56, 700, 1000, 783])
def test_q1_wrong_numbers_never_show_the_answer(capsys, wrong):
    ok, out = check(nb00.q1, wrong, capsys=capsys)
    assert not ok and "784" not in out


def test_q1_a_non_number_is_named(capsys):
    ok, out = check(nb00.q1, "784 pixels", capsys=capsys)
    assert not ok and "`pixels_per_image` should be a number" in out


def test_q1_placeholder_is_not_attempted(capsys):
    ok, out = check(nb00.q1, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet (q1")


def test_q2_reference_answer_passes(capsys):
    ok, out = check(nb00.q2, ink_fraction, capsys=capsys)
    assert ok and out.startswith("Correct (q2")


def test_q2_a_tensor_result_is_accepted(capsys):
    ok, _ = check(nb00.q2, lambda image: (image > 0).double().mean(), capsys=capsys)
    assert ok


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda image: int((image > 0).sum()), "how many pixels carry ink"),
        (lambda image: image.double().mean().item() / 255, "mean brightness"),
        (lambda image: (image > 0).mean(), "raised RuntimeError"),
        (lambda image: (image > 128).float().mean().item(), "is wrong for a"),
        (42, "should be a function"),
    ],
)
def test_q2_typical_mistakes_are_named(capsys, wrong, words):
    ok, out = check(nb00.q2, wrong, capsys=capsys)
    assert not ok and out.startswith("Incorrect (q2") and "ink_fraction" in out and words in out


def test_q2_function_still_raising_is_not_attempted(capsys):
    def ink_fraction(image):
        raise NotImplementedError("your code here")

    ok, out = check(nb00.q2, ink_fraction, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet (q2")


def test_hints_and_solutions_print(capsys):
    for question in (nb00.q0, nb00.q1, nb00.q2):
        question.hint()
        question.hint(2)
        question.solution()
    out = capsys.readouterr().out
    assert out.count("Hint 1 of 2") == 3 and out.count("Hint 2 of 2") == 3 and out.count("Solution") == 3
    assert nb00.q2.answer.startswith("def ink_fraction")
