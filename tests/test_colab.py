"""Every notebook opens with its own Colab badge and the exact setup cell, and names one repository address."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from lora_teach import colab

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
BADGE_LINK = re.compile(r"\(https://colab\.research\.google\.com/github/([^)\s]+)\)")


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_has_the_badge_for_this_very_notebook(path):
    first = _cells(path)[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be markdown (title and badge)"
    assert colab.badge_markdown(path.name) in first.source, (
        f"{path.name}: the first cell must hold lora_teach.colab.badge_markdown({path.name!r})"
    )
    links = BADGE_LINK.findall(first.source)
    assert len(links) == 1 and links[0].endswith(f"/notebooks/{path.name}"), links


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_code_cell_is_exactly_the_setup_cell(path):
    first_code = next(cell for cell in _cells(path) if cell.cell_type == "code")
    assert first_code.source == colab.setup_cell_source(), (
        f"{path.name}: the first code cell must be exactly lora_teach.colab.setup_cell_source()"
    )


def test_every_notebook_names_the_same_repository_and_ref():
    addresses = set()
    for path in NOTEBOOKS:
        for cell in _cells(path):
            addresses.update(link.split("/notebooks/")[0] for link in BADGE_LINK.findall(cell.source))
    expected = {
        f"{colab.COLAB_PREFIX.split('/github/')[1]}/{colab.REF}",
        colab.REPO_URL,
    }
    assert addresses <= expected, (
        f"other repository addresses than lora_teach.colab's: {addresses - expected}"
    )


def test_badge_and_setup_cell_use_the_one_address():
    assert colab.REPO_URL.removeprefix("https://github.com/") in colab.COLAB_PREFIX
    assert colab.REPO_URL in colab.setup_cell_source() and colab.REF in colab.setup_cell_source()
    assert colab.setup_cell_source().startswith("# NBVAL_SKIP")
