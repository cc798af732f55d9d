"""The notebook 08 exercises: reference answers pass, typical mistakes fail with a named variable,
placeholders report "Not attempted yet"."""

import torch

from lora_teach.course.exercises import ____, nb08
from tests.conftest import check_output as check


def lora_plus_groups(model, lr, ratio):
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    a_params = [p for n, p in trainable if not n.endswith("lora_B")]
    b_params = [p for n, p in trainable if n.endswith("lora_B")]
    return [{"params": a_params, "lr": lr}, {"params": b_params, "lr": lr * ratio}]


def test_q1_reference_answer_passes(capsys):
    ok, out = check(nb08.q1, lora_plus_groups, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q1_ratio_on_lora_A_fails_naming_the_function(capsys):
    def wrong(model, lr, ratio):
        groups = lora_plus_groups(model, lr, ratio)
        groups[0]["params"], groups[1]["params"] = groups[1]["params"], groups[0]["params"]
        return groups

    ok, out = check(nb08.q1, wrong, capsys=capsys)
    assert not ok and "`lora_plus_groups(...)`" in out


def test_q1_including_frozen_weights_fails(capsys):
    def wrong(model, lr, ratio):
        return [{"params": list(model.parameters()), "lr": lr}]

    ok, out = check(nb08.q1, wrong, capsys=capsys)
    assert not ok and "frozen" in out


def test_q1_unimplemented_function_is_not_attempted(capsys):
    def lora_plus_groups(model, lr, ratio):
        raise NotImplementedError

    ok, out = check(nb08.q1, lora_plus_groups, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def dora_weight(weight, lora_A, lora_B, scaling, magnitude):
    direction = weight + scaling * lora_B @ lora_A
    return magnitude[:, None] * direction / direction.norm(dim=1, keepdim=True)


def test_q2_reference_answer_passes(capsys):
    ok, out = check(nb08.q2, dora_weight, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q2_column_norm_fails_naming_the_function(capsys):
    def wrong(weight, lora_A, lora_B, scaling, magnitude):
        direction = weight + scaling * lora_B @ lora_A
        return magnitude[:, None] * direction / direction.norm(dim=0, keepdim=True)

    ok, out = check(nb08.q2, wrong, capsys=capsys)
    assert not ok and "`dora_weight(...)`" in out and "dim=1" in out


def test_q2_missing_normalisation_fails(capsys):
    def wrong(weight, lora_A, lora_B, scaling, magnitude):
        return magnitude[:, None] * (weight + scaling * lora_B @ lora_A)

    ok, out = check(nb08.q2, wrong, capsys=capsys)
    assert not ok and "row norms" in out


def test_q2_placeholder_is_not_attempted(capsys):
    ok, out = check(nb08.q2, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def pissa_factors(weight, r, scaling):
    U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
    root = (S[:r] / scaling).sqrt()
    lora_B, lora_A = U[:, :r] * root, root[:, None] * Vh[:r]
    return lora_B, lora_A, weight - scaling * lora_B @ lora_A


def test_q3_reference_answer_passes(capsys):
    ok, out = check(nb08.q3, pissa_factors, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q3_ignoring_the_scaling_fails_naming_the_function(capsys):
    def wrong(weight, r, scaling):
        B, A, _ = pissa_factors(weight, r, 1.0)
        return B, A, weight - scaling * B @ A

    ok, out = check(nb08.q3, wrong, capsys=capsys)
    assert not ok and "`pissa_factors(...)`" in out and "scaling" in out


def test_q3_smallest_singular_values_fail(capsys):
    def wrong(weight, r, scaling):
        U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
        root = (S[-r:] / scaling).sqrt()
        B, A = U[:, -r:] * root, root[:, None] * Vh[-r:]
        return B, A, weight - scaling * B @ A

    ok, out = check(nb08.q3, wrong, capsys=capsys)
    assert not ok and "top-r" in out


def test_q3_unimplemented_function_is_not_attempted(capsys):
    def pissa_factors(weight, r, scaling):
        raise NotImplementedError

    ok, out = check(nb08.q3, pissa_factors, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q3_accepts_a_list(capsys):
    def as_list(weight, r, scaling):
        return list(pissa_factors(weight, r, scaling))

    ok, out = check(nb08.q3, as_list, capsys=capsys)
    assert ok and out.startswith("Correct")
