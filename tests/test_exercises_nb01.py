"""The notebook 01 exercises: reference answers pass, typical mistakes fail with a named variable,
placeholders report "Not attempted yet"."""

import pytest
import torch

from lora_teach.course.exercises import ____, nb01
from tests.conftest import check_output as check


def test_q1_reference_answer_passes(capsys):
    ok, out = check(nb01.q1, torch.linalg.matrix_rank(nb01.Q1_MATRIX).item(), capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q1_counting_all_rows_fails_naming_the_variable(capsys):
    ok, out = check(nb01.q1, 4, capsys=capsys)
    assert not ok and "Incorrect" in out and "`rank_of_M`" in out


def test_q1_accepts_a_tensor_answer(capsys):
    ok, _ = check(nb01.q1, torch.linalg.matrix_rank(nb01.Q1_MATRIX), capsys=capsys)
    assert ok


def test_q1_placeholder_is_not_attempted(capsys):
    ok, out = check(nb01.q1, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q2_reference_answer_passes(capsys):
    ok, out = check(nb01.q2, 512 * 768, 512 * 8 + 8 * 768, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q2_using_one_side_twice_fails(capsys):
    ok, out = check(nb01.q2, 512 * 768, 2 * 512 * 8, capsys=capsys)
    assert not ok and "`lora_params`" in out


def test_q2_wrong_full_count_fails(capsys):
    ok, out = check(nb01.q2, 512 * 512, 512 * 8 + 8 * 768, capsys=capsys)
    assert not ok and "`full_params`" in out


def test_q2_placeholder_is_not_attempted(capsys):
    ok, out = check(nb01.q2, ____, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def best_rank_r(M, r):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]


def test_q4_reference_answer_passes(capsys):
    ok, out = check(nb01.q4, best_rank_r, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q4_keeping_the_smallest_singular_values_fails(capsys):
    def smallest(M, r):
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        k = len(S)
        return (U[:, k - r :] * S[k - r :]) @ Vh[k - r :]

    ok, out = check(nb01.q4, smallest, capsys=capsys)
    assert not ok and "`best_rank_r(M, r)`" in out


def test_q4_returning_a_factor_fails(capsys):
    ok, out = check(nb01.q4, lambda M, r: torch.linalg.svd(M, full_matrices=False)[0][:, :r], capsys=capsys)
    assert not ok and "`best_rank_r`" in out


def test_q4_crashing_function_gets_a_readable_message(capsys):
    ok, out = check(nb01.q4, lambda M, r: M @ M, capsys=capsys)
    assert not ok and "raised RuntimeError" in out


def test_q4_not_implemented_is_not_attempted(capsys):
    def best_rank_r(M, r):
        raise NotImplementedError

    ok, out = check(nb01.q4, best_rank_r, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q3_reference_answer_passes(capsys):
    ok, out = check(nb01.q3, lambda S, r: torch.sqrt((S[r:] ** 2).sum()).item(), capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q3_accepts_a_tensor_result(capsys):
    ok, _ = check(nb01.q3, lambda S, r: S[r:].norm(), capsys=capsys)
    assert ok


@pytest.mark.parametrize(
    "slip, words",
    [
        (lambda S, r: S[r:].sum().item(), "sum of their squares"),
        (lambda S, r: (S[r:] ** 2).sum().item(), "take its square root"),
        (lambda S, r: S[r].item() if r < len(S) else 0.0, "spectral-norm"),
        (lambda S, r: (S[r + 1 :] ** 2).sum().sqrt().item(), "S[r]"),
        (lambda S, r: (S[:r] ** 2).sum().sqrt().item(), "r kept singular values"),
        (lambda S, r: ((S[r:] ** 2).sum().sqrt() / S.norm()).item(), "relative"),
    ],
)
def test_q3_each_typical_slip_gets_its_own_explanation(capsys, slip, words):
    ok, out = check(nb01.q3, slip, capsys=capsys)
    assert not ok and "`error_from_singular_values`" in out and words in out


def test_q3_an_unrecognised_wrong_answer_says_too_high_or_low_without_the_value(capsys):
    ok, out = check(nb01.q3, lambda S, r: 100.0, capsys=capsys)
    assert not ok and "too high" in out and "4.58" not in out and "3.16" not in out
    ok, out = check(nb01.q3, lambda S, r: 0.001, capsys=capsys)
    assert not ok and "too low" in out


def test_q3_a_non_number_is_named(capsys):
    ok, out = check(nb01.q3, lambda S, r: "small", capsys=capsys)
    assert not ok and "should return a number" in out


def test_q3_placeholder_is_not_attempted(capsys):
    ok, out = check(nb01.q3, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_every_question_has_two_hints_and_a_solution(capsys):
    for question in (nb01.q1, nb01.q2, nb01.q4, nb01.q3):
        question.hint()
        question.hint(2)
        question.solution()
    out = capsys.readouterr().out
    assert out.count("Hint 1 of 2") == 4 and out.count("Solution") == 4
