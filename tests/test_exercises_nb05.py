"""The nb05 exercises: reference answers pass, typical mistakes fail by name, placeholders are not attempted."""

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
    assert "`bias_parameters`" in out and "too low" in out and "394" not in out


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
