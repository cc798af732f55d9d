"""lora-teach grade: a synthetic class of one small notebook (notebook 00's two questions), each run boxed
and its answers re-checked outside the kernel; submissions and the instructor's notebook are left byte for
byte as they were. Attacks are in test_grade_hostile.py."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import nbformat
import pytest
import torch

from lora_teach import cli
from lora_teach.course import colab, grade
from lora_teach.course.editions import student_notebook
from lora_teach.course.grading import answers, box, recheck, snapshot

needs_bwrap = pytest.mark.skipif(
    box.bwrap() is None,
    reason="bubblewrap (bwrap) is not installed or cannot make a box here; .ci/run installs it",
)

NAME = "00_welcome_and_setup.ipynb"  # named as a course notebook, but small: two nb00 questions
Q1 = """\
# BEGIN SOLUTION
pixels_per_image = 28 * 28
# END SOLUTION
nb00.q1.check(pixels_per_image)"""
Q2 = """\
def ink_fraction(image):
    # BEGIN SOLUTION
    return (image > 0).float().mean().item()
    # END SOLUTION


nb00.q2.check(ink_fraction)"""


def _notebook(*sources: str) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell("# 00 · A tiny exercise notebook")]
    cells.append(nbformat.v4.new_code_cell(colab.setup_cell_source()))
    cells.append(nbformat.v4.new_code_cell("from lora_teach.course.exercises import ____, nb00"))
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def _write(path: Path, notebook: nbformat.NotebookNode) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def _hashes(*folders: Path) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """The instructor's folder: one notebook with both solutions."""
    _write(tmp_path / "course" / NAME, _notebook(Q1, Q2))
    return tmp_path / "course"


def _class(tmp_path: Path) -> Path:
    """alice: complete; bob: the untouched student edition; carol: a wrong q1 and a cell that raises
    before q2; dave: a cell that never ends between q1 and q2; erin: a q2 cell that raises, then a hang."""
    subs = tmp_path / "submissions"
    _write(subs / "alice" / NAME, _notebook(Q1, Q2))
    _write(subs / "bob" / NAME, student_notebook(_notebook(Q1, Q2)))
    _write(
        subs / "carol" / NAME, _notebook("nb00.q1.check(100 * 100)", "raise ValueError('carol was here')", Q2)
    )
    _write(subs / "dave" / NAME, _notebook(Q1, "while True:\n    pass", Q2))
    _write(subs / "erin" / NAME, _notebook(Q1, "undefined_helper\n" + Q2, "while True:\n    pass"))
    return subs


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return {(row["student"], row["question"]): row for row in csv.DictReader(file)}


