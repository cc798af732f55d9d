"""Notebook 03's exercises: reference answers pass, typical mistakes fail with a message
that names the variable, and placeholders are "not attempted yet"."""

import numpy as np
import pytest
import torch

from lora_teach.course.exercises import ____, nb03


def _first_line(capsys) -> str:
    return capsys.readouterr().out.strip()


def test_q1_accepts_bincount_of_training_labels(capsys):
    y_train = torch.repeat_interleave(torch.arange(10), torch.tensor(nb03.TRAIN_COUNTS))
    assert nb03.q1.check(torch.bincount(y_train, minlength=10))
    assert _first_line(capsys).startswith("Correct")


def test_q1_rejects_test_counts_and_fractions(capsys):
    assert not nb03.q1.check(nb03.TEST_COUNTS)
    assert "`train_counts` holds the test set's counts" in _first_line(capsys)
    assert not nb03.q1.check(torch.tensor(nb03.TRAIN_COUNTS) / 60_000)
    assert "`train_counts`" in _first_line(capsys)
    assert not nb03.q1.check(nb03.TRAIN_COUNTS[:9])
    assert "`train_counts` should have one entry per digit" in _first_line(capsys)


def test_q1_placeholder_is_not_attempted(capsys):
    assert not nb03.q1.check(____)
    assert _first_line(capsys).startswith("Not attempted yet")


def test_q2_accepts_235146_and_rejects_weights_only(capsys):
    assert nb03.q2.check((784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10))
    assert _first_line(capsys).startswith("Correct")
    assert not nb03.q2.check(784 * 256 + 256 * 128 + 128 * 10)
    line = _first_line(capsys)
    assert "`num_parameters`" in line and "bias" in line
    assert not nb03.q2.check(____)
    assert _first_line(capsys).startswith("Not attempted yet")


@pytest.mark.parametrize("answer", [np.int64(235_146), 235_146.0, np.float64(235_146), torch.tensor(235_146)])
def test_q2_accepts_numpy_float_and_tensor_counts(capsys, answer):
    assert nb03.q2.check(answer)
    assert _first_line(capsys).startswith("Correct")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (784 * 256 + 256 * 128 + 128 * 10 + 256 + 128, "missing the last layer's bias"),
        (784 * 256 + 256 * 128 + 128 * 10 + 784 + 256 + 128, "one bias per *input*"),
        (235_146.5, "whole number"),
        ("235146", "should be a number"),
    ],
)
def test_q2_typical_mistakes_are_named(capsys, wrong, words):
    assert not nb03.q2.check(wrong)
    assert words in _first_line(capsys)


@pytest.mark.parametrize("wrong", [235_000, 300_000])
def test_q2_wrong_counts_never_show_the_answer(capsys, wrong):
    assert not nb03.q2.check(wrong)
    line = _first_line(capsys)
    assert "235,146" not in line and "235146" not in line and ("too high" in line or "too low" in line)


def _weakest_by_rate(wrong_counts, digit_totals, k=5):
    rates = torch.tensor(wrong_counts, dtype=torch.float64) / torch.tensor(digit_totals)
    return sorted(torch.argsort(rates, descending=True)[:k].tolist())


def _weakest_by_count(wrong_counts, digit_totals, k=5):
    return sorted(torch.argsort(torch.tensor(wrong_counts), descending=True)[:k].tolist())


def test_q3_accepts_error_rates_and_rejects_raw_counts(capsys):
    assert nb03.q3.check(_weakest_by_rate)
    assert _first_line(capsys).startswith("Correct")
    assert not nb03.q3.check(_weakest_by_count)
    assert "`weakest_digits` ranks by raw wrong counts" in _first_line(capsys)


def test_q3_unsorted_answer_and_unfinished_function(capsys):
    def unsorted(wrong_counts, digit_totals, k=5):
        rates = torch.tensor(wrong_counts, dtype=torch.float64) / torch.tensor(digit_totals)
        return torch.argsort(rates, descending=True)[:k].tolist()

    assert not nb03.q3.check(unsorted)
    assert "`weakest_digits`" in _first_line(capsys)

    def weakest_digits(wrong_counts, digit_totals, k=5):
        raise NotImplementedError

    assert not nb03.q3.check(weakest_digits)
    assert _first_line(capsys).startswith("Not attempted yet")


def test_q4_accepts_the_collapsed_map(capsys):
    assert nb03.q4.check(nb03.collapse_reference)
    assert _first_line(capsys).startswith("Correct")


def test_q4_rejects_wrong_order_and_missing_biases(capsys):
    def wrong_order(model):
        return model.linear1.weight.T @ model.linear2.weight.T, model.linear3.bias

    def last_bias_only(model):
        W, _ = nb03.collapse_reference(model)
        return W, model.linear3.bias

    def summed_biases(model):
        W, _ = nb03.collapse_reference(model)
        return W, model.linear3.bias + model.linear2.bias[:10] + model.linear1.bias[:10]

    assert not nb03.q4.check(wrong_order)
    assert "`W`" in _first_line(capsys)
    assert not nb03.q4.check(last_bias_only)
    assert "`b` is only the last layer's bias" in _first_line(capsys)
    assert not nb03.q4.check(summed_biases)
    assert "`b`" in _first_line(capsys)


def test_q4_placeholder_function_is_not_attempted(capsys):
    def collapse(model):
        raise NotImplementedError

    assert not nb03.q4.check(collapse)
    assert _first_line(capsys).startswith("Not attempted yet")


def test_q4_check_leaves_the_global_random_state_alone(capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nb03.q4.check(nb03.collapse_reference)
    assert torch.equal(torch.rand(3), expected)
    capsys.readouterr()


def test_q3_wrong_digits_do_not_reveal_the_right_ones(capsys):
    assert not nb03.q3.check(lambda wrong_counts, digit_totals, k=5: list(range(k)))
    line = _first_line(capsys)
    expected = _weakest_by_rate(nb03._WRONG, nb03._TOTALS)
    assert "highest error rate" in line and str(expected) not in line


def test_every_question_has_two_hints_and_a_solution(capsys):
    for question in (nb03.q1, nb03.q2, nb03.q3, nb03.q4):
        question.hint()
        question.hint(2)
        question.solution()
        out = capsys.readouterr().out
        assert "Hint 1 of 2" in out and "Hint 2 of 2" in out and "Solution" in out
