"""What the notebooks store is what a reader should see: no stderr, no warning, no progress bar, no path of the
author's machine; and scripts/execute_notebooks.py, the one way outputs get stored, strips exactly that."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SCRIPT = ROOT / "scripts" / "execute_notebooks.py"
FIX = "store outputs with `python scripts/execute_notebooks.py NOTEBOOK` (or `--strip-only`)"
WARNING = re.compile(r"\w*Warning\b|warnings\.warn|findfont|No CUDA runtime|IProgress not found")
LOCAL_PATH = re.compile(r"/work/|/root/|/home/|/Users/|site-packages|dist-packages|\.venv\b|[A-Z]:\\\\Users")
PROGRESS_BAR = re.compile(r"\d+%\|.*\||\d+(\.\d+)?(it/s|s/it)\]")
WIDGET = "application/vnd.jupyter.widget-view+json"


def _texts(output: nbformat.NotebookNode) -> list[str]:
    """Everything of an output that a reader sees as text."""
    texts = [output.get("text", "")] if output.output_type == "stream" else []
    texts += [value for key, value in output.get("data", {}).items() if key.startswith("text/")]
    if output.output_type == "error":
        texts += [output.ename, output.evalue, *output.traceback]
    return [t if isinstance(t, str) else "".join(t) for t in texts]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_outputs_hold_no_stderr_warning_progress_bar_or_local_path(path):
    for index, cell in enumerate(nbformat.read(path, 4).cells):
        for output in cell.get("outputs", []):
            where = f"{path.name}, cell {index}"
            assert not (output.output_type == "stream" and output.name == "stderr"), f"{where}: stderr; {FIX}"
            assert WIDGET not in output.get("data", {}), f"{where}: a widget (a progress bar?); {FIX}"
            assert output.output_type != "error", f"{where}: an error ({output.ename}) is stored"
            for text in _texts(output):
                for pattern, what in [(WARNING, "a warning"), (PROGRESS_BAR, "a progress bar")]:
                    found = pattern.search(text)
                    assert not found, f"{where}: {what} is stored ({found.group(0)!r}); {FIX}"
                found = LOCAL_PATH.search(text)
                assert not found, f"{where}: a path of the author's machine is stored ({text[:120]!r})"


# ---------------------------------------------------------------- scripts/execute_notebooks.py --strip-only


def _noisy_notebook() -> nbformat.NotebookNode:
    checked = nbformat.v4.new_code_cell("print(1)", metadata={"tags": ["nbval-check-output"]})
    checked.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\rruns:  50%|#####     | 1/2\n"),
    ]
    loop = nbformat.v4.new_code_cell("for i in range(3): print(f'\\rstep {i}', end='')")
    loop.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"\rtraining {i} of 3 ...") for i in (1, 2, 3)
    ] + [nbformat.v4.new_output("stream", name="stdout", text="\rdone in 4.7 s\n")]
    bar = nbformat.v4.new_code_cell("tqdm(range(3))")
    bar.outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "x"}, "text/plain": "  0%|"}),
        nbformat.v4.new_output("display_data", data={"text/plain": "a result"}),
        nbformat.v4.new_output("stream", name="stderr", text="/work/x.py:1: UserWarning: careful\n"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[checked, loop, bar])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    return notebook


def test_strip_only_keeps_what_a_reader_sees_in_jupyters_layout_and_flags_checked_cells(tmp_path):
    path = tmp_path / "01_x.ipynb"
    nbformat.write(_noisy_notebook(), path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--strip-only", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 1, "a checked cell wrote to stderr: nbval would compare it"
    assert "cells [0] are tagged nbval-check-output" in done.stderr
    notebook = nbformat.read(path, 4)
    assert [o.text for o in notebook.cells[0].outputs] == ["1\n"]
    assert [o.text for o in notebook.cells[1].outputs] == ["done in 4.7 s\n"], "one line, as Jupyter shows it"
    assert [o.data["text/plain"] for o in notebook.cells[2].outputs] == ["a result"]
    assert "widgets" not in notebook.metadata
    raw = path.read_text(encoding="utf-8")
    assert raw == json.dumps(json.loads(raw), indent=1, ensure_ascii=False) + "\n", (
        "Jupyter's own JSON layout"
    )
    again = subprocess.run(
        [sys.executable, str(SCRIPT), "--strip-only", str(path)], capture_output=True, text=True
    )
    assert (
        again.returncode == 0
        and again.stdout.startswith("already")
        and path.read_text(encoding="utf-8") == raw
    )


def test_the_committed_notebooks_are_already_stripped():
    """--strip-only changes none of them: what CI and the site show is what the script stores."""
    spec = importlib.util.spec_from_file_location("execute_notebooks", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, 4)
        before = nbformat.writes(notebook)
        script.strip(notebook)
        assert nbformat.writes(notebook) == before, f"{path.name}: {FIX}"
