"""The student edition (solutions taken out) and the instructor guide, both made from the notebooks.

``lora-teach student-edition OUT_DIR`` and ``lora-teach instructor-guide OUT_FILE``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import importlib
import re
import sys
from pathlib import Path

import nbformat

from lora_teach.course.solutions import BEGIN, END
from lora_teach.outputs import (
    OutputError,
    atomic_folder,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    error_line,
)

NOT_IMPLEMENTED = 'raise NotImplementedError("your code here")'


class SolutionBlockError(ValueError):
    """A solution block the student edition cannot turn into a placeholder."""


def _assigned_names(block: str, where: str) -> list[str]:
    """Names a top-level block assigns (``a = ...``, ``a, b = ...``, ``a += ...``, ``def a``), in order."""
    try:
        tree = ast.parse(block)
    except SyntaxError as error:
        raise SolutionBlockError(f"{where}: the solution block is not valid Python ({error.msg})") from error
    names: list[str] = []

    def collect(target: ast.AST) -> None:
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                collect(element)
        elif isinstance(target, ast.Starred):
            collect(target.value)

    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                collect(target)
        elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
            collect(statement.target)
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(statement.name)
    unique = list(dict.fromkeys(names))
    if not unique:
        raise SolutionBlockError(
            f"{where}: a top-level solution block must assign the answer variables (e.g. `rank_of_M = ...`), "
            "but this one assigns nothing; move the code into a function or assign its result to a name"
        )
    return unique


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block of a cell's source by a placeholder:
    ``name = ____`` per assigned name at the top level, ``raise NotImplementedError`` when indented."""
    lines = source.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != BEGIN:
            if lines[i].strip() == END:
                raise SolutionBlockError(f"{where}, line {i + 1}: `{END}` without a `{BEGIN}` before it")
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() in (BEGIN, END)), None)
        if end is None or lines[end].strip() != END:
            raise SolutionBlockError(f"{where}, line {i + 1}: `{BEGIN}` without a matching `{END}`")
        block = lines[i + 1 : end]
        if indent:
            out.append(f"{indent}{NOT_IMPLEMENTED}")
        else:
            names = _assigned_names("\n".join(block), f"{where}, line {i + 1}")
            out.extend(f"{name} = ____" for name in names)
        i = end + 1
    return "\n".join(out)


