"""One source for each solution: the notebook's block. The package's copy agrees with it, q.solution() and the
instructor guide show it, and every solution passes its own check."""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lora_teach.course import solutions
from lora_teach.course.editions import instructor_guide
from lora_teach.course.exercises import Question
from lora_teach.course.solutions import (
    BEGIN,
    CHECK_CALL,
    END,
    SolutionSourceError,
    course_solutions,
    notebook_solutions,
    recorded_solutions,
)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
MODULES = sorted(p.stem for p in (REPO / "lora_teach" / "course" / "exercises").glob("nb*.py"))


def _questions() -> dict[str, Question]:
    found = {}
    for name in MODULES:
        module = importlib.import_module(f"lora_teach.course.exercises.{name}")
        found |= {f"{name}.{attr}": q for attr, q in vars(module).items() if isinstance(q, Question)}
    return found


def test_the_packaged_copy_equals_the_notebooks_solution_blocks():
    assert recorded_solutions() == course_solutions(NOTEBOOKS), (
        "lora_teach/course/exercises/solutions.json is out of date: run `python scripts/sync_solutions.py`"
    )


def test_every_question_has_exactly_one_source_of_its_solution():
    recorded = recorded_solutions()
    questions = _questions()
    for key, question in questions.items():
        given = question._solution is not None
        assert given != (key in recorded), (
            f"{key}: its solution must come from one place, the notebook's block or (a worked example "
            f"with no block) the Question itself; found {'both' if given else 'neither'}"
        )
    assert set(recorded) <= set(questions), (
        f"solution blocks for no exercise: {set(recorded) - set(questions)}"
    )


def test_solution_and_the_guide_show_the_notebooks_code(capsys):
    guide, questions = instructor_guide(NOTEBOOKS), _questions()
    for key, code in recorded_solutions().items():
        question = questions[key]
        question.solution()
        assert capsys.readouterr().out == f"Solution ({question.name}):\n{code}\n"
        assert f"```python\n{code}\n```" in guide, key


def _check_call(key: str) -> str:
    """The notebook's call ``nbNN.qK.check(...)`` of exercise ``key``."""
    notebook, question = key.split(".")
    for path in sorted(NOTEBOOKS.glob(f"{notebook[2:]}_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for line in cell.source.split("\n"):
                match = CHECK_CALL.search(line)
                if match and match.groups() == (notebook, question):
                    return line[match.start() :].split("#")[0].strip()
    raise AssertionError(f"no check call for {key} in the notebooks")


def _notebook_context(key: str) -> dict:
    """The names a solution uses that its notebook defined earlier, built as the notebook builds them."""
    if key == "nb01.q1":
        from lora_teach.course.exercises import nb01

        return {"M": nb01.Q1_MATRIX.clone()}
    if key == "nb03.q1":
        from lora_teach.data import load_mnist

        return {"y_train": load_mnist("train")[1]}
    if key == "nb09.q1":
        from lora_teach.gpt import pretrained_tiny_gpt

        return {"base": pretrained_tiny_gpt()}
    return {}


@pytest.mark.parametrize("key", sorted(recorded_solutions()))
def test_every_solution_as_shown_passes_its_own_check(key, capsys):
    """Run the code ``q.solution()`` prints in a fresh namespace (the usual imports only), then the notebook's
    own check call on what it defined."""
    notebook = key.split(".")[0]
    namespace = {"torch": torch, "math": math, "np": np, "nn": nn, "F": F}
    namespace[notebook] = importlib.import_module(f"lora_teach.course.exercises.{notebook}")
    namespace |= _notebook_context(key)
    exec(recorded_solutions()[key], namespace)  # noqa: S102 - the course's own reference code
    result = eval(_check_call(key), namespace)  # noqa: S307 - the notebook's own check call
    line = capsys.readouterr().out
    assert result, line
    assert line.startswith("Correct"), line


def test_a_wrong_solution_fails_the_same_harness(capsys):
    """The harness above can fail: a wrong answer run the same way is not Correct."""
    namespace = {"torch": torch, "nb05": importlib.import_module("lora_teach.course.exercises.nb05")}
    exec("bias_parameters = 256 + 128", namespace)  # noqa: S102
    assert not eval(_check_call("nb05.q2"), namespace)  # noqa: S307
    assert capsys.readouterr().out.startswith("Incorrect")


# ---------------------------------------------------------------- reading the blocks


def _write(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(notebook, path)
    return path


def test_a_block_belongs_to_the_check_in_its_cell_or_the_next(tmp_path):
    path = _write(
        tmp_path / "03_x.ipynb",
        f"x = 1\n{BEGIN}\nanswer = 42\n{END}\nnb03.q1.check(answer)\n# nb03.q1.hint()",
        f"def f(a):\n    {BEGIN}\n    return a\n    {END}\n\n",
        "nb03.q2.check(f)",
    )
    assert notebook_solutions(path) == {"nb03.q1": "x = 1\nanswer = 42", "nb03.q2": "def f(a):\n    return a"}


def test_a_block_with_no_check_after_it_is_refused(tmp_path):
    path = _write(tmp_path / "03_x.ipynb", f"{BEGIN}\nanswer = 42\n{END}", "print(answer)")
    with pytest.raises(SolutionSourceError, match=r"03_x.ipynb, code cell 1: .*exactly one exercise's check"):
        notebook_solutions(path)


def test_two_blocks_for_one_exercise_are_refused(tmp_path):
    block = f"{BEGIN}\nanswer = 42\n{END}\nnb03.q1.check(answer)"
    path = _write(tmp_path / "03_x.ipynb", block, block)
    with pytest.raises(SolutionSourceError, match=r"code cell 2: a second solution block for nb03.q1"):
        notebook_solutions(path)


def test_a_question_with_no_recorded_solution_says_how_to_record_it(monkeypatch):
    monkeypatch.setattr(solutions, "recorded_solutions", lambda: {})
    from lora_teach.course.exercises import nb05

    assert re.fullmatch(
        r"\(no reference solution is recorded for nb05.q2; run scripts/sync_solutions.py\)", nb05.q2.answer
    )
