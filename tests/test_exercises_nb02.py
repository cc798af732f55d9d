"""The notebook 02 exercises: reference answers pass, typical mistakes fail with a named variable,
placeholders report "Not attempted yet"."""

import torch

from lora_teach.exercises import ____, nb02
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


def test_q3_reference_answer_passes(capsys):
    ok, out = check(nb02.q3, lambda i, o, r: r * (i + o), capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q3_square_assumption_fails(capsys):
    ok, out = check(nb02.q3, lambda i, o, r: 2 * i * r, capsys=capsys)
    assert not ok and "`lora_parameter_count`" in out and "square" in out


def test_q3_full_count_fails(capsys):
    ok, out = check(nb02.q3, lambda i, o, r: i * o, capsys=capsys)
    assert not ok and "`lora_parameter_count`" in out


def test_q3_placeholder_is_not_attempted(capsys):
    ok, out = check(nb02.q3, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q4_reference_answer_passes(capsys):
    ok, out = check(nb02.q4, lambda L, d, r, n, b: L * n * 2 * d * r * b, capsys=capsys)
    assert ok and out.startswith("Correct") and "MB" in out


def test_q4_counting_parameters_not_bytes_fails(capsys):
    ok, out = check(nb02.q4, lambda L, d, r, n, b: L * n * 2 * d * r, capsys=capsys)
    assert not ok and "`checkpoint_bytes`" in out and "bytes_per_param" in out


def test_q4_one_factor_only_fails(capsys):
    ok, out = check(nb02.q4, lambda L, d, r, n, b: L * n * d * r * b, capsys=capsys)
    assert not ok and "`checkpoint_bytes`" in out and "two factors" in out


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
