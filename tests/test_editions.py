"""The student edition (solutions out, placeholders in, nothing else changed) and the instructor guide."""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from lora_teach import cli
from lora_teach.course.editions import (
    BEGIN,
    EDITION_KEY,
    END,
    GUIDE_SIGNATURE,
    RUN_TIME_PREFIX,
    SolutionBlockError,
    content_hash,
    course_notebooks,
    edition_status,
    find_notebooks,
    instructor_guide,
    strip_solutions,
    student_notebook,
    write_student_edition,
)
from lora_teach.outputs import OutputError

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _notebook(*sources: str) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell("# 99 · Test\n\nYou will be able to test.")]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    for cell in cells[1:]:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Correct (q1)!\n")]
        cell.execution_count = 7
    return nbformat.v4.new_notebook(cells=cells)


PLACEHOLDER_LINE = re.compile(r'\s*(raise NotImplementedError\("your code here"\)|\w+ = ____)')


def _without_placeholders(source: str) -> list[str]:
    """The lines of a student source, less the placeholder lines the edition put in."""
    return [line for line in source.split("\n") if not PLACEHOLDER_LINE.fullmatch(line)]


def _outside_solutions(source: str) -> list[str]:
    """The lines of a source that are not inside (or markers of) a solution block."""
    kept, inside = [], False
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif not inside:
            kept.append(line)
    return kept


# ---------------------------------------------------------------- unit tests on small synthetic cells


def test_top_level_block_becomes_name_placeholder():
    source = (
        f"x = 1\n{BEGIN}\nrank_of_M = torch.linalg.matrix_rank(M).item()\n{END}\nnb01.q1.check(rank_of_M)"
    )
    assert strip_solutions(source) == "x = 1\nrank_of_M = ____\nnb01.q1.check(rank_of_M)"


def test_function_body_block_becomes_not_implemented_at_its_indentation():
    source = f"def f(x):\n    y = 2\n    {BEGIN}\n    return x * y\n    {END}\n\nq.check(f)"
    expected = 'def f(x):\n    y = 2\n    raise NotImplementedError("your code here")\n\nq.check(f)'
    assert strip_solutions(source) == expected


def test_nested_indentation_is_kept():
    source = (
        f"class A:\n    def f(self):\n        {BEGIN}\n        if True:\n            return 1\n        {END}"
    )
    assert strip_solutions(source).split("\n")[-1] == '        raise NotImplementedError("your code here")'


def test_multiple_names_each_get_a_placeholder_in_order():
    source = f"{BEGIN}\nfull_params = 512 * 768\nlora_params = 8 * (512 + 768)\nfull_params += 0\n{END}"
    assert strip_solutions(source) == "full_params = ____\nlora_params = ____"


def test_tuple_unpacking_and_annotations():
    source = f"{BEGIN}\nU, (S, Vh) = a, (b, c)\n*rest, last = [1, 2]\ny: int = 3\n{END}"
    assert strip_solutions(source) == "U = ____\nS = ____\nVh = ____\nrest = ____\nlast = ____\ny = ____"


def test_multiline_statement_in_a_block():
    source = f"{BEGIN}\nanswer = sum(\n    [1, 2, 3]\n)\n{END}\ncheck(answer)"
    assert strip_solutions(source) == "answer = ____\ncheck(answer)"


def test_two_blocks_in_one_cell():
    source = f"{BEGIN}\na = 1\n{END}\nprint(a)\ndef g():\n    {BEGIN}\n    return 2\n    {END}"
    assert (
        strip_solutions(source)
        == 'a = ____\nprint(a)\ndef g():\n    raise NotImplementedError("your code here")'
    )


def test_block_without_assignment_is_a_clear_error():
    with pytest.raises(SolutionBlockError, match=r"cell 3, line 2: a top-level solution block must assign"):
        strip_solutions(f"x = 1\n{BEGIN}\nprint('hello')\n{END}", where="cell 3")


