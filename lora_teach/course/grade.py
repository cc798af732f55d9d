"""``lora-teach grade SUBMISSIONS --out grades.csv``: run each student's notebooks in a fresh kernel and
record every exercise's outcome as the checks themselves report it (one CSV row per student, notebook
and question), plus a Markdown summary per student to send back."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lora_teach.course.editions import find_notebooks
from lora_teach.course.solutions import CHECK_CALL

# Every status a row can have; the first three come from Question.check itself.
STATUSES = ("correct", "incorrect", "not_attempted", "not_run", "error", "timeout", "missing")
COLUMNS = ["student", "notebook", "question", "title", "status", "feedback"]
DEFAULT_TIMEOUT = 900.0

# The cell the grader puts before a copy of the student's notebook: it registers a listener that appends
# one JSON line per check to a file outside the notebook's folder. Nothing printed is ever parsed.
LISTENER_CELL = """\
import json as _grade_json
import lora_teach.course.exercises as _grade_exercises


def _grade_listener(notebook, question, status, message, _path={path!r}):
    record = {{
        "notebook": str(getattr(notebook, "__name__", notebook)),
        "question": str(getattr(question, "name", question)),
        "status": str(status),
        "message": str(message or ""),
    }}
    with open(_path, "a", encoding="utf-8") as _file:
        _file.write(_grade_json.dumps(record) + "\\n")


_grade_exercises.set_check_listener(_grade_listener)
"""


class GradeError(ValueError):
    """A bad argument to the grader; the message names it and the fix."""


@dataclass
class Question:
    """An exercise a notebook checks: ``nb01.q2`` -> module ``nb01``, attribute ``q2``, its title."""

    module: str
    attribute: str
    title: str

    @property
    def key(self) -> str:
        return f"{self.module}.{self.attribute}"


@dataclass
class GradeRow:
    """One line of grades.csv."""

    student: str
    notebook: str
    question: str
    title: str
    status: str
    feedback: str

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in COLUMNS}


@dataclass
class NotebookRun:
    """What running one notebook gave: the last outcome of each question, the cells that raised,
    and how the run ended ("ok", "timeout" or "error", with a one-line reason)."""

    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # "nb01.q2" -> (status, message)
    cell_errors: list[str] = field(default_factory=list)
    ended: str = "ok"
    reason: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------- what each notebook asks


def course_questions(notebook_path: Path) -> list[Question]:
    """The questions the instructor's notebook checks (``nbXX.qN.check(...)`` calls), in order."""
    notebook = nbformat.read(notebook_path, as_version=4)
    seen: dict[str, Question] = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for module, attribute in CHECK_CALL.findall(cell.source):
            key = f"{module}.{attribute}"
            if key not in seen:
                seen[key] = Question(module, attribute, _title(module, attribute))
    return list(seen.values())


def _title(module: str, attribute: str) -> str:
    try:
        question = getattr(importlib.import_module(f"lora_teach.course.exercises.{module}"), attribute)
    except (ImportError, AttributeError):
        return f"{module}.{attribute}"
    return str(getattr(question, "name", f"{module}.{attribute}"))


def match_notebook(name: str, course: list[str]) -> str | None:
    """The course notebook a submitted file is: the same name, else the same two-digit number
    (so ``01_rank_and_decomposition (1).ipynb`` from a browser download still counts)."""
    if name in course:
        return name
    number = re.match(r"(\d\d)[_ -]", name)
    if number:
        same = [c for c in course if c.startswith(number.group(1) + "_")]
        if len(same) == 1:
            return same[0]
    return None


# ---------------------------------------------------------------- running one notebook


