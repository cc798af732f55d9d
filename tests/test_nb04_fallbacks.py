"""Notebook 04 decides whether to use the student's `lora_weight` by Exercise 2's own check, not by whether it
raises: a version that returns None, or adds in place, gets the package's class instead of crashing cell 16."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NB04 = ROOT / "notebooks" / "04_lora_with_parametrize.ipynb"
SOLUTION = "    return weight + scaling * (lora_B @ lora_A)\n"


def _first_cells_with(body: str) -> nbformat.NotebookNode:
    """Notebook 04 up to the tiny-layer demo (cell 'Watch the mechanism'), with `lora_weight`'s body replaced."""
    notebook = nbformat.read(NB04, as_version=4)
    end = next(i for i, c in enumerate(notebook.cells) if "small = nn.Linear(6, 4)" in c.source) + 1
    cells = [c for c in notebook.cells[:end] if "nbval-skip" not in c.metadata.get("tags", [])]
    (exercise,) = [c for c in cells if c.source.startswith("def lora_weight(")]
    assert SOLUTION in exercise.source
    exercise.source = exercise.source.replace(SOLUTION, body)
    notebook.cells = cells
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        "    weight + scaling * (lora_B @ lora_A)\n",  # forgot return: None
        "    return weight.add_(scaling * (lora_B @ lora_A))\n",  # in place: changes the frozen weight
    ],
    ids=["returns None", "in place"],
)
def test_a_wrong_lora_weight_falls_back_to_the_package_class(body, tmp_path):
    from nbclient import NotebookClient

    notebook = _first_cells_with(body)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LORA_TEACH_CHECKPOINTS": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB04.parent)}}
    ).execute(env=env)
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "Incorrect (" in printed
    assert "does not pass" in printed and "weight == old weight while B = 0: True" in printed