@pytest.mark.parametrize(
    "source, words",
    [
        (f"{BEGIN}\na = 1\n", "without a matching"),
        (f"a = 1\n{END}\n", "without a `# BEGIN SOLUTION` before it"),
        (f"{BEGIN}\na = 1\n{BEGIN}\nb = 2\n{END}", "without a matching"),
        (f"{BEGIN}\na = = 1\n{END}", "not valid Python"),
    ],
)
def test_unbalanced_or_broken_blocks_are_clear_errors(source, words):
    with pytest.raises(SolutionBlockError, match=re.escape(words)):
        strip_solutions(source)


def test_student_notebook_clears_outputs_and_changes_nothing_else():
    teacher = _notebook(
        "import torch",
        f"# NBVAL_CHECK_OUTPUT\n{BEGIN}\nanswer = 42\n{END}\nq.check(answer)\n# q.hint()",
        f"def f(x):\n    {BEGIN}\n    return x\n    {END}\nq.check(f)",
    )
    teacher.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-11-30T21:42:17.327192Z"}
    teacher.cells[1].metadata["tags"] = ["nbval-check-output"]
    student = student_notebook(teacher)
    assert teacher.cells[2].outputs, "the teacher's notebook must not be modified"
    assert [c.source for c in student.cells[:2]] == [c.source for c in teacher.cells[:2]]
    for before, after in zip(teacher.cells, student.cells):
        assert _outside_solutions(before.source) == _without_placeholders(after.source)
        assert after.metadata == {k: v for k, v in before.metadata.items() if k != "execution"}
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None
    mark = student.metadata.pop(EDITION_KEY)
    assert mark == {"edition": "student", "sha256": content_hash(student)}
    assert student.metadata == teacher.metadata