@pytest.mark.slow
@needs_bwrap
def test_grading_a_class_records_each_outcome_in_about_five_runs(tmp_path, course, capsys):
    subs = _class(tmp_path)
    before = _hashes(subs, course)
    alone = tmp_path / "alone"
    _write(alone / "alice" / NAME, _notebook(Q1, Q2))
    start = time.monotonic()
    grade.grade_class(alone, course, timeout=60, progress=False)
    single = time.monotonic() - start

    timeout = 20
    out = tmp_path / "grades.csv"
    start = time.monotonic()
    argv = ["grade", str(subs), "--out", str(out), "--notebooks", str(course), "--timeout", str(timeout)]
    assert cli.main(argv) == 0
    elapsed = time.monotonic() - start

    rows = _rows(out)
    assert list(next(csv.reader(out.open()))) == grade.COLUMNS
    status = {key: row["status"] for key, row in rows.items()}
    assert status == {
        ("alice", "nb00.q1"): "correct",
        ("alice", "nb00.q2"): "correct",
        ("bob", "nb00.q1"): "not_attempted",
        ("bob", "nb00.q2"): "not_attempted",
        ("carol", "nb00.q1"): "incorrect",
        ("carol", "nb00.q2"): "correct",  # the grader went on past the cell that raised
        ("dave", "nb00.q1"): "correct",
        ("dave", "nb00.q2"): "timeout",
        ("erin", "nb00.q1"): "correct",
        ("erin", "nb00.q2"): "not_run",  # its cell raised before the hang: the error, not "timeout"
    }
    assert rows[("erin", "nb00.q2")]["feedback"] == (
        "the check never ran; cell 5 raised NameError: name 'undefined_helper' is not defined"
    )
    assert rows[("carol", "nb00.q1")]["feedback"].startswith("Incorrect (q1 numbers in one image)")
    hung = rows[("dave", "nb00.q2")]["feedback"]
    assert f"time limit of {timeout} s (still running cell 5)" in hung, hung  # cell 5 is the loop
    assert {row["run"] for key, row in rows.items() if key[0] in ("dave", "erin")} == {"timed out"}
    assert {row["run"] for key, row in rows.items() if key[0] in ("alice", "bob", "carol")} == {"ran"}
    assert rows[("alice", "nb00.q1")]["title"] == "q1 numbers in one image"

    summary = (tmp_path / "grades_feedback" / "carol.md").read_text()
    assert "# Feedback for carol" in summary and "1 of 2 exercises correct" in summary
    assert "| q1 numbers in one image | incorrect | Incorrect (q1 numbers in one image)" in summary
    terminal = capsys.readouterr()
    assert "carol: 1 of 2 correct (1 incorrect)" in terminal.out
    assert "Traceback" not in terminal.out + terminal.err and "IPKernelApp" not in terminal.out + terminal.err
    log = (tmp_path / "grades_feedback" / "logs" / "dave.log").read_text()
    assert "running over TCP" in log and "Traceback" not in log  # interrupted, then shut down cleanly

    assert _hashes(subs, course) == before, "the grader changed a submission or the instructor's notebook"
    # five runs of one notebook, two of them cut at the time limit
    expected = 5 * single + 2 * timeout
    print(f"one student {single:.1f} s; class of 5 {elapsed:.1f} s; 5 runs + 2 limits {expected:.1f} s")
    assert elapsed < 1.5 * expected + 10, (elapsed, single)


@needs_bwrap
def test_invalid_json_gives_error_rows_and_the_next_notebook_goes_on(tmp_path, course):
    subs = tmp_path / "submissions"
    (subs / "frank").mkdir(parents=True)
    (subs / "frank" / NAME).write_text('{"cells": [', encoding="utf-8")
    (subs / "gina").mkdir()  # handed in nothing
    rows = grade.grade_class(subs, course, timeout=30, progress=False)
    assert [(r.student, r.question, r.status, r.run) for r in rows] == [
        ("frank", "nb00.q1", "error", "error"),
        ("frank", "nb00.q2", "error", "error"),
        ("gina", "nb00.q1", "missing", "missing"),
        ("gina", "nb00.q2", "missing", "missing"),
    ]
    assert rows[0].feedback.startswith("not a valid notebook file")


