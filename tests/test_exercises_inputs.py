"""What a check of a student's function can and cannot be fooled by: a function that changes its inputs
and answers for the changed ones, SystemExit, answers of another float type, and numbers of any real type."""

from __future__ import annotations

import dataclasses
import importlib
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lora_teach.course.exercises import Question, call_student, nb00, nb01, nb02, nb03, nb04, nb06
from lora_teach.course.solutions import recorded_solutions

# questions whose function takes only numbers: nothing of the check's can be changed through them
SCALAR_INPUTS = {"nb02.q4", "nb04.q1", "nb10.q3"}


def _question(key: str) -> Question:
    notebook, attribute = key.split(".")
    return getattr(importlib.import_module(f"lora_teach.course.exercises.{notebook}"), attribute)


def _reference_function(key: str):
    """The function the notebook's solution block defines."""
    namespace = {"torch": torch, "math": math, "np": np, "nn": nn, "F": F}
    exec(recorded_solutions()[key], namespace)  # noqa: S102 - the course's own reference code
    name = recorded_solutions()[key].split("def ", 1)[1].split("(", 1)[0]
    return namespace[name]


FUNCTION_KEYS = sorted(k for k, code in recorded_solutions().items() if code.lstrip().startswith("def "))


def _scramble(value, generator: torch.Generator) -> bool:
    """Change ``value`` in place so that any answer computed from it changes; True if anything was changed."""
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            if value.is_floating_point():
                value.copy_(torch.randn(value.shape, generator=generator, dtype=value.dtype) * 3 + 1)
            else:
                value.zero_()
        return True
    if isinstance(value, nn.Module):
        for p in value.parameters():
            _scramble(p, generator)
        return True
    if isinstance(value, list) and len(value) > 1:
        value[:] = [value[-1]] * len(value)  # every entry the same: counts, digits and names all change
        return True
    if isinstance(value, dict):
        for k in value:
            value[k] = torch.zeros(1, 1)  # other shapes, other values
        return bool(value)
    if dataclasses.is_dataclass(value):
        changed = [_scramble(getattr(value, f.name), generator) for f in dataclasses.fields(value)]
        return any(changed)
    return False


@pytest.mark.parametrize("key", FUNCTION_KEYS)
def test_a_function_that_changes_its_inputs_cannot_make_its_answer_right(key, capsys):
    """The cheat scrambles every input it is given, then answers correctly for the scrambled inputs: a
    check that computed what it expects after the call, from the same objects, would say Correct."""
    reference = _reference_function(key)
    generator = torch.Generator().manual_seed(0)
    scrambled = []

    def cheat(*args):
        scrambled.append(any([_scramble(a, generator) for a in args]))
        return reference(*args)

    question = _question(key)
    result = question.check(cheat)
    line = capsys.readouterr().out
    if key in SCALAR_INPUTS:
        assert not any(scrambled) and result, line  # nothing to change: it is the honest function
        return
    assert any(scrambled), f"{key}: the cheat found nothing to change"
    assert not result, line
    assert line.startswith("Incorrect"), line
    assert question.check(reference), capsys.readouterr().out  # and the checks' own inputs are intact


def test_the_cheat_covers_every_function_question():
    assert len(FUNCTION_KEYS) >= 25
    assert "nb02.q2" in FUNCTION_KEYS and SCALAR_INPUTS <= set(FUNCTION_KEYS)


def test_a_cheat_that_zeroes_the_inputs_of_lora_forward_fails(capsys):
    """The reported case: zero x, W0, A and B, and return zeros, which is right for zeroed inputs."""

    def zero_everything(x, W0, lora_A, lora_B, scaling):
        for t in (x, W0, lora_A, lora_B):
            t.zero_()
        return torch.zeros(x.shape[0], W0.shape[0], dtype=x.dtype)

    assert not nb02.q2.check(zero_everything)
    assert "wrong values" in capsys.readouterr().out