def test_cli_student_edition_writes_every_notebook(tmp_path, capsys):
    source = tmp_path / "notebooks"
    source.mkdir()
    for name in ["00_a.ipynb", "01_b.ipynb"]:
        nbformat.write(_notebook(f"{BEGIN}\nx = 1\n{END}"), source / name)
    assert cli.main(["student-edition", str(tmp_path / "out"), "--notebooks", str(source)]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00_a.ipynb", "01_b.ipynb"]
    assert "x = ____" in nbformat.read(tmp_path / "out" / "01_b.ipynb", 4).cells[1].source
    nbformat.write(_notebook(f"{BEGIN}\nprint(1)\n{END}"), source / "02_bad.ipynb")
    assert cli.main(["student-edition", str(tmp_path / "out2"), "--notebooks", str(source)]) == 2
    assert "02_bad.ipynb, cell 1, line 1" in capsys.readouterr().err


# ---------------------------------------------------------------- the real notebooks


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    if not NOTEBOOKS:
        pytest.skip("no notebooks yet")
    out = tmp_path_factory.mktemp("student") / "notebooks"
    write_student_edition(out, REPO / "notebooks")
    return out


def test_no_solution_text_survives_in_the_student_edition(student_dir):
    for path in NOTEBOOKS:
        teacher = nbformat.read(path, 4)
        student = nbformat.read(student_dir / path.name, 4)
        assert len(student.cells) == len(teacher.cells)
        for index, (before, after) in enumerate(zip(teacher.cells, student.cells)):
            where = f"{path.name}, cell {index}"
            assert BEGIN not in after.source and END not in after.source, where
            assert _outside_solutions(before.source) == _without_placeholders(after.source), where
            inside = set(before.source.split("\n")) - set(_outside_solutions(before.source))
            for line in inside - {""}:
                if line.strip() not in (BEGIN, END) and not re.fullmatch(
                    r"\s*(pass|return|\)|\]|\})\s*", line
                ):
                    assert line not in after.source.split("\n"), f"{where}: solution line {line!r} survived"
            if after.cell_type == "code":
                assert after.outputs == [] and after.execution_count is None, where


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_edition_runs_and_every_check_says_not_attempted(student_dir, path, monkeypatch):
    """Runs the committed student edition of one notebook, the learner's copy (the same as a fresh one:
    see test_the_committed_student_edition_is_what_the_command_makes), in a fresh kernel (minutes for the
    long ones)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("LORA_TEACH_DATA", str(REPO / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    work = student_dir.parent / f"run_{path.stem}" / "student"
    shutil.copytree(REPO / "student", work)
    student = nbformat.read(work / path.name, 4)
    client = NotebookClient(
        student, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute(env={**os.environ})  # raises CellExecutionError on the first failing cell
    teacher = nbformat.read(path, 4)
    for index, (before, after) in enumerate(zip(teacher.cells, student.cells)):
        if after.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in after.outputs if o.output_type == "stream")
        assert not any(o.output_type == "error" for o in after.outputs), f"{path.name}, cell {index}"
        assert not re.search(r"^Correct \(", text, flags=re.MULTILINE), f"{path.name}, cell {index}: {text}"
        if BEGIN in before.source and ".check(" in before.source:
            assert "Not attempted yet" in text, f"{path.name}, cell {index} printed {text!r}"


# ---------------------------------------------------------------- the instructor guide


def _without_run_times(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.startswith(RUN_TIME_PREFIX))


def test_committed_instructor_guide_is_up_to_date():
    committed = (REPO / "docs" / "instructors.md").read_text(encoding="utf-8")
    assert _without_run_times(committed) == _without_run_times(instructor_guide(REPO / "notebooks")), (
        "docs/instructors.md is out of date: run `lora-teach instructor-guide docs/instructors.md`"
    )


def test_guide_lists_goals_run_time_and_answers_of_every_notebook():
    guide = instructor_guide(REPO / "notebooks")
    assert "lora-teach student-edition" in guide
    for path in NOTEBOOKS:
        assert f"`notebooks/{path.name}`" in guide
    if any(p.name.startswith("00_") for p in NOTEBOOKS):
        assert "### nb00.q1: q1 numbers in one image" in guide
        assert "pixels_per_image = 28 * 28" in guide
        assert "> An MNIST image is a grid of 28 by 28" in guide
        assert re.search(rf"^{re.escape(RUN_TIME_PREFIX)}about \d", guide, flags=re.MULTILINE)


def test_every_notebook_whose_student_edition_has_blanks_imports_the_blank(student_dir):
    """A top-level blank becomes `name = ____`, which needs `from lora_teach.course.exercises import ____`."""
    for path in NOTEBOOKS:
        student = nbformat.read(student_dir / path.name, 4)
        code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
        if re.search(r"=\s*____\s*$", code, flags=re.MULTILINE):
            assert re.search(r"from lora_teach\.course\.exercises import [^\n]*\b____\b", code), (
                f"{path.name}: its student edition assigns ____ but never imports it"
            )


# ---------------------------------------------------------------- nothing lost (issue 11, items 1 and 2)


def _course(tmp_path: Path) -> Path:
    """A small course folder: two notebooks with solutions."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        nbformat.write(_notebook(f"{BEGIN}\nanswer = 42\n{END}\nq.check(answer)"), folder / name)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", [".", "student", "a/b"])
