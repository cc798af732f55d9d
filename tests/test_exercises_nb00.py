"""Notebook 00's demo exercises: the reference answers pass, typical mistakes are named, blanks are not attempted."""

from __future__ import annotations

import pytest

from lora_teach.exercises import ____, nb00


def test_q1_reference_answer_passes(capsys):
    assert nb00.q1.check(100 * 5 + 5 * 100)
    assert capsys.readouterr().out.startswith("Correct (q1")


@pytest.mark.parametrize("wrong, words", [(10_000, "full 100 x 100"), (25, "5 x 5"), (500, "too low")])
def test_q1_typical_mistakes_name_the_variable(capsys, wrong, words):
    assert not nb00.q1.check(wrong)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect (q1") and "`lora_numbers`" in out and words in out


def test_q1_placeholder_is_not_attempted(capsys):
    assert not nb00.q1.check(____)
    assert capsys.readouterr().out.startswith("Not attempted yet (q1")


def test_q2_reference_answer_passes(capsys):
    def count_lora_numbers(d, k, r):
        return d * r + r * k

    assert nb00.q2.check(count_lora_numbers)
    assert capsys.readouterr().out.startswith("Correct (q2")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda d, k, r: d * k, "size of the full d x k matrix"),
        (lambda d, k, r: d * r, "`count_lora_numbers(100, 100, 5)`"),
        (lambda d, k: d + k, "raised TypeError"),
        (42, "should be a function"),
    ],
)
def test_q2_typical_mistakes_name_the_function(capsys, wrong, words):
    assert not nb00.q2.check(wrong)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect (q2") and "count_lora_numbers" in out and words in out


def test_q2_function_still_raising_is_not_attempted(capsys):
    def count_lora_numbers(d, k, r):
        raise NotImplementedError("your code here")

    assert not nb00.q2.check(count_lora_numbers)
    assert capsys.readouterr().out.startswith("Not attempted yet (q2")


def test_hints_and_solution_print(capsys):
    nb00.q1.hint()
    nb00.q1.hint(2)
    nb00.q2.solution()
    out = capsys.readouterr().out
    assert "Hint 1 of 2" in out and "Hint 2 of 2" in out and "def count_lora_numbers" in out
    assert nb00.q2.answer.startswith("def count_lora_numbers")