def test_freeze_all_but_lora_may_not_remove_the_factors(capsys):
    """Removing the parametrizations leaves no LoRA factor to freeze wrongly, and nothing trainable."""
    from torch.nn.utils import parametrize

    def remove_and_freeze(model):
        for module in model.modules():
            if parametrize.is_parametrized(module):
                parametrize.remove_parametrizations(module, "weight")
        for p in model.parameters():
            p.requires_grad_(False)

    assert not nb04.q3.check(remove_and_freeze)
    assert "changed the model's parameters" in capsys.readouterr().out


def test_lora_plus_groups_may_not_freeze_what_it_leaves_out(capsys):
    from lora_teach.course.exercises import nb08

    def freeze_all_but_one(model, lr, ratio):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        for _, p in named[1:]:
            p.requires_grad_(False)
        return [{"params": [named[0][1]], "lr": lr}]

    assert not nb08.q1.check(freeze_all_but_one)
    assert "changed the model" in capsys.readouterr().out


def test_call_student_passes_copies_unless_told_not_to():
    x = torch.ones(3)
    call_student(lambda t: t.zero_(), x, name="f")
    assert torch.equal(x, torch.ones(3))
    call_student(lambda t: t.zero_(), x, name="f", copies=False)
    assert torch.equal(x, torch.zeros(3))


# ---------------------------------------------------------------- SystemExit and friends


def _exits(*args):
    raise SystemExit(3)


@pytest.mark.parametrize("key", FUNCTION_KEYS)
def test_a_function_raising_system_exit_is_incorrect_not_an_exit(key, capsys):
    assert not _question(key).check(_exits)
    line = capsys.readouterr().out
    assert line.startswith("Incorrect") and "SystemExit" in line, line


class _Hostile:
    """A value whose every conversion raises SystemExit."""

    def __float__(self):
        raise SystemExit(1)

    __int__ = __index__ = __bool__ = __float__

    def __eq__(self, other):
        raise SystemExit(1)

    __hash__ = None


@pytest.mark.parametrize("question", [nb00.q1, nb01.q1, nb01.q2, nb03.q1, nb06.q2])
def test_a_value_raising_system_exit_is_incorrect_not_an_exit(question, capsys):
    assert not question.check(*[_Hostile()] * question._checker.__code__.co_argcount)
    assert capsys.readouterr().out.startswith("Incorrect")


def test_keyboard_interrupt_still_stops_a_check():
    def interrupted(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nb02.q2.check(interrupted)


# ---------------------------------------------------------------- number types


def test_a_fraction_is_a_number(capsys):
    assert nb01.q1.check(Fraction(2))
    assert nb06.q2.check(Fraction(1, 4), Fraction(2))
    assert nb00.q1.check(Fraction(784))
    capsys.readouterr()
    assert not nb01.q1.check(Fraction(5, 2))
    assert "should be a number" not in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [True, "2", b"2", 2j, None])
def test_bools_strings_and_complex_numbers_are_not_numbers(wrong, capsys):
    assert not nb01.q1.check(wrong)
    assert "should be a number" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("question", "function"),
    [
        (nb01.q3, lambda S, r: str(((S[r:] ** 2).sum().sqrt()).item())),
        (nb02.q4, lambda L, d, r, n, b: str(L * n * 2 * d * r * b)),
    ],
)
def test_a_function_returning_the_right_number_as_a_string_is_incorrect(question, function, capsys):
    assert not question.check(function)
    assert "should return a number, got '" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("question", "function"),
    [
        (nb01.q3, lambda S, r: float("nan")),
        (nb02.q4, lambda L, d, r, n, b: float("nan")),
        (nb01.q3, lambda S, r: torch.tensor(float("nan"))),
        (nb06.q3, lambda S, f: float("nan")),
    ],
)
def test_nan_gets_its_own_message_never_too_low(question, function, capsys):
    assert not question.check(function)
    line = capsys.readouterr().out
    assert "too low" not in line and "too few" not in line and "too high" not in line, line
    assert "finite" in line or "whole number" in line, line


# ---------------------------------------------------------------- float types


