"""No exercise's answer appears before the exercise asks for it.

For every check cell ``nbNN.qK.check(...)`` of every notebook, the material a student sees before it
(markdown, code and stored outputs of every earlier cell) must not give the answer away:
- a number shown earlier must not pass the check (for checks of one or two numbers; integers from
  -10 to 10 are too common to count);
- no substantial line of the solution block may appear earlier, in code, prose or output.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CHECK = re.compile(r"^\s*(nb\d\d)\.(q\d+)\.check\((.*)\)\s*$", re.MULTILINE)
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MAX_SINGLE, MAX_PAIR = 400, 120
TRIVIAL = re.compile(r"^(return \w+|\w+ = \w+|pass|else:|try:)$")  # lines too plain to give anything away
COMMON_INTEGERS = range(-10, 11)  # small counts appear everywhere; they cannot single out an answer


def _outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        else:
            parts.append(output.get("data", {}).get("text/plain", ""))
            parts.append(output.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)


def _numbers(text: str) -> list[float | int]:
    seen: dict[float, float | int] = {}
    for match in NUMBER.findall(text):
        try:
            value = float(match.replace(",", ""))
        except ValueError:
            continue
        seen.setdefault(value, int(value) if value.is_integer() and abs(value) < 1e15 else value)
    return list(seen.values())


def _code(line: str) -> str:
    """A line without its indentation and trailing comment."""
    return re.sub(r"(^|\s+)#.*$", "", line).strip()


def _solution(source: str) -> str:
    if BEGIN not in source or END not in source:
        return ""
    return source.split(BEGIN, 1)[1].split(END, 1)[0]


def _exercise_cells():
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            if cell.cell_type != "code":
                continue
            for module, question, args in CHECK.findall(cell.source):
                yield pytest.param(
                    path, cells, index, module, question, args, id=f"{path.stem[:2]}-{question}"
                )


EXERCISES = list(_exercise_cells())


def _before(cells, index) -> tuple[str, str]:
    """(everything shown before cell ``index``, the code and prose alone)."""
    shown, written = [], []
    for cell in cells[:index]:
        written.append(cell.source)
        shown.append(cell.source)
        shown.append(_outputs_text(cell))
    return "\n".join(shown), "\n".join(written)


def _passes(question, *answers) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return bool(question.check(*answers))
        except Exception:  # noqa: BLE001 - a crash on junk is another test's business
            return False


def test_every_notebook_has_exercises():
    assert len({e.values[0] for e in EXERCISES}) == len(NOTEBOOKS)


@pytest.mark.parametrize(("path", "cells", "index", "module", "question", "args"), EXERCISES)
def test_no_number_shown_earlier_passes_the_check(path, cells, index, module, question, args):
    arity = len([a for a in args.split(",") if a.strip()])
    q = getattr(importlib.import_module(f"lora_teach.course.exercises.{module}"), question)
    shown, _ = _before(cells, index)
    numbers = [n for n in _numbers(shown) if n not in COMMON_INTEGERS]
    if arity == 1:
        leaks = [n for n in numbers[:MAX_SINGLE] if _passes(q, n)]
    elif arity == 2:
        leaks = [p for p in itertools.permutations(numbers[:MAX_PAIR], 2) if _passes(q, *p)]
    else:
        pytest.skip(f"{module}.{question} takes {arity} answers that are not plain numbers")
    assert not leaks, f"{path.name}: {module}.{question}'s answer {leaks[0]} is shown before the exercise"


@pytest.mark.parametrize(("path", "cells", "index", "module", "question", "args"), EXERCISES)
def test_no_line_of_the_solution_appears_earlier(path, cells, index, module, question, args):
    solution = _solution(cells[index].source)
    lines = [
        _code(line)
        for line in solution.splitlines()
        if len(_code(line)) >= 12 and not TRIVIAL.match(_code(line))
    ]
    shown, _ = _before(cells, index)
    earlier = {_code(line) for line in shown.splitlines()}
    copied = [line for line in lines if line in earlier]
    assert not copied, f"{path.name}: {module}.{question}'s solution line {copied[0]!r} appears earlier"
