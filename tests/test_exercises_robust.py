"""Every exercise check, fed anything at all: one printed line, never an exception; right numbers
of any type pass; a wrong number's feedback never shows the right one; a grader hears each outcome."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re

import numpy as np
import pytest
import torch

import lora_teach.course.exercises as exercises
from lora_teach.course.exercises import Question, ____, set_check_listener

MODULES = [
    importlib.import_module(f"lora_teach.course.exercises.{m.name}")
    for m in pkgutil.iter_modules(exercises.__path__)
    if m.name.startswith("nb")
]
QUESTIONS = [
    pytest.param(module, attribute, question, id=f"{module.__name__[-4:]}.{attribute}")
    for module in MODULES
    for attribute, question in vars(module).items()
    if isinstance(question, Question)
]


def _arity(question: Question) -> int:
    return len(inspect.signature(question._checker).parameters)


def _returns_none(*args):
    x = sum(1 for _ in args)  # noqa: F841 - a body that computes and forgets to return
    return None


def _raises(*args):
    raise ValueError("boom")


JUNK = [
    None,
    "",
    "394",
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    True,
    np.int64(-3),
    np.float32(0.25),
    np.array(-7.5),
    torch.tensor(-7.5),
    torch.tensor([1, 2]),
    torch.zeros(3),
    torch.zeros(2, 3),
    torch.zeros(0),
    [],
    [1, 2],
    [None] * 10,
    ["a"] * 10,
    (1,),
    {},
    {"a": 1},
    object(),
    _returns_none,
    _raises,
    lambda *args: "text",
    lambda *args: torch.zeros(1, 2, 3),
    lambda *args: (None, None),
    lambda *args: [torch.zeros(1)] * 3,
]


def _one_line_verdict(out: str) -> str:
    lines = out.splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    assert lines[0].startswith(("Correct", "Incorrect", "Not attempted yet")), lines[0]
    return lines[0]


@pytest.mark.parametrize(("module", "attribute", "question"), QUESTIONS)
def test_every_check_answers_any_junk_in_one_line_without_raising(module, attribute, question, capsys):
    for junk in JUNK:
        result = question.check(*[junk] * _arity(question))
        line = _one_line_verdict(capsys.readouterr().out)
        assert bool(result) == line.startswith("Correct")
        assert not line.startswith("Correct"), f"{attribute} accepted junk {junk!r}"


def _reference_answers(module, question: Question) -> list | None:
    """The solution's values, from running its code (None when it needs notebook state)."""
    namespace = {"torch": torch, "math": math, "np": np}
    if hasattr(module, "Q1_MATRIX"):
        namespace["M"] = module.Q1_MATRIX
    if hasattr(module, "TRAIN_COUNTS"):
        namespace["y_train"] = torch.repeat_interleave(torch.arange(10), torch.tensor(module.TRAIN_COUNTS))
    try:
        exec(question.answer, namespace)  # noqa: S102 - the course's own reference solution
        return [namespace[name] for name in inspect.signature(question._checker).parameters]
    except (NameError, KeyError):
        return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Each reference solution passing its own check: tests/test_solutions.py (with the notebook's variables).


FUNCTIONS = [
    p
    for p in QUESTIONS
    if (a := _reference_answers(*p.values[::2])) and len(a) == 1 and callable(a[0])
    if p.id != "nb04.q3"  # freeze_all_but_lora works in place and returns nothing
]


@pytest.mark.parametrize(("module", "attribute", "question"), FUNCTIONS)
def test_a_function_returning_none_is_asked_about_return(module, attribute, question, capsys):
    question.check(_returns_none)
    assert "did you forget to `return`?" in _one_line_verdict(capsys.readouterr().out)


NUMERIC = [
    p for p in QUESTIONS if (a := _reference_answers(*p.values[::2])) and all(_is_number(v) for v in a)
]


def test_the_numeric_questions_are_found():
    assert len(NUMERIC) >= 6


@pytest.mark.parametrize(("module", "attribute", "question"), NUMERIC)
def test_a_right_number_of_any_type_passes(module, attribute, question, capsys):
    answers = _reference_answers(module, question)
    for convert in (np.int64, np.float64, np.float32, float, torch.tensor, np.array):
        if convert in (np.int64,) and not all(float(a).is_integer() for a in answers):
            continue
        converted = [convert(a) for a in answers]
        if convert is np.float32 and not all(float(np.float32(a)) == a for a in answers):
            continue
        assert question.check(*converted), (convert, capsys.readouterr().out)


NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _numbers_in(text: str) -> list[float]:
    text = re.sub(r"^\w[\w ]*? \(q\d+[^)]*\)", "", text)  # the question's own name ("q2 ...") is no value
    text = re.sub(r"10\^-?\d+", "", text)  # "a factor of about 10^3" names no value
    return [float(m.replace(",", "")) for m in NUMBER.findall(text) if m.replace(",", "") not in ("", "-")]


@pytest.mark.parametrize(("module", "attribute", "question"), NUMERIC)
def test_a_wrong_number_is_told_its_direction_never_the_right_value(module, attribute, question, capsys):
    answers = _reference_answers(module, question)
    for position, expected in enumerate(answers):
        for wrong in {expected + 1, expected - 1, expected * 1000, expected / 7, 0}:
            if wrong == expected:
                continue
            given = list(answers)
            given[position] = wrong
            assert not question.check(*given)
            line = _one_line_verdict(capsys.readouterr().out)
            shown = [n for n in _numbers_in(line) if not math.isclose(n, wrong, rel_tol=1e-5)]
            assert not any(math.isclose(n, expected, rel_tol=1e-5) for n in shown), line


def test_a_wrong_number_off_by_a_power_of_ten_is_told_to_check_units(capsys):
    """(nb05.q2 was the example here until its count stopped giving any direction, units included.)"""
    from lora_teach.course.exercises import nb01

    nb01.q2.check(512 * 768 * 10, 8 * (512 + 768))
    assert "off by a factor of about 10^1: check your units" in capsys.readouterr().out
    nb01.q2.check(512 * 768 / 1000, 8 * (512 + 768))
    assert "10^-3" in capsys.readouterr().out


def test_the_listener_hears_each_outcome_and_the_question_keeps_the_last(capsys):
    from lora_teach.course.exercises import nb01

    heard = []
    set_check_listener(lambda *outcome: heard.append(outcome))
    try:
        nb01.q1.check(2)
        nb01.q1.check(3)
        nb01.q1.check(____)
    finally:
        set_check_listener(None)
    nb01.q1.check(2)  # after removing it, nothing more is heard
    printed = capsys.readouterr().out.splitlines()
    assert [h[:3] for h in heard] == [
        ("nb01", "q1", "correct"),
        ("nb01", "q1", "incorrect"),
        ("nb01", "q1", "not_attempted"),
    ]
    assert [h[3] for h in heard] == printed[:3]
    assert nb01.q1.last_outcome == ("nb01", "q1", "correct", printed[3])


def test_a_failing_listener_does_not_break_the_check(capsys):
    from lora_teach.course.exercises import nb01

    set_check_listener(_raises)
    try:
        assert nb01.q1.check(2)
    finally:
        set_check_listener(None)
    captured = capsys.readouterr()
    assert captured.out.startswith("Correct") and "check listener failed" in captured.err


def test_set_check_listener_refuses_a_non_function():
    with pytest.raises(TypeError, match="set_check_listener needs a function or None, got int"):
        set_check_listener(3)


def test_a_check_leaves_the_random_state_as_it_was(capsys):
    from lora_teach.course.exercises import nb03, nb08

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    nb03.q4.check(nb03.collapse_reference)
    nb08.q1.check(_raises)
    assert torch.equal(torch.random.get_rng_state(), before)
