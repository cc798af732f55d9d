"""The notebook 02 exercises: reference answers pass, typical mistakes fail with a named variable,
placeholders report "Not attempted yet"."""

import numpy as np
import pytest
import torch

from lora_teach.course.exercises import ____, nb02
from tests.conftest import check_output as check


def test_q1_reference_answer_passes(capsys):
    ok, out = check(nb02.q1, (4, 784), (256, 4), (256, 784), capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q1_accepts_torch_sizes(capsys):
    ok, _ = check(nb02.q1, torch.Size([4, 784]), torch.Size([256, 4]), torch.Size([256, 784]), capsys=capsys)
    assert ok


def test_q1_paper_orientation_of_delta_W_fails(capsys):
    ok, out = check(nb02.q1, (4, 784), (256, 4), (784, 256), capsys=capsys)
    assert not ok and "`delta_W_shape`" in out and "(out_features, in_features)" in out


def test_q1_transposed_lora_A_fails(capsys):
    ok, out = check(nb02.q1, (784, 4), (256, 4), (256, 784), capsys=capsys)
    assert not ok and "`lora_A_shape`" in out


def test_q1_transposed_lora_B_fails(capsys):
    ok, out = check(nb02.q1, (4, 784), (4, 256), (256, 784), capsys=capsys)
    assert not ok and "`lora_B_shape`" in out


def test_q1_placeholder_is_not_attempted(capsys):
    ok, out = check(nb02.q1, ____, ____, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q2_reference_answer_passes(capsys):
    ok, out = check(nb02.q2, lambda x, W0, A, B, s: x @ W0.T + s * (x @ A.T) @ B.T, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q2_forming_delta_W_is_also_correct(capsys):
    ok, _ = check(nb02.q2, lambda x, W0, A, B, s: x @ (W0 + s * B @ A).T, capsys=capsys)
    assert ok


def test_q2_forgetting_the_scaling_fails_with_an_explanation(capsys):
    ok, out = check(nb02.q2, lambda x, W0, A, B, s: x @ W0.T + (x @ A.T) @ B.T, capsys=capsys)
    assert not ok and "`lora_forward`" in out and "scaling" in out


def test_q2_shape_error_is_reported_readably(capsys):
    ok, out = check(nb02.q2, lambda x, W0, A, B, s: x @ W0 + s * x @ A @ B, capsys=capsys)
    assert not ok and "raised RuntimeError" in out


def test_q2_not_implemented_is_not_attempted(capsys):
    def lora_forward(x, W0, lora_A, lora_B, scaling):
        raise NotImplementedError

    ok, out = check(nb02.q2, lora_forward, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q1_accepts_lists_and_numpy_ints(capsys):
    ok, _ = check(nb02.q1, [4, 784], [np.int64(256), 4], (256, np.int32(784)), capsys=capsys)
    assert ok


def test_q1_a_non_shape_is_named(capsys):
    ok, out = check(nb02.q1, "4 x 784", (256, 4), (256, 784), capsys=capsys)
    assert not ok and "`lora_A_shape` should be a tuple of whole numbers" in out


def unmerge(W, lora_A, lora_B, scaling):
    return W - scaling * lora_B @ lora_A


def test_q3_reference_answer_passes(capsys):
    ok, out = check(nb02.q3, unmerge, capsys=capsys)
    assert ok and out.startswith("Correct")


@pytest.mark.parametrize(
    "slip, words",
    [
        (lambda W, A, B, s: W + s * B @ A, "adds the update a second time"),
        (lambda W, A, B, s: W - B @ A, "without `scaling`"),
        (lambda W, A, B, s: W - B @ A / s, "divides by `scaling`"),
        (lambda W, A, B, s: W.T - s * A.T @ B.T, "returned shape"),
        (lambda W, A, B, s: W - s * B @ A + 1, "does not give back W0"),
    ],
)
def test_q3_each_typical_slip_gets_its_own_explanation(capsys, slip, words):
    ok, out = check(nb02.q3, slip, capsys=capsys)
    assert not ok and "`unmerge`" in out and words in out


def test_q3_changing_the_callers_weight_in_place_fails(capsys):
    def in_place(W, lora_A, lora_B, scaling):
        W -= scaling * lora_B @ lora_A
        return W

    ok, out = check(nb02.q3, in_place, capsys=capsys)
    assert not ok and "changed the merged weight it was given" in out


def test_q3_placeholder_is_not_attempted(capsys):
    ok, out = check(nb02.q3, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q4_reference_answer_passes(capsys):
    ok, out = check(nb02.q4, lambda L, d, r, n, b: L * n * 2 * d * r * b, capsys=capsys)
    assert ok and out.startswith("Correct") and "MB" in out


@pytest.mark.parametrize(
    "slip, words",
    [
        (lambda L, d, r, n, b: L * n * 2 * d * r, "multiply by bytes_per_param"),
        (lambda L, d, r, n, b: L * n * d * r * b, "two, A (r x d_model) and B"),
        (lambda L, d, r, n, b: L * n * 2 * d * r * 2, "assumes 2 bytes per parameter"),
        (lambda L, d, r, n, b: L * n * d * d * b, "full d_model x d_model"),
        (lambda L, d, r, n, b: n * 2 * d * r * b, "multiply by num_layers"),
        (lambda L, d, r, n, b: L * 2 * d * r * b, "multiply by matrices_per_layer"),
    ],
)
def test_q4_each_typical_slip_gets_its_own_explanation(capsys, slip, words):
    """The old check called a hard-coded 2 bytes per parameter "one factor only"; each slip is now told apart."""
    ok, out = check(nb02.q4, slip, capsys=capsys)
    assert not ok and "`checkpoint_bytes`" in out and words in out


def test_q4_an_unrecognised_wrong_answer_says_too_high_without_the_value(capsys):
    ok, out = check(nb02.q4, lambda L, d, r, n, b: 10**12, capsys=capsys)
    assert not ok and "too high" in out and "1,179,648" not in out and "1179648" not in out


def test_q4_accepts_float_and_tensor_results(capsys):
    ok, _ = check(nb02.q4, lambda L, d, r, n, b: float(L * n * 2 * d * r * b), capsys=capsys)
    assert ok
    ok, _ = check(nb02.q4, lambda L, d, r, n, b: torch.tensor(L * n * 2 * d * r * b), capsys=capsys)
    assert ok


def test_q4_placeholder_is_not_attempted(capsys):
    ok, out = check(nb02.q4, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_every_question_has_two_hints_and_a_solution(capsys):
    for question in (nb02.q1, nb02.q2, nb02.q3, nb02.q4):
        question.hint()
        question.hint(2)
        question.solution()
    out = capsys.readouterr().out
    assert out.count("Hint 2 of 2") == 4 and out.count("Solution") == 4
