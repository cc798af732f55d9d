"""Notebook 06's exercises: the reference answers pass, typical mistakes are named, blanks are not attempted."""

from __future__ import annotations

import math

import pytest
import torch

from lora_teach.course.exercises import ____, nb06


def _out(capsys) -> str:
    return capsys.readouterr().out


# q1: learned and forgotten


def learning_and_forgetting(before, after, digits):
    others = [d for d in range(10) if d not in digits]
    learned = 100 * (after.accuracy_on(digits) - before.accuracy_on(digits))
    forgotten = 100 * (before.accuracy_on(others) - after.accuracy_on(others))
    return learned, forgotten


def test_q1_reference_answer_passes(capsys):
    assert nb06.q1.check(learning_and_forgetting)
    assert _out(capsys).startswith("Correct (q1")


def _fractions(before, after, digits):
    learned, forgotten = learning_and_forgetting(before, after, digits)
    return learned / 100, forgotten / 100


def _flipped(before, after, digits):
    learned, forgotten = learning_and_forgetting(before, after, digits)
    return learned, -forgotten


def _overall(before, after, digits):
    return 100 * (after.accuracy - before.accuracy), 100 * (before.accuracy - after.accuracy)


@pytest.mark.parametrize(
    "wrong, words",
    [
        (_fractions, "returned fractions"),
        (_flipped, "sign of `forgotten` flipped"),
        (_overall, "(learned)` is too"),
        (lambda before, after, digits: 3.0, "should return two numbers"),
        (lambda before, after: (0, 0), "raised TypeError"),
    ],
)
def test_q1_typical_mistakes_name_the_function(capsys, wrong, words):
    assert not nb06.q1.check(wrong)
    out = _out(capsys)
    assert out.startswith("Incorrect (q1") and "learning_and_forgetting" in out and words in out


def test_q1_function_still_raising_is_not_attempted(capsys):
    def stub(before, after, digits):
        raise NotImplementedError

    assert not nb06.q1.check(stub)
    assert _out(capsys).startswith("Not attempted yet (q1")


# q2: the two scaling rules


def test_q2_reference_answer_passes(capsys):
    assert nb06.q2.check(16 / 64, 16 / math.sqrt(64))
    assert _out(capsys).startswith("Correct (q2")


@pytest.mark.parametrize(
    "paper, rslora, words",
    [
        (64 / 16, 2.0, "`scaling_paper` is r / lora_alpha"),
        (0.5, 2.0, "`scaling_paper`"),
        (0.25, 0.25, "`scaling_rslora` equals the paper's scaling"),
        (0.25, 16.0, "`scaling_rslora` is r / sqrt(lora_alpha)"),
        (0.25, 4.0, "`scaling_rslora`"),
    ],
)
def test_q2_typical_mistakes_name_the_variable(capsys, paper, rslora, words):
    assert not nb06.q2.check(paper, rslora)
    out = _out(capsys)
    assert out.startswith("Incorrect (q2") and words in out


@pytest.mark.parametrize("answers", [(____, ____), (0.25, ____)])
def test_q2_placeholder_is_not_attempted(capsys, answers):
    assert not nb06.q2.check(*answers)
    assert _out(capsys).startswith("Not attempted yet (q2")


# q3: directions for a share of the energy


def directions_for_energy(S, fraction):
    share = torch.cumsum(S**2, dim=0) / (S**2).sum()
    return int((share < fraction).sum()) + 1


def test_q3_reference_answer_passes(capsys):
    assert nb06.q3.check(directions_for_energy)
    assert _out(capsys).startswith("Correct (q3")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda S, f: int((torch.cumsum(S, 0) / S.sum() < f).sum()) + 1, "sums the singular values"),
        (lambda S, f: int((torch.cumsum(S**2, 0) / (S**2).sum() < f).sum()), "one too few"),
        (lambda S, f: len(S), "too many directions"),
        (lambda S, f: 1, "too few directions"),
    ],
)
def test_q3_typical_mistakes_name_the_function(capsys, wrong, words):
    assert not nb06.q3.check(wrong)
    out = _out(capsys)
    assert out.startswith("Incorrect (q3") and "directions_for_energy" in out and words in out