def student_notebook(notebook: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """A copy with solutions replaced by placeholders and every output and execution count cleared."""
    student = copy.deepcopy(notebook)
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source or END in cell.source:
            cell.source = strip_solutions(cell.source, f"{where}, cell {index}")
        cell.outputs = []
        cell.execution_count = None
    return student


def find_notebooks(start: Path | str | None = None) -> Path:
    """The course's ``notebooks/`` folder: the nearest one (holding ``*.ipynb``) in ``start`` (default: the
    working directory) or a folder above it. FileNotFoundError if there is none."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if any((folder / "notebooks").glob("*.ipynb")):
            return folder / "notebooks"
    raise FileNotFoundError(
        f"--notebooks: no notebooks/ folder in {here} or above it; run from the course folder "
        "or pass --notebooks FOLDER"
    )


def course_notebooks(notebooks: Path | str | None = None) -> list[Path]:
    """The ``*.ipynb`` files of the course folder (default: ``find_notebooks()``), in path order;
    FileNotFoundError if the folder is missing or holds none."""
    folder = Path(notebooks) if notebooks is not None else find_notebooks()
    if not folder.is_dir():
        raise FileNotFoundError(f"--notebooks {folder} is not a folder; pass the course's notebooks folder")
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(
            f"--notebooks {folder} holds no notebooks; pass the course's notebooks folder"
        )
    return paths


def has_solutions(path: Path) -> bool:
    """Whether the notebook at ``path`` still holds a solution block (True also when it cannot
    be read as a notebook: such a file is not ours to overwrite)."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable means: do not touch
        return True
    return any(c.cell_type == "code" and (BEGIN in c.source or END in c.source) for c in notebook.cells)


def write_student_edition(out_dir: Path | str, notebooks: Path | str | None = None) -> list[Path]:
    """Write the student edition of every ``notebooks/*.ipynb`` into ``out_dir``; return the paths written.

    Refuses (OutputError) an ``out_dir`` that is the notebooks folder or inside it, and one that
    holds a notebook of the same name that still has solutions. All notebooks are made in a
    temporary folder first, so a failure leaves ``out_dir`` as it was.
    """
    sources = course_notebooks(notebooks)
    out_dir = check_output_dir(out_dir, "OUT_DIR")
    source_dir = sources[0].parent.resolve()
    target = out_dir.resolve()
    if target == source_dir or source_dir in target.parents:
        raise OutputError(
            f"OUT_DIR {out_dir} is the notebooks folder or inside it; the student edition would replace "
            "the instructor notebooks. Choose another folder, e.g. student/"
        )
    kept = [
        out_dir / p.name for p in sources if (out_dir / p.name).exists() and has_solutions(out_dir / p.name)
    ]
    if kept:
        raise OutputError(
            f"{kept[0]} exists and still has solutions (or is not a notebook); it is not overwritten. "
            "Choose another OUT_DIR"
        )
    students = [
        (path.name, student_notebook(nbformat.read(path, as_version=4), path.name)) for path in sources
    ]
    with atomic_folder(out_dir) as tmp:
        for name, student in students:
            nbformat.write(student, tmp / name)
    return [out_dir / name for name, _ in students]


# ---------------------------------------------------------------- the instructor guide


def _title_and_goals(notebook: nbformat.NotebookNode) -> tuple[str, str]:
    """The ``# NN · Title`` line and the learning goals of the first markdown cell (badge dropped)."""
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    if first is None:
        return "(untitled)", ""
    lines = first.source.strip().split("\n")
    title = lines[0].lstrip("#").strip()
    rest = [line for line in lines[1:] if "colab-badge" not in line]
    return title, "\n".join(rest).strip()


def run_seconds(notebook: nbformat.NotebookNode) -> float | None:
    """Seconds the stored outputs took to compute, from the cells' execution timestamps (None if absent)."""
    total, seen = 0.0, False
    for cell in notebook.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start = dt.datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            stop = dt.datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            total += (stop - start).total_seconds()
            seen = True
    return total if seen else None


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded (run it once with `jupyter nbconvert --execute`)"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {seconds / 60:.1f} min"


def _question_prompt(notebook: nbformat.NotebookNode, module: str, attribute: str) -> str:
    """The markdown cell just before the cell that checks ``module.attribute``."""
    call = f"{module}.{attribute}.check("
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and call in cell.source and BEGIN in cell.source:
            for previous in reversed(notebook.cells[:index]):
                if previous.cell_type == "markdown":
                    lines = previous.source.strip().split("\n")
                    headings = [i for i, line in enumerate(lines) if line.startswith("#")]
                    return "\n".join(lines[headings[-1] if headings else 0 :]).strip()
            break
    return ""


def _demote_headings(text: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * max(4, len(m.group(1))) + " ", text, flags=re.MULTILINE)


RUN_TIME_PREFIX = "Run time on CPU (stored outputs): "
GUIDE_HEADER = """# Instructor guide

Generated by `lora-teach instructor-guide docs/instructors.md` from the notebooks (learning goals,
run times, and the answers: each notebook's solution block, as `q.solution()` prints it) and from
`lora_teach/course/exercises/nbNN.py` (the exercises). Do not edit it by hand; change the sources, run
`python scripts/sync_solutions.py` if a solution changed, and regenerate it.

## The loop, from a clone of the course

1. **Student edition:** `lora-teach student-edition handout/` (solutions out, outputs cleared).
2. **Hand out** `handout/`: students run it locally (README, "Setup") or upload a notebook to Colab,
   whose first cell installs the package; not the README's badges, which open the complete notebooks.
3. **Collect** the `.ipynb` files, one folder per student: `submissions/alice/01_rank_and_decomposition.ipynb`.
4. **Grade:** `lora-teach grade submissions/ --out grades.csv` runs each notebook in a fresh kernel and
   records every check's own outcome (one CSV row per student, notebook and question).
5. **Feedback:** send each student `grades_feedback/<student>.md`, written beside the CSV.

[teaching.md](teaching.md) explains each step, the grader's options and what grading cannot catch (a
student can redefine a check; the solutions are public through `q.solution()`).

## Making and handing out the student edition

```bash
lora-teach student-edition student/      # every notebook, solutions replaced by placeholders
```

In the student edition every block between `# BEGIN SOLUTION` and `# END SOLUTION` is gone. At the top
level it becomes `name = ____` for each name the block assigned; inside a function it becomes
`raise NotImplementedError("your code here")`. Outputs are cleared; nothing else changes. Each check
then prints "Not attempted yet" until the student fills the blank, so the notebooks run from top to
bottom as handed out (the test suite runs the student edition of every notebook to make sure).

Hand out the folder `student/` (step 2 above). Students call `nbNN.qK.hint()`, `nbNN.qK.hint(2)` and
`nbNN.qK.solution()`. The solutions ship inside the package (`solutions.json`, copied from the notebooks'
blocks), so they cannot be hidden from a student who has it installed: say how you expect `solution()` to be
used. The run times below were measured when the stored outputs were made; on a student laptop expect the
same order of magnitude.
"""


def instructor_guide(notebooks: Path | str | None = None) -> str:
    """The instructor guide as markdown: per notebook its goals, run time, exercises and answers."""
    from lora_teach.course.exercises import Question

    parts = [GUIDE_HEADER]
    for path in course_notebooks(notebooks):
        notebook = nbformat.read(path, as_version=4)
        title, goals = _title_and_goals(notebook)
        parts.append(f"## {title}\n\n`notebooks/{path.name}`\n")
        parts.append(f"{RUN_TIME_PREFIX}{_format_seconds(run_seconds(notebook))}.\n")
        if goals:
            parts.append(f"Learning goals:\n\n{_demote_headings(goals)}\n")
        module_name = f"nb{path.name[:2]}"
        try:
            module = importlib.import_module(f"lora_teach.course.exercises.{module_name}")
        except ModuleNotFoundError:
            parts.append("No exercises.\n")
            continue
        questions = [(attr, q) for attr, q in vars(module).items() if isinstance(q, Question)]
        parts.append(f"Exercises ({len(questions)}, in `lora_teach/course/exercises/{module_name}.py`):\n")
        for attr, question in questions:
            parts.append(f"### {module_name}.{attr}: {question.name}\n")
            prompt = _question_prompt(notebook, module_name, attr)
            if prompt:
                quoted = "\n".join(
                    f"> {line}" if line else ">" for line in _demote_headings(prompt).split("\n")
                )
                parts.append(f"{quoted}\n")
            parts.append(f"Answer:\n\n```python\n{question.answer}\n```\n")
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``student-edition OUT_DIR`` or ``instructor-guide OUT_FILE``, plus the notebooks folder."""
    parser.add_argument(
        "out", type=Path, help="where to write (a folder for the student edition, a file for the guide)"
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="the course's notebooks folder (default: the nearest notebooks/ here or above)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the student edition or the instructor guide, whichever subcommand was called."""
    try:
        if args.command == "instructor-guide":
            check_output_file(args.out, "OUT_FILE")
            if args.out.suffix == ".ipynb":
                raise OutputError(
                    f"OUT_FILE {args.out} is a notebook; the guide is Markdown, e.g. docs/instructors.md"
                )
            atomic_write_text(args.out, instructor_guide(args.notebooks))
            print(f"wrote {args.out}")
            return 0
        written = write_student_edition(args.out, args.notebooks)
    except (SolutionBlockError, OutputError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(f"wrote the student edition of {len(written)} notebooks to {args.out}")
    return 0
