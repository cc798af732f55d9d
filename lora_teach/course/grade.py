"""``lora-teach grade SUBMISSIONS --out grades.csv``: run each student's notebooks in a box of their
own (``grading.box``), take every checked answer out as data, and grade it by re-running the reference
check outside the student's kernel (``grading.recheck``). One CSV row per student, notebook and question,
appended as each student finishes, plus a Markdown summary per student to send back.

Only the standard library is imported at the top, so that bad arguments are refused at once."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lora_teach.course.grading import box
from lora_teach.course.grading.snapshot import Student, snapshot
from lora_teach.course.grading.snapshot import match_notebook as match_notebook  # re-exported

# Every status a row can have; the first three come from the checks themselves.
STATUSES = (
    "correct",
    "incorrect",
    "not_attempted",
    "mismatch",
    "not_run",
    "error",
    "timeout",
    "missing",
)
CHECK_STATUSES = ("correct", "incorrect", "not_attempted")
COLUMNS = ["student", "notebook", "question", "title", "status", "feedback", "run"]
DEFAULT_TIMEOUT = 900.0
CHECK_CALL = re.compile(r"\b(nb\d\d)\.(q\d+)\.check\(")
RECHECK_WALL = 300.0  # seconds a re-check may take
BASELINES = [f"digitsnet-{v}-seed{s}.pt" for v in ("original", "corrected") for s in (0, 1, 2)]
UNBOXED = "not boxed (--no-sandbox): this student's code ran with the grader's permissions"


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
    run: str = ""

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in COLUMNS}


@dataclass
class NotebookRun:
    """What one boxed run gave, read defensively: the last outcome and answers of each question, the
    cells that raised, and how the run ended ("ok", "timeout" or "error", with a one-line reason)."""

    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # "nb01.q2" -> (status, message)
    answers: dict[str, Path] = field(default_factory=dict)  # "nb01.q2" -> its answers' folder
    rechecked: dict[str, tuple[str, str]] = field(default_factory=dict)
    cell_errors: list[tuple[int, str]] = field(default_factory=list)
    check_cells: dict[str, int] = field(default_factory=dict)  # "nb01.q2" -> the cell that checks it
    ended: str = "ok"
    reason: str = ""
    hung_cell: int | None = None
    seconds: float = 0.0


def _first_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------- what each notebook asks


def course_questions(notebook_path: Path) -> list[Question]:
    """The questions the instructor's notebook checks (``nbXX.qN.check(...)`` calls), in order."""
    import nbformat

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
    import importlib

    try:
        question = getattr(importlib.import_module(f"lora_teach.course.exercises.{module}"), attribute)
    except (ImportError, AttributeError):
        return f"{module}.{attribute}"
    return str(getattr(question, "name", f"{module}.{attribute}"))