def test_an_existing_out_file_is_kept_without_force(tmp_path, course, capsys):
    subs = tmp_path / "submissions"
    _write(subs / "alice" / NAME, _notebook(Q1, Q2))
    out = tmp_path / "grades.csv"
    out.write_text("last term's grades\n")
    assert cli.main(["grade", str(subs), "--out", str(out), "--notebooks", str(course)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "last term's grades\n"


def test_submissions_must_be_a_folder(tmp_path, course, capsys):
    argv = ["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.csv"), "--notebooks", str(course)]
    assert cli.main(argv) == 2
    assert "SUBMISSIONS" in capsys.readouterr().err and not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_timeout_must_be_finite_and_positive(tmp_path, course, capsys, value):
    argv = ["grade", str(tmp_path), "--out", str(tmp_path / "g.csv"), "--timeout", value]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--timeout" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(grade.GradeError, match="--timeout must be a finite positive number"):
        grade.grade_class(tmp_path, course, timeout=float(value) if value != "soon" else 0)


def test_notebooks_folder_must_hold_notebooks(tmp_path):
    with pytest.raises(grade.GradeError, match="--notebooks .* holds no notebooks"):
        grade.grade_class(tmp_path, tmp_path / "empty")


def test_no_course_notebook_in_the_submissions_is_an_error(tmp_path, course):  # refused before any run
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    (tmp_path / "subs" / "alice" / "homework.ipynb").write_text("{}")
    with pytest.raises(grade.GradeError, match="no file in .* is named like a course notebook"):
        grade.grade_class(tmp_path / "subs", course)


def test_a_renamed_download_still_matches_its_course_notebook():
    course = ["00_welcome_and_setup.ipynb", "01_rank_and_decomposition.ipynb"]
    assert grade.match_notebook("01_rank_and_decomposition (1).ipynb", course) == course[1]
    assert grade.match_notebook("01_rank_and_decomposition.ipynb", course) == course[1]
    assert grade.match_notebook("Copy of 01.ipynb", course) is None


def test_questions_come_from_the_instructors_check_calls(course):
    questions = grade.course_questions(course / NAME)
    assert [(q.key, q.title) for q in questions] == [
        ("nb00.q1", "q1 numbers in one image"),
        ("nb00.q2", grade._title("nb00", "q2")),
    ]


@pytest.mark.parametrize(
    "out, why",
    [
        ("grades.ipynb", "is a notebook name"),
        ("folder", "is a folder"),
        ("afile/grades.csv", "which is a file"),
        ("submissions/grades.csv", "is inside SUBMISSIONS"),
        ("course/grades.csv", "is inside --notebooks"),
        ("old.csv", "already exists; pass --force"),
    ],
)
def test_outputs_are_refused_in_one_line_before_anything_runs(tmp_path, course, capsys, out, why):
    subs = tmp_path / "submissions"
    _write(subs / "alice" / NAME, _notebook(Q1, Q2))
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "old.csv").write_text("last term's grades\n")
    argv = ["grade", str(subs), "--out", str(tmp_path / out), "--notebooks", str(course)]
    start = time.monotonic()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - start < 5  # refused before the heavy imports and before any student runs
    assert (tmp_path / "old.csv").read_text() == "last term's grades\n"
    assert not (tmp_path / "grades_feedback").exists()


def test_grade_refuses_without_bwrap_unless_no_sandbox(tmp_path, course, capsys, monkeypatch):
    monkeypatch.setattr(box, "bwrap", lambda: None)
    subs = tmp_path / "submissions"
    _write(subs / "alice" / NAME, _notebook(Q1, Q2))
    assert cli.main(["grade", str(subs), "--out", str(tmp_path / "g.csv"), "--notebooks", str(course)]) == 2
    err = capsys.readouterr().err
    assert (
        "apt-get install bubblewrap" in err and "--no-sandbox" in err and len(err.strip().splitlines()) == 1
    )


def test_snapshot_refuses_symlinks_by_name_and_states_the_duplicate_rule(tmp_path):
    subs = tmp_path / "subs"
    (subs / "mallory").mkdir(parents=True)
    (subs / "mallory" / NAME).symlink_to("/etc/passwd")
    (subs / "sam").mkdir()
    (subs / "sam" / "00_welcome_and_setup (1).ipynb").write_text("one")
    (subs / "sam" / "00_welcome_and_setup (2).ipynb").write_text("two")
    (subs / "trent").symlink_to(subs / "sam")
    students = {s.name: s for s in snapshot.snapshot(subs, [NAME], tmp_path / "copy")}
    assert students["mallory"].refused[NAME] == f"{NAME} is a symbolic link; it was not read"
    assert students["sam"].files[NAME].read_text() == "two"  # the highest browser copy number wins
    assert students["sam"].notes == [
        f"2 files for {NAME}: graded 00_welcome_and_setup (2).ipynb, set aside 00_welcome_and_setup (1).ipynb"
    ]
    assert "symbolic link" in students["trent"].refused[NAME] and not students["trent"].files


def _run_dir(tmp_path: Path, lines: list[str]) -> grade.NotebookRun:
    out = tmp_path / "out"
    (out / "answers" / "a1").mkdir(parents=True)
    (out / "run.json").write_text('{"ended": "ok", "reason": "", "cell_errors": [], "hung_cell": null}')
    (out / "events.jsonl").write_text("\n".join(lines) + "\n")
    run = grade.NotebookRun()
    grade._read_run(out, run, box.Finished(0, 1.0), 10)
    return run