def test_q3_inclusive_comparison_is_diagnosed_as_one_too_many_not_as_summing(capsys):
    def inclusive(S, fraction):
        share = torch.cumsum(S**2, dim=0) / (S**2).sum()
        return int((share <= fraction).sum()) + 1

    assert not nb06.q3.check(inclusive)
    out = _out(capsys)
    assert "one direction too many" in out and "sums the singular values" not in out


def test_q3_wrong_answers_do_not_reveal_the_expected_count(capsys):
    assert not nb06.q3.check(lambda S, f: 1)
    out = _out(capsys)
    assert "should be" not in out and "too few" in out


def test_q3_function_still_raising_is_not_attempted(capsys):
    def stub(S, fraction):
        raise NotImplementedError

    assert not nb06.q3.check(stub)
    assert _out(capsys).startswith("Not attempted yet (q3")


# q4: the subspace similarity phi


def phi(A1, A2, i, j):
    U1 = torch.linalg.svd(A1, full_matrices=False).Vh[:i].T
    U2 = torch.linalg.svd(A2, full_matrices=False).Vh[:j].T
    return (torch.linalg.matrix_norm(U1.T @ U2) ** 2 / min(i, j)).item()


def test_q4_reference_answer_passes(capsys):
    assert nb06.q4.check(phi)
    assert _out(capsys).startswith("Correct (q4")


def _left_vectors(A1, A2, i, j):
    U1 = torch.linalg.svd(A1.T, full_matrices=False).Vh[:i].T  # wrong side: (r1, i)
    U2 = torch.linalg.svd(A2.T, full_matrices=False).Vh[:j].T
    return (torch.linalg.matrix_norm(U1.T @ U2) ** 2 / min(i, j)).item()


@pytest.mark.parametrize(
    "wrong, words",
    [
        (
            lambda A1, A2, i, j: (phi(A1, A2, i, j) * min(i, j)) ** 0.5 / min(i, j),
            "square the Frobenius norm",
        ),
        (lambda A1, A2, i, j: phi(A1, A2, i, j) * min(i, j), "divide by min(i, j)"),
        (lambda A1, A2, i, j: phi(A1, A2, i, j) * min(i, j) / max(i, j), "not max(i, j)"),
        (_left_vectors, "raised RuntimeError"),
        (lambda A1, A2, i, j: torch.ones(2, j), "should be one number"),
    ],
)
def test_q4_typical_mistakes_name_the_function(capsys, wrong, words):
    assert not nb06.q4.check(wrong)
    out = _out(capsys)
    assert out.startswith("Incorrect (q4") and "phi(" in out and words in out


def test_random_subspaces_have_phi_near_max_i_j_over_in():
    """The expectation the q4 message states: E ||U1^T U2||_F^2 = i * j / n, so E phi = max(i, j) / n."""
    generator = torch.Generator().manual_seed(0)
    n, i, j, draws = 40, 2, 8, 4000
    values = [
        phi(torch.randn(i, n, generator=generator), torch.randn(j, n, generator=generator), i, j)
        for _ in range(draws)
    ]
    mean = sum(values) / draws
    assert abs(mean - max(i, j) / n) < 0.01  # 0.2; i * j / n would be 0.4
    assert abs(mean - i * j / n) > 0.1


def test_q4_success_message_states_max_i_j_over_in(capsys):
    assert nb06.q4.check(phi)
    assert "max(i, j) / in" in _out(capsys)


def test_q4_function_still_raising_is_not_attempted(capsys):
    def stub(A1, A2, i, j):
        raise NotImplementedError

    assert not nb06.q4.check(stub)
    assert _out(capsys).startswith("Not attempted yet (q4")


@pytest.mark.parametrize("question", [nb06.q1, nb06.q2, nb06.q3, nb06.q4])
def test_hints_and_solution_print(capsys, question):
    question.hint()
    question.hint(2)
    question.solution()
    out = _out(capsys)
    assert "Hint 1 of 2" in out and "Hint 2 of 2" in out and "Solution" in out
