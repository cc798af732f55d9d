"""The nb05 exercises: reference answers pass, typical mistakes fail by name, placeholders are not attempted."""

import pytest
import torch

from lora_teach.course.exercises import ____, nb05


def lora_linear_forward(x, base_layer, lora_A, lora_B, scaling):
    return base_layer(x) + scaling * ((x @ lora_A.T) @ lora_B.T)


def merged_weight(base_layer, lora_A, lora_B, scaling):
    return base_layer.weight + scaling * (lora_B @ lora_A)


def not_done(*args):
    raise NotImplementedError


def test_reference_answers_pass(capsys):
    assert nb05.q1.check(lora_linear_forward)
    assert nb05.q2.check(256 + 128 + 10)
    assert nb05.q3.check(merged_weight)
    assert capsys.readouterr().out.count("Correct") == 3


def test_placeholders_are_not_attempted(capsys):
    assert not nb05.q1.check(not_done)
    assert not nb05.q2.check(____)
    assert not nb05.q3.check(not_done)
    assert not nb05.q3.check(____)
    assert capsys.readouterr().out.count("Not attempted yet") == 4


def test_q1_without_scaling_fails(capsys):
    assert not nb05.q1.check(lambda x, layer, A, B, s: layer(x) + x @ A.T @ B.T)
    out = capsys.readouterr().out
    assert "`lora_linear_forward`" in out and "scaling" in out


def test_q1_without_base_layer_fails(capsys):
    assert not nb05.q1.check(lambda x, layer, A, B, s: s * x @ A.T @ B.T)
    assert "base_layer(x)" in capsys.readouterr().out


def test_q1_wrong_transposes_fail_kindly(capsys):
    assert not nb05.q1.check(lambda x, layer, A, B, s: layer(x) + s * x @ A @ B)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "lora_linear_forward" in out


def test_q2_whole_count_fails(capsys):
    assert not nb05.q2.check(3_518)
    assert "`bias_parameters`" in capsys.readouterr().out


def test_q2_other_wrong_number_fails(capsys):
    assert not nb05.q2.check(256 + 128)
    out = capsys.readouterr().out
    assert "`bias_parameters`" in out and "not right" in out and "394" not in out


def test_q3_in_place_merge_fails(capsys):
    def merge_in_place(layer, A, B, s):
        layer.weight += s * B @ A
        return layer.weight

    assert not nb05.q3.check(merge_in_place)
    assert "in place" in capsys.readouterr().out


def test_q3_without_scaling_fails(capsys):
    assert not nb05.q3.check(lambda layer, A, B, s: layer.weight + B @ A)
    out = capsys.readouterr().out
    assert "`merged_weight`" in out and "scaling" in out


def test_q3_transposed_weight_fails(capsys):
    assert not nb05.q3.check(lambda layer, A, B, s: (layer.weight + s * B @ A).T)
    assert "(out, in)" in capsys.readouterr().out


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nb05.q1.check(lora_linear_forward)
    nb05.q3.check(merged_weight)
    assert torch.equal(torch.rand(3), expected)


def test_q1_an_answer_under_no_grad_fails_and_names_the_cause(capsys):
    def under_no_grad(x, layer, A, B, s):
        with torch.no_grad():
            return layer(x) + s * ((x @ A.T) @ B.T)

    assert not nb05.q1.check(under_no_grad)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "no_grad" in out and "detach" in out


def test_q1_a_detached_side_path_fails(capsys):
    assert not nb05.q1.check(lambda x, layer, A, B, s: layer(x) + s * ((x @ A.T) @ B.T).detach())
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "lora_A and lora_B" in out


def test_q1_one_detached_factor_is_named(capsys):
    assert not nb05.q1.check(lambda x, layer, A, B, s: layer(x) + s * ((x @ A.detach().T) @ B.T))
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "lora_A" in out and "lora_B" not in out


def test_q1_a_change_to_the_base_layer_fails(capsys):
    def merge_into_layer(x, layer, A, B, s):
        with torch.no_grad():
            layer.weight += s * (B @ A)
        return layer(x) + 0 * (A.sum() + B.sum())

    assert not nb05.q1.check(merge_into_layer)
    assert "in place" in capsys.readouterr().out


def test_q1_forming_the_full_update_is_not_praised_for_avoiding_it(capsys):
    def full_matrix(x, layer, A, B, s):
        return x @ (layer.weight + s * B @ A).T + layer.bias

    assert nb05.q1.check(full_matrix)
    out = capsys.readouterr().out
    assert out.startswith("Correct") and "never forms" not in out and "forms the (out, in) update" in out


def test_q1_the_reference_answer_keeps_its_message(capsys):
    assert nb05.q1.check(lora_linear_forward)
    out = capsys.readouterr().out
    assert "never forms the (out, in) update" in out


def test_q1_using_the_layers_weight_without_forming_the_update_keeps_its_message(capsys):
    assert nb05.q1.check(lambda x, layer, A, B, s: x @ layer.weight.T + layer.bias + s * (x @ A.T) @ B.T)
    assert "never forms the (out, in) update" in capsys.readouterr().out


@pytest.mark.parametrize("guess", [0, 100, 393, 395, 1_000, 3_940, 39.4, 3_000])
def test_q2_feedback_gives_no_direction_to_bisect_with(guess, capsys):
    """A count between 0 and 3,518 would fall to a dozen guesses if the check said too high / too low
    (or off by a factor of 10): every wrong guess gets the same words, only the guess itself differs."""
    assert not nb05.q2.check(guess)
    line = capsys.readouterr().out
    shown = f"{guess:,}" if isinstance(guess, int) else f"{guess}"
    assert line.replace(f"(you gave {shown})", "(you gave N)") == (
        "Incorrect (nb05.q2): `bias_parameters` (the biases of DigitsNet's three layers) is not right "
        "(you gave N); `.hint()` gives a nudge\n"
    ), line
