"""Notebook 10's exercises: the reference answers pass, typical mistakes are named, junk and blanks are
handled, and no wrong-answer message gives the expected value away."""

from __future__ import annotations

import pytest
import torch

from lora_teach.course.exercises import ____, nb10


def _out(capsys) -> str:
    return capsys.readouterr().out


def int8(x):
    absmax = x.abs().max()
    return torch.round(x / absmax * 127).to(torch.int8), absmax


def test_q2_reference_passes(capsys):
    assert nb10.q2.check(int8)
    assert _out(capsys).startswith("Correct (nb10.q2")


@pytest.mark.parametrize(
    "function, words",
    [
        (lambda x: (torch.trunc(x / x.abs().max() * 127).to(torch.int8), x.abs().max()), "truncated"),
        (lambda x: (torch.round(x / x.abs().max() * 127), x.abs().max()), "torch.int8"),
        (lambda x: (int8(x)[0], x.abs().max() / 127), "not absmax / 127"),
        (
            lambda x: (torch.round(x / x.abs().max() * 128).clamp(-128, 127).to(torch.int8), x.abs().max()),
            "127, not 128",
        ),
        (lambda x: (torch.round(x / x.max() * 127).to(torch.int8), x.max()), "absmax"),
        (lambda x: int8(x)[0], "two things"),
        (lambda x: (int8(x)[0].reshape(-1), x.abs().max()), "shape"),
        (lambda x: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_q2_mistakes_are_named_without_the_answer(capsys, function, words):
    assert not nb10.q2.check(function)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb10.q2") and words in out, out


def test_q2_a_function_that_changes_its_input_does_not_fool_the_check(capsys):
    def vandal(x):
        x.zero_()
        return torch.zeros_like(x, dtype=torch.int8), torch.tensor(1.0)

    assert not nb10.q2.check(vandal)
    assert _out(capsys).startswith("Incorrect")


def nf4(offset):
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return values / values.max()


def test_q3_reference_passes_also_from_float64_probabilities(capsys):
    assert nb10.q3.check(nf4)
    assert nb10.q3.check(lambda o: nf4(o).float())
    assert _out(capsys).count("Correct (nb10.q3") == 2


@pytest.mark.parametrize(
    "function, words",
    [
        (lambda o: nf4(o)[:15], "16 values"),
        (lambda o: nf4(o).flip(0), "sorted"),
        (lambda o: nf4(o) * 2, "largest value is 1"),
        (lambda o: -nf4(o).flip(0), "8 positive values"),
        (lambda o: torch.special.ndtri(torch.linspace(1 - o, o, 16).double()) / 1.8, "exact 0"),
        (lambda o: torch.special.ndtri(torch.linspace(0.0, 1.0, 16).double()), "inf"),
        (lambda o: nf4(0.9), "other values"),
    ],
)
def test_q3_mistakes_are_named(capsys, function, words):
    assert not nb10.q3.check(function)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb10.q3") and words in out, out


def test_q4_reference_passes_and_low_nibble_first_is_named(capsys):
    assert nb10.q4.check(lambda c: ((c[0::2] << 4) | c[1::2]).to(torch.uint8))
    assert _out(capsys).startswith("Correct (nb10.q4")
    assert not nb10.q4.check(lambda c: ((c[1::2] << 4) | c[0::2]).to(torch.uint8))
    assert "high nibble" in _out(capsys)
    assert not nb10.q4.check(lambda c: (c[0::2] << 4) | c[1::2])
    assert "torch.uint8" in _out(capsys)
    assert not nb10.q4.check(lambda c: c.to(torch.uint8))
    assert "fill" in _out(capsys)


def test_q1_reference_passes(capsys):
    assert nb10.q1.check(4 + 32 / 64, 4 + 8 / 64 + 32 / (64 * 256))
    out = _out(capsys)
    assert out.startswith("Correct (nb10.q1") and "0.127" in out


@pytest.mark.parametrize(
    "plain, double, words",
    [
        (0.5, 4.127, "add the 4 bits"),
        (4.125, 4.127, "one float32 absmax"),
        (4.5, 0.126953125, "add the 4 bits"),
        (4.5, 4.125, "second level"),
        (4.5, 4.2, "not right"),
        ("4.5", 4.127, "should be a number"),
    ],
)
def test_q1_mistakes_are_named_without_the_answer(capsys, plain, double, words):
    assert not nb10.q1.check(plain, double)
    out = _out(capsys)
    assert out.startswith("Incorrect (nb10.q1") and words in out, out
    assert "4.126953125" not in out and "4.127" not in out.replace(str(double), "")


def test_blanks_are_not_attempted(capsys):
    for question, answers in [
        (nb10.q2, [____]),
        (nb10.q3, [____]),
        (nb10.q4, [____]),
        (nb10.q1, [____, ____]),
    ]:
        assert not question.check(*answers)
        assert _out(capsys).startswith("Not attempted yet")
