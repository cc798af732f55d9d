"""The notebook 07 exercises: reference answers pass, typical mistakes fail with a named variable,
placeholders report "Not attempted yet"."""

import torch

from lora_teach.course.exercises import ____, nb07
from tests.conftest import check_output as check

FLOATS_R8 = 8 * (784 + 256) + 8 * (256 + 128)  # linear1 and linear2 only


def test_q1_reference_answer_passes(capsys):
    ok, out = check(nb07.q1, FLOATS_R8, 4 * FLOATS_R8, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q1_counting_full_weights_fails_naming_the_variable(capsys):
    ok, out = check(nb07.q1, 784 * 256 + 256 * 128, 0, capsys=capsys)
    assert not ok and "`adapter_floats`" in out


def test_q1_counting_all_three_layers_fails_naming_linear3(capsys):
    ok, out = check(nb07.q1, FLOATS_R8 + 8 * (128 + 10), 0, capsys=capsys)
    assert not ok and "linear3" in out


def test_q1_forgetting_four_bytes_per_float_fails(capsys):
    ok, out = check(nb07.q1, FLOATS_R8, FLOATS_R8, capsys=capsys)
    assert not ok and "`adapter_bytes`" in out and "4 bytes" in out


def test_q1_placeholder_is_not_attempted(capsys):
    ok, out = check(nb07.q1, ____, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def adapter_ranks(state):
    return {k.removesuffix(".lora_A"): v.shape[0] for k, v in state.items() if k.endswith(".lora_A")}


def test_q2_reference_answer_passes(capsys):
    ok, out = check(nb07.q2, adapter_ranks, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q2_reading_lora_B_fails_naming_the_function(capsys):
    def wrong(state):
        return {k.removesuffix(".lora_B"): v.shape[0] for k, v in state.items() if k.endswith(".lora_B")}

    ok, out = check(nb07.q2, wrong, capsys=capsys)
    assert not ok and "`adapter_ranks(state)`" in out


def test_q2_reading_in_features_fails(capsys):
    def wrong(state):
        return {k.removesuffix(".lora_A"): v.shape[1] for k, v in state.items() if k.endswith(".lora_A")}

    ok, out = check(nb07.q2, wrong, capsys=capsys)
    assert not ok and "in_features" in out


def test_q2_unimplemented_function_is_not_attempted(capsys):
    def adapter_ranks(state):
        raise NotImplementedError

    ok, out = check(nb07.q2, adapter_ranks, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def combine_factors(B1, A1, B2, A2, w1, w2):
    return torch.cat([w1 * B1, w2 * B2], dim=1), torch.cat([A1, A2], dim=0)


def test_q3_reference_answer_passes(capsys):
    ok, out = check(nb07.q3, combine_factors, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q3_summing_factors_fails(capsys):
    def wrong(B1, A1, B2, A2, w1, w2):  # LoraHub's element-wise mix needs equal ranks
        return w1 * B1 + w2 * B2, w1 * A1 + w2 * A2

    ok, out = check(nb07.q3, wrong, capsys=capsys)
    assert not ok and "`combine_factors" in out


def test_q3_ignoring_the_weights_fails(capsys):
    def wrong(B1, A1, B2, A2, w1, w2):
        return torch.cat([B1, B2], dim=1), torch.cat([A1, A2], dim=0)

    ok, out = check(nb07.q3, wrong, capsys=capsys)
    assert not ok and "w1 and w2" in out


def test_q3_placeholder_is_not_attempted(capsys):
    ok, out = check(nb07.q3, ____, capsys=capsys)
    assert not ok and out.startswith("Not attempted yet")


def test_q1_accepts_numpy_and_tensor_numbers(capsys):
    import numpy as np

    ok, out = check(nb07.q1, np.int64(FLOATS_R8), torch.tensor(4 * FLOATS_R8), capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q1_wrong_count_says_too_low_without_the_value(capsys):
    ok, out = check(nb07.q1, FLOATS_R8 - 8, 4 * FLOATS_R8, capsys=capsys)
    assert not ok and "too low" in out and f"{FLOATS_R8}" not in out and f"{FLOATS_R8:,}" not in out


def test_q2_rank_from_the_scaling_fails(capsys):
    def wrong(state):  # right only when lora_alpha = 1
        return {
            k.removesuffix(".scaling"): round(1 / float(v))
            for k, v in state.items()
            if k.endswith(".scaling")
        }

    ok, out = check(nb07.q2, wrong, capsys=capsys)
    assert not ok and "`adapter_ranks(state)`" in out


def test_q2_accepts_tensor_ranks(capsys):
    def tensor_ranks(state):
        return {
            k.removesuffix(".lora_A"): torch.tensor(v.shape[0])
            for k, v in state.items()
            if k.endswith(".lora_A")
        }

    ok, out = check(nb07.q2, tensor_ranks, capsys=capsys)
    assert ok and out.startswith("Correct")


def test_q3_accepts_a_list(capsys):
    def as_list(B1, A1, B2, A2, w1, w2):
        return list(combine_factors(B1, A1, B2, A2, w1, w2))

    ok, out = check(nb07.q3, as_list, capsys=capsys)
    assert ok and out.startswith("Correct")
