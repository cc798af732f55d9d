"""The student edition (solutions taken out) and the instructor guide, both made from the notebooks.

``lora-teach student-edition OUT_DIR`` and ``lora-teach instructor-guide OUT_FILE``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import hashlib
import importlib
import json
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


class NotebookReadError(ValueError):
    """A file in the notebooks folder that cannot be read as a notebook."""


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


# Notebook metadata that says a student edition wrote the file, and the hash of what it wrote.
EDITION_KEY = "lora_teach"
# Cell metadata that records a run (timestamps), not content: the edition leaves it out.
RUN_METADATA = ("execution", "ExecuteTime")


def content_hash(notebook: nbformat.NotebookNode) -> str:
    """sha256 of what working on a notebook changes: each cell's type, source and outputs (not the
    metadata Jupyter rewrites on saving)."""
    cells = [[cell.cell_type, cell.source, cell.get("outputs", [])] for cell in notebook.cells]
    return hashlib.sha256(json.dumps(cells, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def student_notebook(notebook: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """A copy with solutions replaced by placeholders, every output, execution count and run timestamp
    cleared, and marked as a student edition (``metadata["lora_teach"]``, with its content hash), so
    that it is the same however often the notebook was run."""
    student = copy.deepcopy(notebook)
    for index, cell in enumerate(student.cells):
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source or END in cell.source:
            cell.source = strip_solutions(cell.source, f"{where}, cell {index}")
        cell.outputs = []
        cell.execution_count = None
    student.metadata.get("language_info", {}).pop("version", None)  # the Python of the last run
    student.metadata[EDITION_KEY] = {"edition": "student", "sha256": content_hash(student)}
    return student


def _read(path: Path, option: str = "--notebooks") -> nbformat.NotebookNode:
    """A notebook of the course, or one line (ValueError) naming the file that is not one."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 - NotJSONError, ValidationError, UnicodeDecodeError, ...
        detail = " ".join(str(error).split())[:120]
        raise NotebookReadError(
            f"{option}: {path} is not a readable notebook ({type(error).__name__}: {detail}); "
            "fix or remove it"
        ) from error


