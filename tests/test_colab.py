"""Every notebook opens with its own Colab badge and the exact setup cell, and names one repository address."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lora_teach.course import colab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
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
        f"{path.name}: the first cell must hold lora_teach.course.colab.badge_markdown({path.name!r})"
    )
    links = BADGE_LINK.findall(first.source)
    assert len(links) == 1 and links[0].endswith(f"/notebooks/{path.name}"), links


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_code_cell_is_exactly_the_setup_cell_with_its_tags(path):
    first_code = next(cell for cell in _cells(path) if cell.cell_type == "code")
    fix = "run python scripts/sync_setup_cells.py"
    assert first_code.source == colab.setup_cell_source(), (
        f"{path.name}: the first code cell must be exactly lora_teach.course.colab.setup_cell_source(); {fix}"
    )
    tags = first_code.metadata.get("tags", [])
    assert set(colab.setup_cell_tags()) <= set(tags), (
        f"{path.name}: the setup cell needs the tags {colab.setup_cell_tags()}; {fix}"
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
        f"other repository addresses than lora_teach.course.colab's: {addresses - expected}"
    )


def test_badge_and_setup_cell_use_the_one_address():
    assert colab.REPO_URL.removeprefix("https://github.com/") in colab.COLAB_PREFIX
    assert colab.REPO_URL in colab.setup_cell_source() and colab.REF in colab.setup_cell_source()


def test_setup_cell_is_skipped_by_tag_not_by_comment():
    assert colab.setup_cell_tags() == ["nbval-skip"]
    assert "NBVAL" not in colab.setup_cell_source()


def test_setup_cell_installs_without_dependencies_from_the_one_variable():
    source = colab.setup_cell_source()
    assert (
        f'os.environ.get(\n            "{colab.REPO_URL_VARIABLE}", "{colab.REPO_URL}"\n        )' in source
    )
    assert '"--no-deps"' in source and "torch" not in str(colab.LIGHT_DEPENDENCIES)


def test_setup_cell_does_nothing_off_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("LORA_TEACH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)

    def no_run(*args, **kwargs):
        raise AssertionError(f"the setup cell ran {args} off Colab")

    monkeypatch.setattr(subprocess, "run", no_run)
    exec(colab.setup_cell_source(), {})
    assert "LORA_TEACH_DATA" not in os.environ and not any(tmp_path.iterdir())


def test_sync_script_rewrites_only_the_first_code_cells_source_and_tags(tmp_path):
    original = NOTEBOOKS[0]
    path = tmp_path / original.name
    notebook = json.loads(original.read_text(encoding="utf-8"))
    first = next(i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code")
    notebook["cells"][first]["source"] = ["# NBVAL_SKIP\n", "print('an old setup cell')"]
    notebook["cells"][first]["metadata"] = {"tags": ["nbval-ignore-output", "keep-me"]}
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    command = [sys.executable, str(ROOT / "scripts" / "sync_setup_cells.py"), str(path)]
    assert "synced" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    synced = json.loads(path.read_text(encoding="utf-8"))
    cell = synced["cells"][first]
    assert "".join(cell["source"]) == colab.setup_cell_source()
    assert cell["metadata"] == {"tags": ["nbval-skip", "keep-me"]}
    for key in ("cells", "metadata", "nbformat", "nbformat_minor"):
        if key == "cells":
            others = [c for i, c in enumerate(synced["cells"]) if i != first]
            assert others == [c for i, c in enumerate(notebook["cells"]) if i != first]
        else:
            assert synced[key] == notebook[key]
    once = path.read_bytes()
    assert "already" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    assert path.read_bytes() == once


def test_jupyterlab_is_the_lab_extra_not_a_base_dependency():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(r.startswith("jupyterlab") for r in project["dependencies"]), project["dependencies"]
    assert project["optional-dependencies"]["lab"] == ["jupyterlab>=4"]
    assert '".[test,lab]"' in (ROOT / ".ci" / "run").read_text()  # tests/test_jupyterlab.py needs it
    assert "jupyterlab" in (ROOT / "environment.yml").read_text()