def test_student_edition_refuses_the_notebooks_folder_or_a_folder_inside_it(tmp_path, capsys, where):
    source = _course(tmp_path)
    before = _snapshot(tmp_path)
    assert cli.main(["student-edition", str(source / where), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: OUT_DIR") and "inside it" in err and err.count("\n") == 1
    assert _snapshot(tmp_path) == before


def test_student_edition_never_overwrites_a_notebook_that_still_has_solutions(tmp_path, capsys):
    source = _course(tmp_path)
    out = tmp_path / "copy"
    shutil.copytree(source, out)  # e.g. a second copy of the instructor notebooks
    before = _snapshot(tmp_path)
    assert cli.main(["student-edition", str(out), "--notebooks", str(source)]) == 2
    assert "still has solutions" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_student_edition_replaces_an_earlier_student_edition(tmp_path, capsys):
    source = _course(tmp_path)
    out = tmp_path / "student"
    assert cli.main(["student-edition", str(out), "--notebooks", str(source)]) == 0
    assert cli.main(["student-edition", str(out), "--notebooks", str(source)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01_a.ipynb", "02_b.ipynb"]


def test_a_student_edition_that_fails_midway_writes_nothing_and_leaves_no_temporary_folder(tmp_path, capsys):
    source = _course(tmp_path)
    nbformat.write(_notebook(f"{BEGIN}\nprint('no assignment')\n{END}"), source / "03_broken.ipynb")
    assert cli.main(["student-edition", str(tmp_path / "student"), "--notebooks", str(source)]) == 2
    assert "must assign" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks"]


@pytest.mark.parametrize("command", ["student-edition", "instructor-guide"])
@pytest.mark.parametrize(
    "notebooks, words", [("missing", "is not a folder"), ("empty", "holds no notebooks")]
)
def test_a_missing_or_empty_notebooks_folder_is_an_error_and_nothing_is_written(
    tmp_path, capsys, command, notebooks, words
):
    (tmp_path / "empty").mkdir()
    guide = tmp_path / "instructors.md"
    guide.write_text("the guide as it was\n")
    out = guide if command == "instructor-guide" else tmp_path / "student"
    assert cli.main([command, str(out), "--notebooks", str(tmp_path / notebooks)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert guide.read_text() == "the guide as it was\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "instructors.md"]


def test_the_guide_is_written_whole_through_a_temporary_file(tmp_path, capsys, monkeypatch):
    source = _course(tmp_path)
    guide = tmp_path / "instructors.md"
    guide.write_text(f"{GUIDE_SIGNATURE} ... an older guide\n")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device", str(guide))

    monkeypatch.setattr(os, "replace", fail)
    assert cli.main(["instructor-guide", str(guide), "--notebooks", str(source)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert guide.read_text() == f"{GUIDE_SIGNATURE} ... an older guide\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instructors.md", "notebooks"]


def test_the_guide_refuses_a_notebook_path(tmp_path, capsys):
    source = _course(tmp_path)
    target = source / "01_a.ipynb"
    before = target.read_bytes()
    assert cli.main(["instructor-guide", str(target), "--notebooks", str(source)]) == 2
    assert "is a notebook" in capsys.readouterr().err
    assert target.read_bytes() == before


# ---------------------------------------------------------------- finding the notebooks (issue 15, item 5)


def test_the_notebooks_are_found_from_the_working_directory_or_a_folder_above(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    nbformat.write(_notebook("x = 1"), tmp_path / "notebooks" / "01_a.ipynb")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")
    assert find_notebooks() == tmp_path / "notebooks"
    assert course_notebooks() == [tmp_path / "notebooks" / "01_a.ipynb"]


def test_without_notebooks_nearby_the_commands_say_to_pass_notebooks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"no notebooks/ folder in .* or above it; .*--notebooks FOLDER"
    ):
        find_notebooks()
    assert cli.main(["student-edition", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --notebooks: no notebooks/ folder") and "\n" not in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the committed student edition (issue 20.5)


def test_the_committed_student_edition_is_what_the_command_makes(student_dir):
    fix = "run `lora-teach student-edition student/` (from the course folder) and commit student/"
    committed = {p.name: p.read_bytes() for p in sorted((REPO / "student").glob("*"))}
    made = {p.name: p.read_bytes() for p in sorted(student_dir.glob("*"))}
    stale = sorted(set(committed) - set(made))
    assert not stale, f"student/ holds {stale}, which no notebook makes any more: delete it"
    missing = sorted(set(made) - set(committed))
    assert not missing, f"student/ lacks {missing}: {fix}"
    outdated = [name for name in made if committed[name] != made[name]]
    assert not outdated, f"student/ is out of date ({', '.join(outdated)}): {fix}"


def _run_again(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as another run stores it: new outputs, counts, timestamps and Python version."""
    again = copy.deepcopy(notebook)
    for number, cell in enumerate(again.cells):
        cell.metadata["execution"] = {"iopub.execute_input": f"2030-01-01T00:00:{number % 60:02d}Z"}
        if cell.cell_type == "code":
            cell.execution_count = number + 100
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"run {number}\n")]
    again.metadata.setdefault("language_info", {})["version"] = "3.99.0"
    return again


def test_the_student_edition_does_not_change_when_a_notebook_is_run_again():
    for path in NOTEBOOKS[:3]:
        notebook = nbformat.read(path, 4)
        assert nbformat.writes(student_notebook(_run_again(notebook))) == nbformat.writes(
            student_notebook(notebook)
        )


# ---------------------------------------------------------------- marked editions (issue 22.3)


def test_a_student_edition_is_marked_with_the_hash_of_its_cells(tmp_path):
    source = _course(tmp_path)
    out = tmp_path / "handout"
    write_student_edition(out, source)
    for path in sorted(out.glob("*.ipynb")):
        assert edition_status(path) == "unchanged"
        assert nbformat.read(path, 4).metadata[EDITION_KEY]["edition"] == "student"


def _work_in(path: Path, change) -> bytes:
    notebook = nbformat.read(path, 4)
    change(notebook)
    nbformat.write(notebook, path)
    return path.read_bytes()


def _fill_in(notebook):
    notebook.cells[1].source = notebook.cells[1].source.replace("answer = ____", "answer = 41")


def _run_cells(notebook):
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="Incorrect (q1)\n")]


def _strip_mark(notebook):
    del notebook.metadata[EDITION_KEY]


@pytest.mark.parametrize(
    "change, words",
    [
        (_fill_in, "was changed after the student edition wrote it"),
        (_run_cells, "was changed after the student edition wrote it"),
        (_strip_mark, "was not written by student-edition"),
    ],
    ids=["filled-in", "run", "unmarked"],
)
def test_a_notebook_someone_worked_in_is_never_replaced(tmp_path, capsys, change, words):
    source = _course(tmp_path)
    out = tmp_path / "alice"
    write_student_edition(out, source)
    worked = _work_in(out / "02_b.ipynb", change)
    before = _snapshot(out)
    assert cli.main(["student-edition", str(out), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out / "02_b.ipynb") in err and words in err, err
    assert _snapshot(out) == before and (out / "02_b.ipynb").read_bytes() == worked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "notebooks"], "no temporary folder left"


def test_an_edition_only_opened_and_saved_in_jupyter_is_still_replaced(tmp_path):
    source = _course(tmp_path)
    out = tmp_path / "handout"
    write_student_edition(out, source)

    def save_in_jupyter(notebook):  # Jupyter rewrites metadata, never the cells' content
        notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "name": "python3"}
        notebook.metadata["language_info"] = {"name": "python", "version": "3.12.1"}
        notebook.cells[1].metadata["collapsed"] = True

    _work_in(out / "01_a.ipynb", save_in_jupyter)
    assert edition_status(out / "01_a.ipynb") == "unchanged"
    write_student_edition(out, source)
    assert "kernelspec" not in nbformat.read(out / "01_a.ipynb", 4).metadata, "replaced by the new edition"


@pytest.mark.parametrize(
    "content, words", [(b"\x00\x01 not json", "is not a notebook"), (b"{}", "is not a notebook")]
)
def test_a_file_that_is_not_a_notebook_is_never_replaced(tmp_path, capsys, content, words):
    source = _course(tmp_path)
    out = tmp_path / "handout"
    out.mkdir()
    (out / "01_a.ipynb").write_bytes(content)
    assert cli.main(["student-edition", str(out), "--notebooks", str(source)]) == 2
    assert words in capsys.readouterr().err
    assert (out / "01_a.ipynb").read_bytes() == content


# ---------------------------------------------------------------- all or nothing (issue 22.4)


def _older_edition(tmp_path: Path, count: int = 5) -> tuple[Path, Path]:
    """A course of ``count`` notebooks and an edition of an older version of it in ``handout/``."""
    source = tmp_path / "notebooks"
    source.mkdir()
    names = [f"{i:02d}_n.ipynb" for i in range(count)]
    for name in names:
        nbformat.write(_notebook(f"{BEGIN}\nanswer = 1\n{END}\nq.check(answer)"), source / name)
    out = tmp_path / "handout"
    write_student_edition(out, source)
    (out / "notes.txt").write_text("the instructor's own file\n")
    for name in names:  # the course changes: every notebook gets a new cell
        notebook = nbformat.read(source / name, 4)
        notebook.cells.append(nbformat.v4.new_markdown_cell("A new paragraph."))
        nbformat.write(notebook, source / name)
    return source, out


def _fail_on_move(monkeypatch, number: int, error: BaseException) -> None:
    """Make the ``number``-th os.replace (from 1) raise ``error``; the others work."""
    real, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == number:
            raise error
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("number", [1, 4, 9])
def test_a_move_that_fails_midway_puts_every_file_back_and_names_out_dir(
    tmp_path, capsys, monkeypatch, number
):
    source, out = _older_edition(tmp_path)
    before = _snapshot(out)
    _fail_on_move(monkeypatch, number, OSError(13, "Permission denied", str(tmp_path / ".handout.x.tmp")))
    assert cli.main(["student-edition", str(out), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: OUT_DIR {out}: could not write") and "Permission denied" in err, err
    assert ".tmp" not in err and err.count("\n") == 1
    assert _snapshot(out) == before, "every old notebook is back, byte for byte"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handout", "notebooks"]


def test_an_interrupt_midway_puts_every_file_back(tmp_path, monkeypatch):
    source, out = _older_edition(tmp_path)
    before = _snapshot(out)
    _fail_on_move(monkeypatch, 6, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_student_edition(out, source)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handout", "notebooks"]


def test_a_new_out_dir_that_fails_midway_is_not_left_behind(tmp_path, monkeypatch):
    source = _course(tmp_path)
    _fail_on_move(monkeypatch, 2, OSError(28, "No space left on device"))
    with pytest.raises(OutputError, match="No space left on device"):
        write_student_edition(tmp_path / "new", source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks"]


def test_a_new_edition_replaces_the_old_one_and_keeps_other_files(tmp_path):
    source, out = _older_edition(tmp_path)
    write_student_edition(out, source)
    assert (out / "notes.txt").read_text() == "the instructor's own file\n"
    for path in sorted(source.glob("*.ipynb")):
        assert nbformat.read(out / path.name, 4).cells[-1].source == "A new paragraph."


# ---------------------------------------------------------------- the commands' help and the guide (22.5, 20.17)


def test_each_command_describes_its_own_out(capsys):
    with pytest.raises(SystemExit):
        cli.main(["student-edition", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "OUT_DIR" in text and "the folder to write the student edition into" in text
    assert "guide" not in text and "a file for" not in text
    with pytest.raises(SystemExit):
        cli.main(["instructor-guide", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "OUT_FILE" in text and "the Markdown file to write the guide to" in text and "--force" in text
    assert "student edition" not in text


def test_the_guide_never_replaces_a_page_it_did_not_write(tmp_path, capsys):
    source = _course(tmp_path)
    page = tmp_path / "notes.md"
    page.write_text("# My teaching notes\n\nWritten by hand.\n")
    assert cli.main(["instructor-guide", str(page), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert "was not written by instructor-guide" in err and "--force" in err and err.count("\n") == 1
    assert page.read_text() == "# My teaching notes\n\nWritten by hand.\n"
    assert cli.main(["instructor-guide", str(page), "--notebooks", str(source), "--force"]) == 0
    assert page.read_text().startswith(GUIDE_SIGNATURE)
    assert cli.main(["instructor-guide", str(page), "--notebooks", str(source)]) == 0, (
        "its own guide: replaced"
    )


@pytest.mark.parametrize("name", ["guide.IPYNB", "guide.Ipynb"])
def test_the_guide_refuses_a_notebook_path_in_any_case(tmp_path, capsys, name):
    source = _course(tmp_path)
    assert cli.main(["instructor-guide", str(tmp_path / name), "--notebooks", str(source)]) == 2
    assert "is a notebook" in capsys.readouterr().err
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("command", ["student-edition", "instructor-guide", "build-site"])
def test_a_notebook_that_is_not_json_is_one_line_naming_it(tmp_path, capsys, command):
    source = _course(tmp_path)
    (source / "03_broken.ipynb").write_text("this is not JSON")
    out = tmp_path / ("guide.md" if command == "instructor-guide" else "out")
    assert cli.main([command, str(out), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "03_broken.ipynb is not a readable notebook" in err, err
    assert not out.exists()
