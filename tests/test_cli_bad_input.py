"""Every ``lora-teach`` subcommand against a table of bad arguments: exit status 2, one line on
stderr, no traceback, nothing written or changed anywhere, and all before any heavy work.

The table runs in-process (``cli.main``, a second each); a few cases also run as real processes
(``python -m lora_teach.cli``) to show the entry point behaves the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lora_teach import cli

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _sandbox(root: Path) -> None:
    """A small course and some awkward paths: a file, an empty folder, JSON of other tools."""
    course = root / "notebooks"
    course.mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        cell = nbformat.v4.new_code_cell(f"{BEGIN}\nanswer = 42\n{END}\nq.check(answer)")
        nbformat.write(
            nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · A"), cell]), course / name
        )
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a folder\n")
    (root / "guide.md").write_text("the guide as it was\n")
    (root / "empty.json").write_text("{}")
    (root / "foreign.json").write_text(json.dumps({"name": "another-tool", "results": [1, 2]}))
    (root / "list.json").write_text("[1, 2, 3]")
    (root / "broken.json").write_text("{not json")
    (root / "locked").mkdir()
    os.chmod(root / "locked", 0o555)


# (arguments, words the one-line message must contain); paths are relative to the sandbox
CASES = [
    # experiment
    (["experiment", "--alpha", "nan"], "--alpha: expected a finite number"),
    (["experiment", "--alpha", "inf"], "--alpha: expected a finite number"),
    (["experiment", "--alpha=-inf"], "--alpha: expected a finite number"),
    (["experiment", "--alpha", "0"], "switch the adapter off"),
    (["experiment", "--alpha", "one"], "--alpha: expected a finite number"),
    (["experiment", "--rank", "2.5"], "--rank/-r: expected a positive integer"),
    (["experiment", "--rank", "0"], "--rank/-r: expected a positive integer"),
    (["experiment", "--iterations", "0"], "--iterations: expected a positive integer"),
    (["experiment", "--iterations", "-10"], "--iterations: expected a positive integer"),
    (["experiment", "--digits", "2,x"], "--digits: expected digits 0-9"),
    (["experiment", "--digits", "12"], "--digits: expected digits 0-9"),
    (["experiment", "--digits", ","], "--digits: expected digits 0-9"),
    (["experiment", "--seed", "-1"], "--seed: expected a whole number"),
    (["experiment", "--method", "magic"], "invalid choice"),
    (["experiment", "--no-such-option"], "unrecognized arguments"),
    # bench
    (["bench", "--rounds", "0"], "--rounds: expected a positive integer"),
    (["bench", "--repeats", "-1"], "--repeats: expected a positive integer"),
    (["bench", "--steps", "0"], "--steps: expected a positive integer"),
    (["bench", "--epoch-steps", "0"], "--epoch-steps: expected a positive integer"),
    (["bench", "--memory-steps", "0"], "--memory-steps: expected a positive integer"),
    (["bench", "--serving-rounds", "0"], "--serving-rounds: expected a positive integer"),
    (["bench", "--serving-rounds", "2.5"], "--serving-rounds: expected a positive integer"),
    (["bench", "--serving-rounds", "1"], "--serving-rounds: expected at least 2"),
    (["bench", "--latency-width", "0"], "--latency-width: expected a positive integer"),
    (["bench", "--threads", "0"], "--threads: expected positive integers"),
    (["bench", "--widths", "abc"], "--widths: expected positive integers"),
    (["bench", "--only", "speed"], "--only must name figures"),
    (["bench", "--from-json", "empty.json"], "not a saved bench result"),
    (["bench", "--from-json", "foreign.json"], "not a saved bench result"),
    (["bench", "--from-json", "list.json"], "not a saved bench result"),
    (["bench", "--from-json", "broken.json"], "is not JSON"),
    (["bench", "--from-json", "missing.json"], "cannot be read"),
    (["bench", "--plot", "a_file/memory.png"], "is a file, not a folder"),
    (["bench", "--plot", "memory.txt"], "give a file name ending in .png"),
    (["bench", "--plot", "empty"], "is a folder"),
    (["bench", "--plot", "memory.png", "--only", "merged_latency_ratio"], "--plot draws lora_vs_full_step"),
    (["bench", "--full", "--notebooks", "missing"], "--notebooks missing is not a folder"),
    # student-edition
    (["student-edition", "notebooks", "--notebooks", "notebooks"], "inside it"),
    (["student-edition", "notebooks/student", "--notebooks", "notebooks"], "inside it"),
    (["student-edition", "a_file", "--notebooks", "notebooks"], "is a file, not a folder"),
    (["student-edition", "a_file/student", "--notebooks", "notebooks"], "is a file, not a folder"),
    (["student-edition", "student", "--notebooks", "missing"], "is not a folder"),
    (["student-edition", "student", "--notebooks", "empty"], "holds no notebooks"),
    (["student-edition"], "the following arguments are required: OUT_DIR"),
    # instructor-guide
    (["instructor-guide", "guide.md", "--notebooks", "missing"], "is not a folder"),
    (["instructor-guide", "guide.md", "--notebooks", "empty"], "holds no notebooks"),
    (["instructor-guide", "empty", "--notebooks", "notebooks"], "is a folder"),
    (["instructor-guide", "a_file/guide.md", "--notebooks", "notebooks"], "is a file, not a folder"),
    (["instructor-guide", "notebooks/01_a.ipynb", "--notebooks", "notebooks"], "is a notebook"),
    # build-site
    (["build-site", "a_file", "--notebooks", "notebooks"], "is a file, not a folder"),
    (["build-site", "site", "--notebooks", "empty"], "holds no notebooks"),
    (["build-site", "site", "--notebooks", "missing"], "is not a folder"),
    # doctor and the command itself
    (["doctor", "--fix"], "unrecognized arguments"),
    ([], "the following arguments are required: command"),
    (["no-such-command"], "invalid choice"),
]
if not AS_ROOT:  # root may write anywhere, so "no permission" cannot happen to it
    CASES += [
        (["student-edition", "locked/student", "--notebooks", "notebooks"], "no permission"),
        (["instructor-guide", "locked/guide.md", "--notebooks", "notebooks"], "no permission"),
        (["build-site", "locked/site", "--notebooks", "notebooks"], "no permission"),
        (["bench", "--plot", "locked/memory.png"], "no permission"),
    ]


def _snapshot(*folders: Path) -> dict[str, str]:
    return {
        str(path): hashlib.md5(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    } | {str(path): "folder" for folder in folders for path in folder.rglob("*") if path.is_dir()}


@pytest.fixture(scope="module")
def repo_before():
    return _snapshot(REPO / "notebooks", REPO / "docs")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    _sandbox(tmp_path)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    os.chmod(tmp_path / "locked", 0o755)


def _heavy_work(*args, **kwargs):
    raise AssertionError("bad arguments must be refused before any measuring or training")


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES])
def test_bad_arguments_exit_2_with_one_line_and_change_nothing(sandbox, monkeypatch, capsys, argv, words):
    from lora_teach import experiment
    from lora_teach.bench import command as bench_command

    monkeypatch.setattr(bench_command, "_measure", _heavy_work)
    monkeypatch.setattr(experiment, "train_baseline", _heavy_work)
    before = _snapshot(sandbox)
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:  # argparse
        code = exit_info.code
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert words in lines[0] and "Traceback" not in captured.err
    assert _snapshot(sandbox) == before


def test_the_course_files_are_untouched_by_the_table(repo_before):
    assert _snapshot(REPO / "notebooks", REPO / "docs") == repo_before


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["experiment", "--alpha", "nan"], "--alpha: expected a finite number"),
        (["student-edition", "notebooks", "--notebooks", "notebooks"], "inside it"),
        (["bench", "--from-json", "empty.json"], "not a saved bench result"),
    ],
)
def test_the_real_command_gives_the_same_one_line(sandbox, argv, words):
    before = _snapshot(sandbox)
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "lora_teach.cli", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr and "Traceback" not in done.stderr
    assert _snapshot(sandbox) == before