def edition_status(path: Path) -> str:
    """What a file in a student edition's folder is: "unchanged" (an edition wrote it, nobody changed
    it since: safe to replace), "changed" (an edition wrote it, then someone worked in it), "solutions"
    (a notebook with solution blocks), "other" (a notebook no edition wrote) or "not a notebook"."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - whatever it is, it is not ours to overwrite
        return "not a notebook"
    mark = notebook.metadata.get(EDITION_KEY, {})
    if isinstance(mark, dict) and mark.get("edition") == "student":
        return "unchanged" if mark.get("sha256") == content_hash(notebook) else "changed"
    if any(c.cell_type == "code" and (BEGIN in c.source or END in c.source) for c in notebook.cells):
        return "solutions"
    return "other"


WHY_KEPT = {
    "changed": "was changed after the student edition wrote it (someone's work?)",
    "solutions": "still has solutions",
    "other": "was not written by student-edition (someone's handout?)",
    "not a notebook": "is not a notebook",
}


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


def check_not_in_notebooks(out_dir: Path, source_dir: Path, what: str) -> None:
    """Refuse (OutputError) an ``out_dir`` that is the notebooks folder or inside it."""
    source_dir, target = source_dir.resolve(), out_dir.resolve()
    if target == source_dir or source_dir in target.parents:
        raise OutputError(
            f"OUT_DIR {out_dir} is the notebooks folder or inside it; {what} would be written among the "
            "instructor notebooks. Choose another folder, e.g. student/"
        )


def write_student_edition(out_dir: Path | str, notebooks: Path | str | None = None) -> list[Path]:
    """Write the student edition of every ``notebooks/*.ipynb`` into ``out_dir``; return the paths written.

    Refuses (OutputError), before writing anything, an ``out_dir`` that is the notebooks folder or inside
    it, and one where a notebook of the same name is anything but an unchanged earlier edition (see
    ``edition_status``): a student's work is never replaced. All notebooks are made in a temporary folder
    first and then moved in all together, or not at all (``atomic_folder``); other files stay.
    """
    sources = course_notebooks(notebooks)
    out_dir = check_output_dir(out_dir, "OUT_DIR")
    check_not_in_notebooks(out_dir, sources[0].parent, "the student edition")
    for path in sources:
        existing = out_dir / path.name
        if existing.exists() or existing.is_symlink():
            status = edition_status(existing)
            if status != "unchanged":
                raise OutputError(
                    f"{existing} {WHY_KEPT[status]}; it is not replaced. Move it away, or choose another OUT_DIR"
                )
    students = [(path.name, student_notebook(_read(path), path.name)) for path in sources]
    with atomic_folder(out_dir, "OUT_DIR") as tmp:
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
        return "not recorded (store its outputs with `python scripts/execute_notebooks.py`)"
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
GUIDE_SIGNATURE = "# Instructor guide\n\nGenerated by `lora-teach instructor-guide"  # how every guide starts
GUIDE_HEADER = """# Instructor guide

Generated by `lora-teach instructor-guide docs/instructors.md` from the notebooks (learning goals,
run times, and the answers: each notebook's solution block, as `q.solution()` prints it) and from
`lora_teach/course/exercises/nbNN.py` (the exercises). Do not edit it by hand; change the sources, run
`python scripts/sync_solutions.py` if a solution changed, and regenerate it.

## The loop, from a clone of the course

1. **Student edition:** `lora-teach student-edition handout/` (solutions out, outputs cleared).
2. **Hand out** `handout/`: students run it locally (README, "Setup") or upload a notebook to Colab,
   whose first cell installs the package. The repository's `student/` is the same edition, committed:
   the README's learner path and every Colab badge open it.
3. **Collect** the `.ipynb` files, one folder per student: `submissions/alice/01_rank_and_decomposition.ipynb`.
4. **Grade:** `lora-teach grade submissions/ --out grades.csv` runs each notebook in a fresh kernel inside
   a bubblewrap box and re-checks every answer outside the student's kernel, functions also on hidden inputs
   (one CSV row per student, notebook and question; `mismatch` where the kernel and the re-check disagree).
5. **Feedback:** send each student `grades_feedback/<student>.md`, written beside the CSV.

[teaching.md](teaching.md) explains each step, the grader's options, what the box and the re-check
guarantee, and what grading cannot catch (the solutions are public through `q.solution()`).

## Making and handing out the student edition

```bash
lora-teach student-edition student/      # every notebook, solutions replaced by placeholders
```

In the student edition every block between `# BEGIN SOLUTION` and `# END SOLUTION` is gone. At the top
level it becomes `name = ____` for each name the block assigned; inside a function it becomes
`raise NotImplementedError("your code here")`. Outputs and run timestamps are cleared; nothing else
changes. Each check then prints "Not attempted yet" until the student fills the blank, so the notebooks
run from top to bottom as handed out (the test suite runs the student edition of every notebook to make
sure).

`student/` is committed (a test fails when it differs from what this command makes); run the command
again after changing a notebook. It replaces only notebooks that an earlier edition wrote and nobody
changed since (each carries its content hash in its metadata), so it never erases a student's work.
Hand out the folder (step 2 above). Students call `nbNN.qK.hint()`, `nbNN.qK.hint(2)` and
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
        notebook = _read(path)
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
    """``student-edition OUT_DIR`` or ``instructor-guide OUT_FILE [--force]``, plus the notebooks folder."""
    if parser.prog.endswith("instructor-guide"):
        parser.add_argument(
            "out",
            type=Path,
            metavar="OUT_FILE",
            help="the Markdown file to write the guide to, e.g. docs/instructors.md; a file that this "
            "command did not write is not replaced without --force",
        )
        parser.add_argument(
            "--force", action="store_true", help="replace OUT_FILE even if instructor-guide did not write it"
        )
    else:
        parser.add_argument(
            "out",
            type=Path,
            metavar="OUT_DIR",
            help="the folder to write the student edition into, e.g. handout/ (created if needed); it "
            "replaces only notebooks that an earlier student edition wrote and nobody changed since",
        )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="the course's notebooks folder (default: the nearest notebooks/ here or above)",
    )


def written_by_instructor_guide(path: Path) -> bool:
    """Whether the file at ``path`` starts as every generated guide does (``GUIDE_SIGNATURE``)."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(len(GUIDE_SIGNATURE)) == GUIDE_SIGNATURE
    except (OSError, UnicodeDecodeError):
        return False


def write_instructor_guide(out: Path | str, notebooks: Path | str | None = None, force: bool = False) -> Path:
    """Write the instructor guide to ``out``, through a temporary file. Refuses (OutputError) a notebook
    path (any case of ``.ipynb``) and, unless ``force``, an existing file the guide did not write."""
    course_notebooks(notebooks)  # a missing or empty folder is the first thing to say
    out = check_output_file(out, "OUT_FILE")
    if out.suffix.lower() == ".ipynb":
        raise OutputError(f"OUT_FILE {out} is a notebook; the guide is Markdown, e.g. docs/instructors.md")
    if out.exists() and not force and not written_by_instructor_guide(out):
        raise OutputError(
            f"OUT_FILE {out} exists and was not written by instructor-guide; it is not replaced "
            "(choose another file, or pass --force to replace it)"
        )
    return atomic_write_text(out, instructor_guide(notebooks))


def run(args: argparse.Namespace) -> int:
    """Write the student edition or the instructor guide, whichever subcommand was called."""
    try:
        if args.command == "instructor-guide":
            write_instructor_guide(args.out, args.notebooks, force=args.force)
            print(f"wrote {args.out}")
            return 0
        written = write_student_edition(args.out, args.notebooks)
    except (SolutionBlockError, NotebookReadError, OutputError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(f"wrote the student edition of {len(written)} notebooks to {args.out}")
    return 0