def _check_cells(path: Path) -> dict[str, int]:
    """question -> the first cell (the student's numbering, from 1) that checks it."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        cells = cells if isinstance(cells, list) else []
    except (ValueError, AttributeError):
        return {}
    found: dict[str, int] = {}
    for index, cell in enumerate(cells, start=1):
        source = cell.get("source", "") if isinstance(cell, dict) else ""
        source = "".join(source) if isinstance(source, list) else str(source)
        for module, attribute in CHECK_CALL.findall(source):
            found.setdefault(f"{module}.{attribute}", index)
    return found


# ---------------------------------------------------------------- one notebook, boxed


@dataclass
class Setup:
    """How every run of this grading is made: boxed or not, the limits, what a box may read."""

    timeout: float
    limits: box.Limits
    sandbox: bool
    readable: list[Path]
    env: dict[str, str]


def make_setup(timeout: float, limits: box.Limits | None = None, sandbox: bool = True) -> Setup:
    """The box's view: the system, Python, the installed ``lora_teach`` and the course's data."""
    import lora_teach
    from lora_teach.data import data_root
    from lora_teach.experiment import checkpoint_dir

    package = Path(lora_teach.__file__).resolve().parent
    data, checkpoints = data_root(), checkpoint_dir().resolve()
    readable = box.readable_roots([package, data, checkpoints])
    env = {"LORA_TEACH_DATA": str(data), "LORA_TEACH_CHECKPOINTS": str(checkpoints), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(package.parent)
    return Setup(timeout, limits or box.Limits(), sandbox, readable, box.box_env(env))


def _command(
    setup: Setup, argv: list[str], binds: dict[str, Path], readonly: dict[str, Path] | None = None
) -> list[str]:
    if setup.sandbox:
        return box.box_command(argv, binds, setup.readable, setup.env, readonly)
    return argv


def run_notebook(path: Path, setup: Setup, work: Path, log: Path) -> NotebookRun:
    """Run the private copy at ``path`` in a box (``work`` is this run's scratch folder), then re-check
    its answers in another; the file at ``path`` itself is only read."""
    result = NotebookRun(check_cells=_check_cells(path))
    start = time.monotonic()
    (work / "nb").mkdir(parents=True)
    (work / "out").mkdir()
    shutil.copyfile(path, work / "nb" / path.name)
    inside = {"/box/nb": work / "nb", "/box/out": work / "out"} if setup.sandbox else {}
    nb_dir = "/box/nb" if setup.sandbox else str(work / "nb")
    out_dir = "/box/out" if setup.sandbox else str(work / "out")
    argv = [sys.executable, "-m", "lora_teach.course.grading.runner", f"{nb_dir}/{path.name}", out_dir]
    argv.append(repr(setup.timeout))
    command = _command(setup, argv, inside)
    finished = box.run_limited(command, setup.limits, setup.timeout + 180, log, boxed=setup.sandbox)
    _read_run(work / "out", result, finished, setup.timeout)
    _recheck(setup, work, result, log)
    result.seconds = time.monotonic() - start
    return result


def _read_run(out: Path, result: NotebookRun, finished: box.Finished, timeout: float) -> None:
    """Fill ``result`` from the box's files, trusting none of them: a malformed file is an error."""
    try:
        run = json.loads(_read_small(out / "run.json"))
        ended, reason = str(run["ended"]), _first_line(run["reason"])
        if ended not in ("ok", "timeout", "error"):
            raise ValueError(ended)
        result.ended, result.reason = ended, reason
        result.hung_cell = int(run["hung_cell"]) if run.get("hung_cell") is not None else None
        result.cell_errors = [(int(i), _first_line(e, 160)) for i, e in run["cell_errors"]]
    except FileNotFoundError:
        if finished.returncode is None:
            result.ended = "timeout"
            cell = _int_file(out / "current_cell")
            where = f" (still running cell {cell})" if cell else ""
            result.hung_cell = cell
            result.reason = f"stopped after the notebook's time limit of {timeout:g} s{where}"
        else:
            result.ended = "error"
            result.reason = f"the run ended without a report (exit status {finished.returncode}); see the log"
    except (ValueError, TypeError, KeyError, OSError):
        result.ended, result.reason = (
            "error",
            "the run's report was malformed (changed from inside the notebook?)",
        )
    try:
        lines = _read_small(out / "events.jsonl").splitlines()
    except FileNotFoundError:
        lines = []
    except (OSError, ValueError):
        lines = ["<unreadable>"]
    for line in lines:
        try:
            record = json.loads(line)
            key = f"{record['notebook']}.{record['question']}"
            status, message = str(record["status"]), _first_line(record["message"])
            if status not in CHECK_STATUSES or not re.fullmatch(r"nb\d\d\.q\d+", key):
                raise ValueError(status)
        except (ValueError, TypeError, KeyError):
            result.ended = "error"
            result.reason = "the record of the checks was tampered with (a line the grader did not write)"
            result.outcomes.clear()
            result.answers.clear()
            return
        result.outcomes[key] = (status, message)
        folder = record.get("answers")
        if isinstance(folder, str) and re.fullmatch(r"a\d+", folder):
            result.answers[key] = out / "answers" / folder
        else:
            result.answers.pop(key, None)


def _read_small(path: Path, limit: int = 16 << 20) -> str:
    """A file the box wrote: never through a symbolic link, a regular file, at most ``limit`` bytes."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise ValueError(f"{path.name} is not a small regular file")
        return os.read(descriptor, limit + 1).decode("utf-8")
    finally:
        os.close(descriptor)


def _int_file(path: Path) -> int | None:
    try:
        return int(_read_small(path)[:12])
    except (OSError, ValueError):
        return None


def copy_answers(source: Path, target: Path, limit: int = 256 << 20) -> None:
    """Copy the answers the box wrote into a folder of the grader's: only regular files and folders,
    never through a symbolic link, at most ``limit`` bytes in all (the rest is left out)."""
    target.mkdir()
    if source.is_symlink() or not source.is_dir():
        return
    budget = [limit]

    def walk(here: Path, there: Path, depth: int) -> None:
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.is_symlink() or not re.fullmatch(r"[\w.-]{1,64}", entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False) and depth < 3:
                    (there / entry.name).mkdir()
                    walk(Path(entry.path), there / entry.name, depth + 1)
                elif entry.is_file(follow_symlinks=False):
                    try:
                        data = _read_small(Path(entry.path), budget[0]).encode("utf-8")
                    except (OSError, ValueError):
                        data = _read_bytes(Path(entry.path), budget[0])
                    if data is not None:
                        budget[0] -= len(data)
                        (there / entry.name).write_bytes(data)

    walk(source, target, 0)


def _read_bytes(path: Path, limit: int) -> bytes | None:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= info.st_size:
            chunk = os.read(descriptor, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def _has_function(folder: Path) -> bool:
    try:
        return '"t": "function"' in _read_small(folder / "answers.json")
    except (OSError, ValueError):
        return False


def _recheck(setup: Setup, work: Path, result: NotebookRun, log: Path) -> None:
    """Re-check the answers outside the kernel: data answers in one fresh box (no student code runs
    there), function answers in another; each reads a copy the grader made (no link the student
    planted is followed), mounted read-only."""
    if not result.answers:
        return
    answers = work / "answers"
    copy_answers(work / "out" / "answers", answers)
    groups: dict[str, list[str]] = {"data": [], "functions": []}
    for key, folder in result.answers.items():
        groups["functions" if _has_function(answers / folder.name) else "data"].append(key)
    for group, keys in groups.items():
        if not keys:
            continue
        scratch = work / f"recheck-{group}"
        scratch.mkdir()
        answers_dir = "/box/answers" if setup.sandbox else str(answers)
        items = [{"key": k, "folder": f"{answers_dir}/{result.answers[k].name}"} for k in keys]
        (scratch / "items.json").write_text(json.dumps(items), encoding="utf-8")
        inside = {"/box/recheck": scratch} if setup.sandbox else {}
        where = "/box/recheck" if setup.sandbox else str(scratch)
        argv = [
            sys.executable,
            "-m",
            "lora_teach.course.grading.recheck",
            f"{where}/items.json",
            f"{where}/results.json",
        ]
        command = _command(setup, argv, inside, {"/box/answers": answers})
        box.run_limited(command, setup.limits, RECHECK_WALL, log, boxed=setup.sandbox)
        try:
            found = json.loads(_read_small(scratch / "results.json"))
            for key in keys:
                status, message = found[key]
                if status not in (*CHECK_STATUSES, "unchecked"):
                    raise ValueError(status)
                result.rechecked[key] = (str(status), _first_line(message))
        except (OSError, ValueError, TypeError, KeyError):
            for key in keys:
                result.rechecked[key] = ("unchecked", "the re-check outside the notebook did not finish")


def run_status(run: NotebookRun) -> str:
    """The ``run`` column: ran, timed out or error."""
    return {"ok": "ran", "timeout": "timed out"}.get(run.ended, "error")


def rows_for_run(student: str, notebook: str, questions: list[Question], run: NotebookRun) -> list[GradeRow]:
    """One row per question of the instructor's notebook: the re-checked outcome of its last check
    (``mismatch`` when the student's kernel said otherwise); otherwise why it was never checked."""
    rows = []
    ran = run_status(run)
    for question in questions:
        key = question.key
        if key in run.outcomes:
            status, message = _final(run.outcomes[key], run.rechecked.get(key))
        else:
            status, message = _unchecked(key, run)
        rows.append(GradeRow(student, notebook, key, question.title, status, message, ran))
    if not questions:
        status = run.ended if run.ended != "ok" else "not_run"
        rows.append(
            GradeRow(student, notebook, "", "", status, run.reason or "this notebook has no checks", ran)
        )
    return rows


def _final(kernel: tuple[str, str], rechecked: tuple[str, str] | None) -> tuple[str, str]:
    said, said_message = kernel
    if rechecked is None:
        return "error", f"no answer reached the re-check (in the notebook: {said_message})"
    status, message = rechecked
    if status == "unchecked":
        return "error", f"{message} (in the notebook: {said_message})"
    if status != said:
        return (
            "mismatch",
            f"re-checked outside the notebook: {status}: {message} | in the notebook: {said_message}",
        )
    return status, said_message


def _unchecked(key: str, run: NotebookRun) -> tuple[str, str]:
    """Why a question has no check: the time limit cut the run before its cell, or an earlier cell
    raised (then the error is named), or the run failed."""
    cell = run.check_cells.get(key)
    if run.ended == "timeout" and (cell is None or run.hung_cell is None or cell >= run.hung_cell):
        return "timeout", run.reason  # the hang came first: this check's cell never started
    if run.ended == "error":
        return "error", run.reason
    errors = [f"cell {i} raised {e}" for i, e in run.cell_errors if cell is None or i <= cell]
    if errors:  # the check's cell, or one before it, raised (even if a later cell then hung)
        return (
            "not_run",
            f"the check never ran; {errors[-1] if cell in (i for i, _ in run.cell_errors) else errors[0]}",
        )
    return "not_run", "the check never ran" + ("" if cell else " (the notebook has no such check cell)")


# ---------------------------------------------------------------- outputs, checked first


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_outputs(out: Path, feedback: Path, submissions: Path, notebooks: Path | None, force: bool) -> None:
    """Refuse, before anything runs, an output the grader must not or cannot write."""
    if out.suffix == ".ipynb":
        raise GradeError(f"--out {out} is a notebook name; name the CSV, for example grades.csv")
    if out.is_dir():
        raise GradeError(f"--out {out} is a folder; name a CSV file, for example {out}/grades.csv")
    if feedback.exists() and not feedback.is_dir():
        raise GradeError(f"--feedback {feedback} is a file; name a folder for the summaries")
    for option, path in (("--out", out), ("--feedback", feedback)):
        for folder, what in ((submissions, "SUBMISSIONS"), (notebooks, "--notebooks")):
            if _inside(path, folder):
                raise GradeError(f"{option} {path} is inside {what} ({folder}); write it somewhere else")
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise GradeError(f"{option} {path} is under {ancestor}, which is a file; choose another {option}")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise GradeError(
                f"{option} {path} cannot be written ({ancestor} is not writable); choose another {option}"
            )
    if not force:
        for path in (out, feedback, _partial(out)):
            if path.exists():
                raise GradeError(
                    f"{path} already exists; pass --force to overwrite it, or choose another --out"
                )


def _partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _logs(feedback: Path) -> Path:
    return feedback / "logs"


def check_checkpoints(notebooks: Path, graded: list[str]) -> None:
    """Refuse when a graded notebook loads trained baselines that are not built yet: training them in
    every student's run would take minutes each (and a box cannot save them)."""
    from lora_teach.experiment import checkpoint_dir

    users = [n for n in graded if "pretrained_digitsnet" in (notebooks / n).read_text(encoding="utf-8")]
    missing = [name for name in BASELINES if not (checkpoint_dir() / name).exists()]
    if users and missing:
        raise GradeError(
            f"notebook{'s' if len(users) > 1 else ''} {', '.join(n[:2] for n in users)} "
            f"load{'' if len(users) > 1 else 's'} the trained baselines and {checkpoint_dir()} lacks "
            f"{len(missing)} of them ({missing[0]}, ...); build them once (about a minute) with "
            "lora-teach grade ... --build-checkpoints, or run the course notebooks once"
        )


def build_checkpoints() -> None:
    from lora_teach.experiment import pretrained_digitsnet

    for name in BASELINES:
        _, variant, seed = name.removesuffix(".pt").split("-")
        print(f"building the baseline {name} (once, before grading)", flush=True)
        pretrained_digitsnet(variant, int(seed.removeprefix("seed")), progress=False)


# ---------------------------------------------------------------- a class


def grade_class(
    submissions: Path | str,
    notebooks: Path | str | None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    sandbox: bool = True,
    limits: box.Limits | None = None,
    partial: Path | None = None,
    logs: Path | None = None,
    on_student=None,
) -> list[GradeRow]:
    """Grade every student's notebooks; the notebooks graded are the course notebooks anyone submitted.
    Rows are appended to ``partial`` (a CSV) as each student finishes; ``on_student(name, rows, notes)``
    is called then too."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise GradeError(f"--timeout must be a finite positive number of seconds, got {timeout:g}")
    from lora_teach.course.editions import find_notebooks

    try:
        notebooks = Path(notebooks) if notebooks is not None else find_notebooks()
    except FileNotFoundError as error:
        raise GradeError(str(error)) from error
    course_paths = sorted(notebooks.glob("*.ipynb")) if notebooks.is_dir() else []
    if not course_paths:
        raise GradeError(f"--notebooks {notebooks} holds no notebooks; pass the course's notebooks folder")
    course = [p.name for p in course_paths]
    submissions = Path(submissions)
    if submissions.is_symlink() or not submissions.is_dir():
        raise GradeError(
            f"SUBMISSIONS {submissions} is not a folder; pass the folder that holds one folder per student"
        )
    with tempfile.TemporaryDirectory(prefix="lora-teach-grade-") as tmp:
        private = Path(tmp)
        os.chmod(private, 0o700)
        students = snapshot(submissions, course, private / "snapshot")
        if not students:
            raise GradeError(
                f"SUBMISSIONS {submissions} holds no student folders; put each student's notebooks in a folder named after them"
            )
        graded = [n for n in course if any(n in s.files or n in s.refused for s in students)]
        if not graded:
            raise GradeError(
                f"no file in {submissions}/*/ is named like a course notebook (such as {course[0]})"
            )
        check_checkpoints(notebooks, graded)
        questions = {name: course_questions(notebooks / name) for name in graded}
        setup = make_setup(timeout, limits, sandbox)
        rows: list[GradeRow] = []
        logs = logs or private / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for number, student in enumerate(students, start=1):
            if progress:  # on a terminal: a line that the student's result line then replaces
                print(
                    f"\r[{number}/{len(students)}] running {student.name}'s notebooks ...",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            mine = _grade_student(student, graded, questions, setup, private / f"run-{number}", logs)
            if not sandbox:
                for row in mine:
                    row.feedback = f"{row.feedback} [{UNBOXED}]"
            rows += mine
            if partial is not None:
                append_rows(partial, mine)
            if on_student is not None:
                on_student(student.name, mine, student.notes)
        return rows


def _grade_student(
    student: Student, graded: list[str], questions: dict, setup: Setup, work: Path, logs: Path
) -> list[GradeRow]:
    rows: list[GradeRow] = []
    log = logs / f"{student.name}.log"
    for index, name in enumerate(graded):
        if name in student.refused:
            why = student.refused[name]
            rows += [
                GradeRow(student.name, name, q.key, q.title, "error", why, "error") for q in questions[name]
            ]
        elif name not in student.files:
            why = f"no {name} in {student.name}/"
            rows += [
                GradeRow(student.name, name, q.key, q.title, "missing", why, "missing")
                for q in questions[name]
            ]
        else:
            with log.open("a", encoding="utf-8") as file:
                file.write(f"==== {name}\n")
            run = run_notebook(student.files[name], setup, work / str(index), log)
            rows += rows_for_run(student.name, name, questions[name], run)
    return rows


# ---------------------------------------------------------------- what gets written


def append_rows(path: Path, rows: list[GradeRow]) -> None:
    """Append ``rows`` to the CSV at ``path`` (with the header when it is new), flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)
        file.flush()
        os.fsync(file.fileno())


def write_csv(rows: list[GradeRow], out: Path) -> None:
    """grades.csv, created exclusively: if the file appears meanwhile (another grader), FileExistsError."""
    with out.open("x", newline="", encoding="utf-8") as file:
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
        lines += [f"## {notebook} ({these[0].run})", "", "| exercise | result | feedback |", "|---|---|---|"]
        for row in these:
            feedback = row.feedback.replace("|", "\\|")
            lines.append(f"| {row.title} | {row.status.replace('_', ' ')} | {feedback} |")
        lines.append("")
    lines += [
        "Results: correct; incorrect (the check says why); not attempted (still a blank); mismatch (your",
        "notebook and the grader's re-check disagree: your instructor will look); not run (the check cell",
        "never ran, often because an earlier cell raised); error or timeout (the notebook could not be read,",
        "crashed, or ran past the time limit); missing (no such notebook was handed in).",
        "",
    ]
    return "\n".join(lines)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected a finite positive number of seconds such as 300, got {text!r}"
        )
    return value


