"""Every verdict word a notebook stores is the one a fresh clone computes: notebooks 01-09 are run in a fresh
kernel with an empty checkpoint folder (so the baselines are trained there, not reused), at one thread, and
the verdict words of every code cell are compared with the stored ones, in order. Two threads: CI's nbval run
is a fresh clone's at the machine's two threads, and notebooks/conftest.py compares the verdict words of every
cell there, so this test runs the course once more, at one thread.

Slow (the whole course once more): CI runs it; locally `-m slow -k 04` runs one notebook."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest

from lora_teach.course.verdicts import verdict_words as words_of

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb"))


def verdict_words(notebook: nbformat.NotebookNode) -> dict[int, list[str]]:
    """Cell index -> the verdict words of its printed text and Markdown outputs, in order."""
    found = {i: words_of(c.get("outputs", [])) for i, c in enumerate(notebook.cells) if c.cell_type == "code"}
    return {i: words for i, words in found.items() if words}


def run_fresh(path: Path, threads: int, checkpoints: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    notebook = copy.deepcopy(nbformat.read(path, as_version=4))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "LORA_TEACH_CHECKPOINTS": str(checkpoints),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "MPLBACKEND": "agg",
    }
    env.pop("LORA_TEACH_DATA", None)
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=env)
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name[:2] for p in NOTEBOOKS])
def test_a_fresh_run_prints_the_stored_verdict_words(path, threads, tmp_path):
    stored = verdict_words(nbformat.read(path, as_version=4))
    assert stored or path.name.startswith(("01", "02", "03")), "no verdict found: the pattern is broken"
    fresh = verdict_words(run_fresh(path, threads, tmp_path / "checkpoints"))
    changed = {
        i: (stored.get(i), fresh.get(i)) for i in set(stored) | set(fresh) if stored.get(i) != fresh.get(i)
    }
    assert not changed, (
        f"{path.name} at {threads} thread(s): cell -> (stored, fresh) verdict words: {changed}"
    )


def test_the_verdict_words_are_found_in_stored_outputs():
    nb04 = nbformat.read(ROOT / "notebooks" / "04_lora_with_parametrize.ipynb", as_version=4)
    assert "indistinguishable" in sum(verdict_words(nb04).values(), [])
