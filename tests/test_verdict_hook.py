"""notebooks/conftest.py makes nbval compare every cell's verdict words with the stored ones: a notebook
whose fresh run prints another verdict than it stores fails, one that prints the same passes."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from lora_teach.course.verdicts import verdict_words

ROOT = Path(__file__).resolve().parent.parent


def _notebook(folder: Path, prints: str, stored: str) -> Path:
    cell = nbformat.v4.new_code_cell(f"print({prints!r})", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored + "\n")]
    path = folder / "verdict.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return path


def _nbval(folder: Path) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "notebooks" / "conftest.py", folder / "conftest.py")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax"]
    return subprocess.run([*command, "--rootdir", str(folder), str(folder)], capture_output=True, text=True)


def test_a_changed_verdict_fails_nbval_and_names_both(tmp_path):
    _notebook(
        tmp_path, "LoRA is lower than full fine-tuning", "LoRA is indistinguishable from full fine-tuning"
    )
    done = _nbval(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "['indistinguishable'] became ['lower']" in done.stdout


def test_the_same_verdict_with_other_numbers_passes(tmp_path):
    _notebook(tmp_path, "higher (+1.3 ± 0.2)", "higher (+1.2 ± 0.3)")
    done = _nbval(tmp_path)
    assert done.returncode == 0, done.stdout


def test_verdict_words_read_stdout_and_markdown_not_stderr():
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "a is higher than b; c is a tie"},
        {"output_type": "stream", "name": "stderr", "text": "lower"},
        {"output_type": "display_data", "data": {"text/markdown": "so it **depends on** the run"}},
    ]
    assert verdict_words(outputs) == ["higher", "a tie", "depends on"]
