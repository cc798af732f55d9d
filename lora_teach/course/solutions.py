"""Each exercise's reference solution, read from its notebook's ``# BEGIN SOLUTION`` block: the one source.

``scripts/sync_solutions.py`` copies them into ``exercises/solutions.json``, which ``q.solution()`` and the
instructor guide read (a student edition and an installed wheel have no solution blocks to read).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
CHECK_CALL = re.compile(r"\b(nb\d\d)\.(q\d+)\.check\s*\(")
SOLUTIONS_FILE = Path(__file__).resolve().parent / "exercises" / "solutions.json"


class SolutionSourceError(ValueError):
    """A solution block that cannot be tied to exactly one exercise."""


def _shown(source: str) -> str:
    """The code a solution cell shows a student who asks for it: the cell up to its check call, without
    the solution markers, trailing blank lines dropped."""
    lines = []
    for line in source.split("\n"):
        if CHECK_CALL.search(line):
            break
        if line.strip() not in (BEGIN, END):
            lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def notebook_solutions(path: Path | str) -> dict[str, str]:
    """``{"nb03.q2": code, ...}`` for one notebook: each solution block belongs to the exercise whose
    ``nbNN.qK.check(`` is in its own cell or, failing that, in the next code cell."""
    path = Path(path)
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    found: dict[str, str] = {}
    for index, cell in enumerate(cells):
        if BEGIN not in cell.source:
            continue
        checks = CHECK_CALL.findall(cell.source)
        if not checks and index + 1 < len(cells):
            checks = CHECK_CALL.findall(cells[index + 1].source)
        where = f"{path.name}, code cell {index + 1}"
        if len(set(checks)) != 1:
            raise SolutionSourceError(
                f"{where}: a solution block must be followed by exactly one exercise's check "
                f"(`nbNN.qK.check(...)` in its cell or the next), found {len(set(checks))}"
            )
        key = ".".join(checks[0])
        if key in found:
            raise SolutionSourceError(f"{where}: a second solution block for {key}; keep one")
        found[key] = _shown(cell.source)
    return found


def course_solutions(notebooks: Path | str) -> dict[str, str]:
    """Every notebook's solutions, keyed ``"nbNN.qK"``, in course order."""
    solutions: dict[str, str] = {}
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        solutions |= notebook_solutions(path)
    return solutions


def render(solutions: dict[str, str]) -> str:
    """The text of ``solutions.json`` for ``solutions``."""
    return json.dumps(solutions, indent=1, ensure_ascii=False) + "\n"


@functools.cache
def recorded_solutions() -> dict[str, str]:
    """The solutions copied into the package (``{}`` if the file is missing)."""
    if not SOLUTIONS_FILE.is_file():
        return {}
    return json.loads(SOLUTIONS_FILE.read_text(encoding="utf-8"))