def test_events_are_read_defensively(tmp_path):
    good = (
        '{"notebook": "nb00", "question": "q1", "status": "correct", "message": "Correct", "answers": "a1"}'
    )
    assert _run_dir(tmp_path / "a", [good]).outcomes == {"nb00.q1": ("correct", "Correct")}
    for junk in ["{not json", good.replace('"correct"', '"totally_correct"'), good.replace("q1", "../q1")]:
        run = _run_dir(tmp_path / str(abs(hash(junk))), [good, junk])
        assert run.ended == "error" and not run.outcomes and "tampered" in run.reason


def test_kernel_and_recheck_disagreeing_is_a_mismatch():
    questions = [grade.Question("nb00", "q1", "q1")]
    run = grade.NotebookRun(outcomes={"nb00.q1": ("correct", "Correct (q1)")})
    run.rechecked = {"nb00.q1": ("incorrect", "`pixels_per_image` is too low")}
    (row,) = grade.rows_for_run("mallory", NAME, questions, run)
    assert row.status == "mismatch" and "re-checked outside the notebook: incorrect" in row.feedback
    run.rechecked = {"nb00.q1": ("correct", "")}
    assert grade.rows_for_run("alice", NAME, questions, run)[0].status == "correct"


def _recheck(tmp_path: Path, key: str, *values) -> list[str]:
    answers.dump(values, tmp_path / "a1")
    (tmp_path / "items.json").write_text(f'[{{"key": "{key}", "folder": "{tmp_path / "a1"}"}}]')
    recheck.main([str(tmp_path / "items.json"), str(tmp_path / "results.json")])
    import json

    return json.loads((tmp_path / "results.json").read_text())[key]


def test_answers_round_trip_as_data(tmp_path):
    values = (
        3,
        2.5,
        float("nan"),
        "x",
        [1, (2, 3)],
        {"a": torch.arange(6).reshape(2, 3)},
        torch.ones(2).double(),
    )
    answers.dump(values, tmp_path / "a")
    back = answers.load(tmp_path / "a")
    assert back[:2] == (3, 2.5) and back[2] != back[2] and back[3:5] == ("x", [1, (2, 3)])
    assert torch.equal(back[5]["a"], torch.arange(6).reshape(2, 3)) and back[6].dtype == torch.float64


