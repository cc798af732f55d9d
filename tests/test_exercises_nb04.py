"""The nb04 exercises: reference answers pass, typical mistakes fail by name, placeholders are not attempted."""

import torch

from lora_teach.course.exercises import ____, nb04


def lora_param_count(in_features, out_features, r):
    return r * (in_features + out_features)


def lora_weight(weight, lora_A, lora_B, scaling):
    return weight + scaling * (lora_B @ lora_A)


def freeze_all_but_lora(model):
    for name, param in model.named_parameters():
        param.requires_grad_(name.rpartition(".")[2] in ("lora_A", "lora_B"))


def not_done(*args):
    raise NotImplementedError


def test_reference_answers_pass(capsys):
    assert nb04.q1.check(lora_param_count)
    assert nb04.q2.check(lora_weight)
    assert nb04.q3.check(freeze_all_but_lora)
    assert capsys.readouterr().out.count("Correct") == 3


def test_placeholders_are_not_attempted(capsys):
    for question in (nb04.q1, nb04.q2, nb04.q3):
        assert not question.check(____)
        assert not question.check(not_done)
    assert capsys.readouterr().out.count("Not attempted yet") == 6


def test_q1_counting_only_one_side_fails(capsys):
    assert not nb04.q1.check(lambda in_features, out_features, r: r * in_features)
    assert "`lora_param_count`" in capsys.readouterr().out


def test_q1_counting_the_full_matrix_fails(capsys):
    assert not nb04.q1.check(lambda in_features, out_features, r: in_features * out_features)
    assert "`lora_param_count`" in capsys.readouterr().out


def test_q2_without_scaling_fails(capsys):
    assert not nb04.q2.check(lambda weight, lora_A, lora_B, scaling: weight + lora_B @ lora_A)
    out = capsys.readouterr().out
    assert "`lora_weight`" in out and "scaling" in out


def test_q2_update_only_fails(capsys):
    assert not nb04.q2.check(lambda weight, lora_A, lora_B, scaling: scaling * lora_B @ lora_A)
    assert "frozen weight" in capsys.readouterr().out


def test_q2_wrong_product_order_fails_kindly(capsys):
    assert not nb04.q2.check(lambda weight, lora_A, lora_B, scaling: weight + scaling * lora_A @ lora_B)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "lora_weight" in out


def test_q3_seed_style_freeze_with_trainable_biases_fails(capsys):
    def freeze_weights_only(model):
        for name, param in model.named_parameters():
            if name.endswith("original"):
                param.requires_grad_(False)

    assert not nb04.q3.check(freeze_weights_only)
    out = capsys.readouterr().out
    assert "`freeze_all_but_lora`" in out and "bias" in out


def test_q3_freezing_everything_fails(capsys):
    def freeze_everything(model):
        for param in model.parameters():
            param.requires_grad_(False)

    assert not nb04.q3.check(freeze_everything)
    assert "froze LoRA factors" in capsys.readouterr().out


def test_q3_doing_nothing_fails(capsys):
    assert not nb04.q3.check(lambda model: None)
    assert "every parameter trainable" in capsys.readouterr().out


def test_hints_and_solution_print(capsys):
    nb04.q1.hint()
    nb04.q2.hint(2)
    nb04.q3.solution()
    out = capsys.readouterr().out
    assert "Hint 1 of 2" in out and "Hint 2 of 2" in out and "requires_grad_" in out
    torch.manual_seed(0)


def test_q3_substring_rule_fails_on_a_module_named_like_a_factor(capsys):
    def freeze_by_substring(model):
        for name, param in model.named_parameters():
            param.requires_grad_("lora_A" in name or "lora_B" in name)

    assert not nb04.q3.check(freeze_by_substring)
    assert "lora_A_head" in capsys.readouterr().out


def test_q3_tutorial_capital_letter_rule_fails(capsys):
    def freeze_by_letters(model):
        for name, param in model.named_parameters():
            param.requires_grad_("A" in name or "B" in name)

    assert not nb04.q3.check(freeze_by_letters)
    assert "`freeze_all_but_lora`" in capsys.readouterr().out


def test_q3_endswith_rule_passes(capsys):
    def freeze_by_suffix(model):
        for name, param in model.named_parameters():
            param.requires_grad_(name.endswith((".lora_A", ".lora_B")))

    assert nb04.q3.check(freeze_by_suffix)


def test_q3_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nb04.q3.check(freeze_all_but_lora)
    assert torch.equal(torch.rand(3), expected)


def test_q2_a_rank_two_only_answer_fails(capsys):
    """The check tries ranks other than 2 (and other shapes), so an answer written for r=2 fails."""

    def rank_two_only(weight, lora_A, lora_B, scaling):
        return weight + scaling * (lora_B[:, :1] @ lora_A[:1] + lora_B[:, 1:2] @ lora_A[1:2])

    assert not nb04.q2.check(rank_two_only)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "`lora_weight`" in out


def test_q2_a_fixed_shape_answer_fails(capsys):
    def fixed_shape(weight, lora_A, lora_B, scaling):
        return weight + scaling * (lora_B @ lora_A).reshape(5, 7)

    assert not nb04.q2.check(fixed_shape)
    assert capsys.readouterr().out.startswith("Incorrect")


def test_q2_an_answer_under_no_grad_fails_and_names_the_cause(capsys):
    def under_no_grad(weight, lora_A, lora_B, scaling):
        with torch.no_grad():
            return weight + scaling * (lora_B @ lora_A)

    assert not nb04.q2.check(under_no_grad)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "no_grad" in out and "detach" in out


def test_q2_a_detached_answer_fails(capsys):
    assert not nb04.q2.check(lambda w, A, B, s: (w + s * (B @ A)).detach())
    assert "lora_A and lora_B" in capsys.readouterr().out


def test_q2_one_detached_factor_is_named(capsys):
    assert not nb04.q2.check(lambda w, A, B, s: w + s * (B.detach() @ A))
    out = capsys.readouterr().out
    assert "lora_B" in out and "detach" in out


def test_q2_a_partly_detached_update_fails(capsys):
    """Right numbers and a graph that reaches both factors, but not the gradient of W + s B A."""

    def partly_detached(w, A, B, s):
        return w + s * (B @ A).detach() + 0 * (A.sum() + B.sum())

    assert not nb04.q2.check(partly_detached)
    assert "gradient reaching" in capsys.readouterr().out


def test_q2_a_float64_answer_keeps_its_graph_and_passes():
    assert nb04.q2.check(lambda w, A, B, s: w.double() + s * (B.double() @ A.double()))


def test_q3_last_letter_rule_fails_on_plain_parameters_called_A_and_B(capsys):
    def freeze_by_last_letter(model):
        for name, param in model.named_parameters():
            param.requires_grad_(name[-1] in "AB")

    assert not nb04.q3.check(freeze_by_last_letter)
    out = capsys.readouterr().out
    assert out.startswith("Incorrect") and "proj_B" in out
