"""lora-teach grade: a synthetic class of one small notebook (notebook 00's two questions), graded from
the checks' own outcomes; submissions and the instructor's notebook are left byte for byte as they were."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import nbformat
import pytest

from lora_teach import cli
from lora_teach.course import colab, grade
from lora_teach.course.editions import student_notebook

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
    before q2; dave: a cell that never ends between q1 and q2."""
    subs = tmp_path / "submissions"
    _write(subs / "alice" / NAME, _notebook(Q1, Q2))
    _write(subs / "bob" / NAME, student_notebook(_notebook(Q1, Q2)))
    _write(
        subs / "carol" / NAME, _notebook("nb00.q1.check(100 * 100)", "raise ValueError('carol was here')", Q2)
    )
    _write(subs / "dave" / NAME, _notebook(Q1, "while True:\n    pass", Q2))
    return subs


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return {(row["student"], row["question"]): row for row in csv.DictReader(file)}


@pytest.mark.slow
def test_grading_a_class_records_each_outcome_and_takes_about_four_runs(tmp_path, course, capsys):
    subs = _class(tmp_path)
    before = _hashes(subs, course)
    start = time.monotonic()
    one = grade.run_notebook(subs / "alice" / NAME, timeout=60)
    single = time.monotonic() - start
    assert one.ended == "ok" and one.outcomes["nb00.q1"][0] == "correct"

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
    }
    assert rows[("carol", "nb00.q1")]["feedback"].startswith("Incorrect (q1 numbers in one image)")
    assert f"time limit of {timeout} s" in rows[("dave", "nb00.q2")]["feedback"]
    assert rows[("alice", "nb00.q1")]["title"] == "q1 numbers in one image"

    summary = (tmp_path / "grades_feedback" / "carol.md").read_text()
    assert "# Feedback for carol" in summary and "1 of 2 exercises correct" in summary
    assert "| q1 numbers in one image | incorrect | Incorrect (q1 numbers in one image)" in summary
    assert "carol: 1 of 2 correct (1 incorrect)" in capsys.readouterr().out

    assert _hashes(subs, course) == before, "the grader changed a submission or the instructor's notebook"
    # four runs of one notebook, one of them cut at the time limit: about 4 single runs plus that limit
    expected = 4 * single + timeout
    print(f"one run {single:.1f} s; class of 4 {elapsed:.1f} s; 4 runs + limit {expected:.1f} s")
    assert elapsed < 1.5 * expected + 5, (elapsed, single)


def test_a_cell_that_raises_leaves_later_unchecked_questions_not_run_with_the_error(tmp_path, course):
    path = _write(tmp_path / "erin" / NAME, _notebook("raise ValueError('erin was here')\n" + Q1, Q2))
    run = grade.run_notebook(path, timeout=60)
    rows = grade.rows_for_run("erin", NAME, grade.course_questions(course / NAME), run)
    assert [(row.question, row.status) for row in rows] == [("nb00.q1", "not_run"), ("nb00.q2", "correct")]
    assert "cell 4 raised ValueError: erin was here" in rows[0].feedback


def test_invalid_json_gives_error_rows_and_the_next_notebook_goes_on(tmp_path, course):
    subs = tmp_path / "submissions"
    (subs / "frank").mkdir(parents=True)
    (subs / "frank" / NAME).write_text('{"cells": [', encoding="utf-8")
    (subs / "gina").mkdir()  # handed in nothing
    rows = grade.grade_class(subs, course, timeout=30, progress=False)
    assert [(r.student, r.question, r.status) for r in rows] == [
        ("frank", "nb00.q1", "error"),
        ("frank", "nb00.q2", "error"),
        ("gina", "nb00.q1", "missing"),
        ("gina", "nb00.q2", "missing"),
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


def test_timeout_must_be_positive(tmp_path, course):
    with pytest.raises(grade.GradeError, match="--timeout must be a positive number of seconds, got 0"):
        grade.grade_class(tmp_path, course, timeout=0)


def test_notebooks_folder_must_hold_notebooks(tmp_path):
    with pytest.raises(grade.GradeError, match="--notebooks .* holds no notebooks"):
        grade.grade_class(tmp_path, tmp_path / "empty")


def test_no_course_notebook_in_the_submissions_is_an_error(tmp_path, course):
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