def test_a_function_that_hard_codes_the_visible_inputs_fails_on_hidden_ones(tmp_path):
    import importlib.util

    source = tmp_path / "student.py"  # a student's "solution" that only knows the five visible images
    source.write_text(
        "def ink_fraction(image):\n"
        "    table = {(784, 60): 60 / 784, (784, 784): 1.0, (4, 1): 0.25, (6, 0): 0.0, (12, 4): 4 / 12}\n"
        "    return table[image.numel(), int(image.bool().sum())]\n"
    )
    spec = importlib.util.spec_from_file_location("student", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hardcoded = module.ink_fraction
    from lora_teach.course.exercises import nb00

    assert nb00.q2._checker(hardcoded)  # the visible check passes it
    status, message = _recheck(tmp_path, "nb00.q2", hardcoded)
    assert status == "incorrect" and "hidden inputs" in message

    def ink_fraction(image):
        return (image > 0).float().mean().item()

    assert _recheck(tmp_path / "honest", "nb00.q2", ink_fraction)[0] == "correct"


def test_a_check_the_hang_prevented_is_timeout_and_one_an_error_prevented_is_not_run():
    run = grade.NotebookRun(ended="timeout", reason="stopped (still running cell 6)", hung_cell=6)
    run.check_cells = {"nb00.q1": 4, "nb00.q2": 8}
    run.cell_errors = [(3, "NameError: name 'x' is not defined")]
    questions = [grade.Question("nb00", "q1", "q1"), grade.Question("nb00", "q2", "q2")]
    q1, q2 = grade.rows_for_run("erin", NAME, questions, run)
    assert (q1.status, q1.feedback) == (
        "not_run",
        "the check never ran; cell 3 raised NameError: name 'x' is not defined",
    )
    assert (q2.status, q2.feedback, q2.run) == ("timeout", "stopped (still running cell 6)", "timed out")


def test_missing_baselines_are_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    course = tmp_path / "course"
    _write(course / "01_rank_and_decomposition.ipynb", _notebook("model = pretrained_digitsnet('corrected')"))
    subs = tmp_path / "submissions"
    _write(subs / "alice" / "01_rank_and_decomposition.ipynb", _notebook("x = 1"))
    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path / "no_checkpoints"))
    out = tmp_path / "results" / "grades.csv"
    assert cli.main(["grade", str(subs), "--out", str(out), "--notebooks", str(course)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "notebook 01 loads the trained baselines" in err
    assert "--build-checkpoints" in err and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "option, value",
    [("--memory", "10M"), ("--memory", "lots"), ("--max-processes", "3"), ("--max-processes", "x")],
)
def test_limits_are_checked_in_one_line(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as stop:
        cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "g.csv"), option, value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and option in err and len(err.strip().splitlines()) == 1


def test_a_check_keeps_the_answers_it_was_given_for_the_grader():
    from lora_teach.course.exercises import nb00

    nb00.q1.check(28 * 28)
    assert nb00.q1.last_answers == (784,)


def test_no_sandbox_is_warned_in_the_terminal_and_in_every_row(tmp_path, course, capsys):
    subs = tmp_path / "submissions"
    (subs / "frank").mkdir(parents=True)
    (subs / "frank" / NAME).write_text('{"cells": [', encoding="utf-8")  # quick to run: not a notebook
    out = tmp_path / "grades.csv"
    argv = [
        "grade",
        str(subs),
        "--out",
        str(out),
        "--notebooks",
        str(course),
        "--no-sandbox",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert "warning: --no-sandbox" in capsys.readouterr().err
    rows = list(_rows(out).values())
    assert rows and all("not boxed (--no-sandbox)" in row["feedback"] for row in rows)


def _broken_class(tmp_path: Path) -> Path:
    subs = tmp_path / "submissions"
    for student in ("frank", "gina"):
        (subs / student).mkdir(parents=True)
        (subs / student / NAME).write_text('{"cells": [', encoding="utf-8")  # quick: not a notebook
    return subs


@needs_bwrap
def test_rows_are_on_disk_as_each_student_finishes(tmp_path, course):
    partial = tmp_path / "grades.csv.partial"

    def crash_after_the_first(student, rows, notes):
        raise RuntimeError("the grader crashed")

    with pytest.raises(RuntimeError):
        grade.grade_class(
            _broken_class(tmp_path),
            course,
            30,
            progress=False,
            partial=partial,
            on_student=crash_after_the_first,
        )
    assert {row["student"] for row in _rows(partial).values()} == {"frank"}


@needs_bwrap
def test_a_csv_written_meanwhile_by_another_grader_is_kept(tmp_path, course, capsys, monkeypatch):
    out = tmp_path / "grades.csv"
    append = grade.append_rows

    def other_grader_writes_too(path, rows):
        append(path, rows)
        if not out.exists():
            out.write_text("the other grader's rows\n")

    monkeypatch.setattr(grade, "append_rows", other_grader_writes_too)
    argv = [
        "grade",
        str(_broken_class(tmp_path)),
        "--out",
        str(out),
        "--notebooks",
        str(course),
        "--no-progress",
    ]
    assert cli.main(argv) == 1
    assert out.read_text() == "the other grader's rows\n"
    assert "appeared while grading" in capsys.readouterr().err
    assert len(_rows(tmp_path / "grades.csv.partial")) == 4


def test_what_a_box_wrote_is_read_without_following_links(tmp_path):
    out = tmp_path / "out"
    (out / "answers" / "a1").mkdir(parents=True)
    (out / "answers" / "a1" / "answers.json").write_text("[]")
    (out / "answers" / "a2").symlink_to("/etc")  # a student's link to the instructor's files
    (out / "answers" / "a1" / "x.npy").symlink_to("/etc/passwd")
    (out / "run.json").symlink_to("/etc/passwd")
    grade.copy_answers(out / "answers", tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*")) == ["a1", "answers.json"]
    run = grade.NotebookRun()
    grade._read_run(out, run, box.Finished(0, 1.0), 10)
    assert run.ended == "error" and "malformed" in run.reason and "root" not in run.reason