def _first_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_notebook(path: Path, timeout: float = DEFAULT_TIMEOUT, kernel_name: str = "python3") -> NotebookRun:
    """Run a copy of the notebook at ``path`` in a fresh kernel, every cell even after one raises, for at
    most ``timeout`` seconds in all; the file itself is only read."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    result = NotebookRun()
    start = time.monotonic()
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one "error" notebook
        result.ended, result.reason = "error", f"not a valid notebook file ({_first_line(error, 120)})"
        return result
    with tempfile.TemporaryDirectory(prefix="lora-teach-grade-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        events = Path(tmp) / "checks.jsonl"
        notebook.cells.insert(0, nbformat.v4.new_code_cell(LISTENER_CELL.format(path=str(events))))
        notebook.metadata["kernelspec"] = {
            "name": kernel_name,
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(notebook, work / path.name)  # only the copy is ever executed
        deadline = [float("inf")]  # the clock starts with the first cell, once the kernel is up

        def started(cell: nbformat.NotebookNode, cell_index: int, **_: object) -> None:
            if cell_index == 0:
                deadline[0] = time.monotonic() + timeout

        client = NotebookClient(
            notebook,
            kernel_name=kernel_name,
            allow_errors=True,
            timeout=max(1, int(timeout)),
            startup_timeout=120,
            resources={"metadata": {"path": str(work)}},
            on_cell_start=started,
        )
        client.timeout_func = lambda cell: max(1, int(deadline[0] - time.monotonic() + 0.999))
        try:
            client.execute()
        except CellTimeoutError:
            result.ended = "timeout"
            cell = _running_cell(notebook)
            where = f" (still running cell {cell})" if cell else ""
            result.reason = f"stopped after the notebook's time limit of {timeout:g} s{where}"
        except DeadKernelError as error:
            result.ended, result.reason = "error", f"the kernel died ({_first_line(error, 120)})"
        except Exception as error:  # noqa: BLE001 - whatever stops a run, the next notebook goes on
            result.ended, result.reason = "error", f"{type(error).__name__}: {_first_line(error, 160)}"
        listener_error = _cell_error(notebook.cells[0])
        if listener_error:
            result.ended = "error"
            result.reason = f"the grader could not register its check listener ({listener_error})"
        for index, cell in enumerate(notebook.cells[1:], start=1):
            error = _cell_error(cell)
            if error:
                result.cell_errors.append(f"cell {index} raised {error}")
        if events.exists():
            for line in events.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                key = ".".join(part for part in (record["notebook"], record["question"]) if part)
                result.outcomes[key] = (record["status"], _first_line(record["message"]))
    result.seconds = time.monotonic() - start
    return result


def _cell_error(cell: nbformat.NotebookNode) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return _first_line(f"{output.get('ename')}: {output.get('evalue')}", 160)
    return ""


def _running_cell(notebook: nbformat.NotebookNode) -> int | None:
    """The 1-based cell (in the student's numbering) that was running when time ran out."""
    for index, cell in enumerate(notebook.cells[1:], start=1):
        if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None:
            return index
    return None


def rows_for_run(student: str, notebook: str, questions: list[Question], run: NotebookRun) -> list[GradeRow]:
    """One row per question: its last checked outcome; otherwise why it was never checked."""
    rows = []
    by_title = {q.title: q for q in questions}
    by_key = {q.key: q for q in questions}
    outcomes = {}
    extra = []
    for reported, outcome in run.outcomes.items():
        question = by_key.get(reported) or by_title.get(reported.partition(".")[2])
        if question is None:
            extra.append((reported, outcome))
        else:
            outcomes[question.key] = outcome
    first_error = run.cell_errors[0] if run.cell_errors else ""
    for question in questions:
        if question.key in outcomes:
            status, message = outcomes[question.key]
        elif run.ended != "ok":
            status, message = run.ended, run.reason
        else:
            status = "not_run"
            message = "the check never ran" + (f"; {first_error}" if first_error else "")
        rows.append(GradeRow(student, notebook, question.key, question.title, status, message))
    for reported, (status, message) in extra:  # a check the instructor's notebook does not make
        rows.append(GradeRow(student, notebook, reported, reported, status, message))
    if not questions and not extra:
        status = run.ended if run.ended != "ok" else "not_run"
        rows.append(GradeRow(student, notebook, "", "", status, run.reason or "this notebook has no checks"))
    return rows


# ---------------------------------------------------------------- a class


def find_submissions(submissions: Path, course: list[str]) -> dict[str, dict[str, Path]]:
    """student -> {course notebook name -> submitted file}; one folder per student."""
    if not submissions.is_dir():
        raise GradeError(
            f"SUBMISSIONS {submissions} is not a folder; pass the folder that holds one folder per student"
        )
    found: dict[str, dict[str, Path]] = {}
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files: dict[str, Path] = {}
        for path in sorted(folder.glob("*.ipynb")):
            name = match_notebook(path.name, course)
            if name is not None and name not in files:
                files[name] = path
        found[folder.name] = files
    if not found:
        raise GradeError(
            f"SUBMISSIONS {submissions} holds no student folders; put each student's notebooks in a folder named after them"
        )
    return found


def grade_class(
    submissions: Path | str,
    notebooks: Path | str | None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> list[GradeRow]:
    """Grade every student's notebooks; the notebooks graded are the course notebooks anyone submitted."""
    from tqdm.auto import tqdm

    if timeout <= 0:
        raise GradeError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    try:
        notebooks = Path(notebooks) if notebooks is not None else find_notebooks()
    except FileNotFoundError as error:
        raise GradeError(str(error)) from error
    course_paths = sorted(notebooks.glob("*.ipynb")) if notebooks.is_dir() else []
    if not course_paths:
        raise GradeError(f"--notebooks {notebooks} holds no notebooks; pass the course's notebooks folder")
    course = [p.name for p in course_paths]
    found = find_submissions(Path(submissions), course)
    graded = [name for name in course if any(name in files for files in found.values())]
    if not graded:
        raise GradeError(f"no file in {submissions}/*/ is named like a course notebook (such as {course[0]})")
    questions = {name: course_questions(notebooks / name) for name in graded}
    rows: list[GradeRow] = []
    bar = tqdm(found.items(), desc="grading", unit="student", disable=not progress)
    for student, files in bar:
        for name in graded:
            bar.set_postfix_str(f"{student}/{name}")
            if name not in files:
                rows += [
                    GradeRow(student, name, q.key, q.title, "missing", f"no {name} in {student}/")
                    for q in questions[name]
                ]
                continue
            rows += rows_for_run(student, name, questions[name], run_notebook(files[name], timeout))
    bar.close()
    return rows


# ---------------------------------------------------------------- what gets written


def write_csv(rows: list[GradeRow], out: Path) -> None:
    """grades.csv: the columns of ``COLUMNS``, one row per student, notebook and question."""
    with out.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)


def student_summary(student: str, rows: list[GradeRow]) -> str:
    """A Markdown page for one student: a score and a table per notebook, with the checker's feedback."""
    mine = [row for row in rows if row.student == student]
    correct = sum(row.status == "correct" for row in mine)
    lines = [f"# Feedback for {student}", "", f"{correct} of {len(mine)} exercises correct.", ""]
    for notebook in dict.fromkeys(row.notebook for row in mine):
        these = [row for row in mine if row.notebook == notebook]
        lines += [f"## {notebook}", "", "| exercise | result | feedback |", "|---|---|---|"]
        for row in these:
            feedback = row.feedback.replace("|", "\\|")
            lines.append(f"| {row.title} | {row.status.replace('_', ' ')} | {feedback} |")
        lines.append("")
    lines += [
        "Results: correct; incorrect (the check says why); not attempted (still a blank); not run (the",
        "check cell never ran, often because an earlier cell raised); error or timeout (the notebook could",
        "not be read, crashed, or ran past the time limit); missing (no such notebook was handed in).",
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``grade SUBMISSIONS --out grades.csv [--timeout S] [--notebooks FOLDER] [--feedback FOLDER] [--force]``."""
    parser.add_argument("submissions", type=Path, help="a folder with one folder of notebooks per student")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write (for example grades.csv)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds each notebook may run in all (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="the instructor's notebooks folder, which names the notebooks and their questions "
        "(default: the nearest notebooks/ here or above)",
    )
    parser.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="folder for one Markdown summary per student (default: beside --out, named <out>_feedback)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite --out and the summaries if they exist"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Grade the class, write the CSV and the summaries, print one line per student."""
    feedback = args.feedback or args.out.with_name(args.out.stem + "_feedback")
    if not args.force:
        existing = [p for p in (args.out, feedback) if p.exists()]
        if existing:
            print(
                f"error: {existing[0]} already exists; pass --force to overwrite it, or choose another --out",
                file=sys.stderr,
            )
            return 2
    try:
        rows = grade_class(args.submissions, args.notebooks, args.timeout, progress=not args.no_progress)
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out)
    feedback.mkdir(parents=True, exist_ok=True)  # only <student>.md files are written there
    students = list(dict.fromkeys(row.student for row in rows))
    for student in students:
        (feedback / f"{student}.md").write_text(student_summary(student, rows), encoding="utf-8")
        mine = [row for row in rows if row.student == student]
        counts = {s: sum(row.status == s for row in mine) for s in STATUSES}
        others = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n and s != "correct")
        print(f"{student}: {counts['correct']} of {len(mine)} correct" + (f" ({others})" if others else ""))
    print(f"wrote {args.out} ({len(rows)} rows) and {len(students)} summaries in {feedback}/")
    return 0