def _converted(reference, dtype):
    def convert(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        if isinstance(value, (tuple, list)):
            return type(value)(convert(v) for v in value)
        return value

    return lambda *args: convert(reference(*args))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("key", FUNCTION_KEYS)
def test_a_right_answer_in_either_float_type_is_checked_and_passes(key, dtype, capsys):
    """float32 for float64 inputs and float64 for float32 ones: compared in float64, never "could not be
    checked"."""
    result = _question(key).check(_converted(_reference_function(key), dtype))
    line = capsys.readouterr().out
    assert result, line


def test_lora_weight_names_an_in_place_add(capsys):
    def add_in_place(weight, lora_A, lora_B, scaling):
        return weight.add_(scaling * lora_B @ lora_A)

    assert not nb04.q2.check(add_in_place)
    assert "W.add_(...)" in capsys.readouterr().out


def test_nb04_labels_name_the_question_as_the_other_notebooks_do():
    for question in (nb04.q1, nb04.q2, nb04.q3):
        assert question.name.startswith("q") and " " in question.name, question.name


# ---------------------------------------------------------------- nb03.q1: counts of any numeric type


@pytest.mark.parametrize(
    "convert",
    [
        lambda c: torch.tensor(c),
        lambda c: torch.tensor(c).float(),
        lambda c: torch.tensor(c).double(),
        lambda c: np.array(c, dtype=np.float64),
        lambda c: np.array(c),
        lambda c: [float(v) for v in c],
        lambda c: tuple(c),
    ],
)
def test_train_counts_of_any_numeric_type_pass(convert, capsys):
    assert nb03.q1.check(convert(nb03.TRAIN_COUNTS)), capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong",
    [
        torch.tensor(nb03.TRAIN_COUNTS).float() + 0.5,
        torch.tensor(nb03.TEST_COUNTS).float(),
        [str(v) for v in nb03.TRAIN_COUNTS],
        torch.tensor(nb03.TRAIN_COUNTS).reshape(2, 5),
        [float("nan")] * 10,
    ],
)
def test_train_counts_that_are_wrong_stay_wrong(wrong, capsys):
    assert not nb03.q1.check(wrong)
    assert capsys.readouterr().out.startswith("Incorrect")


# ---------------------------------------------------------------- nb00.q2: the prompt's images, any size


def test_ink_fraction_written_for_28_x_28_only_is_told_to_count_the_image(capsys):
    assert not nb00.q2.check(lambda image: (image > 0).sum().item() / 784)
    line = capsys.readouterr().out
    assert "divides by 28 x 28" in line


def test_ink_fraction_is_tried_on_28_x_28_images_and_smaller_ones():
    sizes = {tuple(image.shape) for image in nb00._q2_images()}
    assert (28, 28) in sizes and len(sizes) >= 3


def test_the_prompt_of_ink_fraction_says_any_size():
    import json
    from pathlib import Path

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "00_welcome_and_setup.ipynb"
    cells = json.loads(notebook.read_text())["cells"]
    prompt = next(
        "".join(c["source"]) for c in cells if "Write `ink_fraction(image)`" in "".join(c["source"])
    )
    assert "any height and width" in prompt and "a 28 x 28 `uint8`\ntensor" not in prompt


def _shifted(reference, dtype):
    """The right answer in ``dtype``, every floating value moved by 0.5: wrong, and still checkable."""

    def shift(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype) + 0.5
        if isinstance(value, (tuple, list)):
            return type(value)(shift(v) for v in value)
        if isinstance(value, float):
            return value + 0.5
        return value

    return lambda *args: shift(reference(*args))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("key", [k for k in FUNCTION_KEYS if k not in ("nb04.q3", "nb08.q1")])
def test_a_wrong_answer_in_either_float_type_is_told_what_is_wrong(key, dtype, capsys):
    """A wrong float answer of either type gets a reason, never "could not be checked"; the two questions
    left out return nothing to shift (a model changed in place, groups of parameters)."""
    result = _question(key).check(_shifted(_reference_function(key), dtype))
    line = capsys.readouterr().out
    if key in ("nb11.q1", "nb11.q4", "nb04.q1", "nb02.q4", "nb03.q3", "nb10.q4", "nb07.q2", "nb06.q3"):
        return  # answers that hold no float (counts, names, bytes) or whose shifted value is still checked
    assert not result, line
    assert line.startswith("Incorrect") and "could not be checked" not in line, line