def _memory(text: str) -> int:
    try:
        return box.memory_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _processes(text: str) -> int:
    if not text.isdigit() or int(text) < 16:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 16, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``grade SUBMISSIONS --out grades.csv [--timeout S] [--notebooks FOLDER] [--feedback FOLDER] ...``."""
    parser.add_argument("submissions", type=Path, help="a folder with one folder of notebooks per student")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write (for example grades.csv)")
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
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
        help="folder for one Markdown summary per student and logs/ (default: beside --out, named <out>_feedback)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite --out and the summaries if they exist"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress lines")
    parser.add_argument(
        "--memory",
        type=_memory,
        default=box.Limits.memory,
        help="address space each process of a box may use (default: 8G)",
    )
    parser.add_argument(
        "--max-processes",
        type=_processes,
        default=box.Limits.processes,
        help="processes a box may hold (default: 256)",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run students' code without the bubblewrap box, with your permissions (marked in the CSV)",
    )
    parser.add_argument(
        "--build-checkpoints",
        action="store_true",
        help="train the DigitsNet baselines first if data/checkpoints lacks them (once, about a minute)",
    )


def run(args: argparse.Namespace) -> int:
    """Grade the class, append rows as students finish, then write the CSV (exclusively) and summaries."""
    feedback = args.feedback or args.out.with_name(args.out.stem + "_feedback")
    try:
        check_outputs(args.out, feedback, args.submissions, args.notebooks, args.force)
        if args.no_sandbox:
            print(
                "warning: --no-sandbox: students' code runs with your permissions; every row says so",
                file=sys.stderr,
            )
        elif box.bwrap() is None:
            raise GradeError(
                f"bubblewrap (bwrap) is needed to box each student's run; {box.INSTALL}, or pass --no-sandbox"
            )
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    partial = _partial(args.out)
    if args.force:
        for path in (args.out, partial):
            path.unlink(missing_ok=True)

    progress = not args.no_progress and sys.stderr.isatty()

    def done(student: str, rows: list[GradeRow], notes: list[str]) -> None:
        feedback.mkdir(parents=True, exist_ok=True)
        (feedback / f"{student}.md").write_text(student_summary(student, rows), encoding="utf-8")
        counts = {s: sum(row.status == s for row in rows) for s in STATUSES}
        others = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n and s != "correct")
        note = f"; {'; '.join(notes)}" if notes else ""
        if progress:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        print(
            f"{student}: {counts['correct']} of {len(rows)} correct"
            + (f" ({others})" if others else "")
            + note,
            flush=True,
        )

    try:
        if args.build_checkpoints:
            build_checkpoints()
        rows = grade_class(
            args.submissions,
            args.notebooks,
            args.timeout,
            progress=progress,
            sandbox=not args.no_sandbox,
            limits=box.Limits(args.memory, args.max_processes),
            partial=partial,
            logs=_logs(feedback),
            on_student=done,
        )
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        os.link(partial, args.out)  # exclusive: fails if another grader wrote --out meanwhile
    except FileExistsError:
        print(
            f"error: {args.out} appeared while grading (another grader?); the rows are in {partial}",
            file=sys.stderr,
        )
        return 1
    partial.unlink()
    students = len({row.student for row in rows})
    print(
        f"wrote {args.out} ({len(rows)} rows) and {students} summaries in {feedback}/ (logs in {_logs(feedback)}/)"
    )
    return 0
