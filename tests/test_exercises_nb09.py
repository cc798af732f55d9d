"""Notebook 09's exercises: the reference answers pass, typical mistakes are named, junk and blanks are
handled, and no wrong-answer message gives the expected value away."""

from __future__ import annotations

import pytest
import torch

from lora_teach.adapters import add_lora, mark_only_lora_as_trainable
from lora_teach.course.exercises import ____, nb09
from lora_teach.gpt import ALL_LINEAR, TinyGPT


def _out(capsys) -> str:
    return capsys.readouterr().out


def _lora_count(targets, r) -> int:
    model = TinyGPT()
    add_lora(model, r, target_modules=list(targets))
    mark_only_lora_as_trainable(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_q2_reference_answer_passes_and_matches_the_model(capsys):
    qv, every = _lora_count(["q_proj", "v_proj"], 8), _lora_count(ALL_LINEAR, 2)
    assert nb09.q2.check(qv, every)
    assert _out(capsys).startswith("Correct (nb09.q2")


@pytest.mark.parametrize(
    "qv, every, words",
    [
        (4096, 18432, "counts one block"),
        (8192, 18432, "one matrix per block"),
        (131072, 18432, "frozen matrices"),
        (16000, 18432, "not the adapter's count"),
        (16384, 4 * 6 * 2 * 256, "128 x 512"),
        (16384, 18432 // 4, "counts one block"),
        (16384, 18000, "`all_linear_r2` is not"),
        ("16384", 18432, "should be a number"),
        (torch.ones(2), 18432, "tensor of shape (2,)"),
        (float("nan"), 18432, "finite"),
    ],
)
def test_q2_mistakes_and_junk_are_named_without_the_answer(capsys, qv, every, words):
    assert not nb09.q2.check(qv, every)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb09.q2") and words in out
    assert "16384" not in out.replace(",", "") or str(qv) == "16384"  # only the student's own input is echoed


def test_q2_blank_is_not_attempted(capsys):
    assert not nb09.q2.check(____, ____)
    assert _out(capsys).startswith("Not attempted yet")


def test_q1_reference_answer_passes(capsys):
    model = TinyGPT()
    attention = sum(p.numel() for n, p in model.named_parameters() if ".attn." in n)
    assert nb09.q1.check(attention / sum(p.numel() for p in model.parameters()), False)
    assert _out(capsys).startswith("Correct (nb09.q1")


@pytest.mark.parametrize(
    "share, verdict, words",
    [
        (2 * 262144 / 832512, False, "counts the MLP"),
        (131072 / 832512, False, "only q_proj and v_proj"),
        (0.5, False, "is not the share"),
        (31.5, False, "more than 1"),
        (262144 / 832512, True, "which of the two holds more"),
        (262144 / 832512, "no", "True or False"),
        (None, False, "should be a number"),
    ],
)
def test_q1_mistakes_and_junk_are_named_without_the_answer(capsys, share, verdict, words):
    assert not nb09.q1.check(share, verdict)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb09.q1") and words in out and "0.31" not in out


def test_q3_reference_answer_passes(capsys):
    assert nb09.q3.check(lambda logits, t: torch.softmax(logits / t, dim=-1))
    assert _out(capsys).startswith("Correct (nb09.q3")


@pytest.mark.parametrize(
    "function, words",
    [
        (lambda logits, t: torch.softmax(logits, dim=-1), "ignores the temperature"),
        (lambda logits, t: torch.softmax(logits * t, dim=-1), "divide them"),
        (lambda logits, t: logits / t, "summing to 1"),
        (lambda logits, t: torch.softmax(logits / t, dim=-1)[:3], "one probability per logit"),
        (lambda logits, t: [0.5, 0.5], "should return a tensor"),
        (lambda logits, t: 1 / 0, "raised ZeroDivisionError"),
        ("softmax", "should be a function"),
    ],
)
def test_q3_mistakes_and_junk_are_named(capsys, function, words):
    assert not nb09.q3.check(function)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb09.q3") and words in out


def test_q3_unfinished_function_is_not_attempted(capsys):
    def next_char_probs(logits, temperature):
        raise NotImplementedError

    assert not nb09.q3.check(next_char_probs)
    assert _out(capsys).startswith("Not attempted yet")
