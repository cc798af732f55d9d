"""Colab: every badge opens the student edition of its own notebook at a ref this repository has, every notebook
starts with the exact setup cell, and the setup cell installs, repairs and fails the way a student needs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from lora_teach.course import colab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STUDENT = sorted((ROOT / colab.STUDENT_FOLDER).glob("*.ipynb"))
BADGE_LINK = re.compile(r"\(https://colab\.research\.google\.com/github/([^)\s]+)\)")
BRANCH = re.compile(r'"--branch", "([^"]+)"')
FIX = "run python scripts/sync_setup_cells.py"


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def _colab_links() -> dict[str, list[str]]:
    """Every Colab link of the notebooks, the student edition and the README: {file: [owner/repo/blob/...]}."""
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in [*NOTEBOOKS, *STUDENT]}
    texts["README.md"] = (ROOT / "README.md").read_text(encoding="utf-8")
    return {name: BADGE_LINK.findall(text) for name, text in texts.items()}


def test_there_are_notebooks_and_a_student_edition_of_each():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    assert [p.name for p in STUDENT] == [p.name for p in NOTEBOOKS], (
        "student/ must hold the student edition of every notebook: run `lora-teach student-edition student/`"
    )


@pytest.mark.parametrize(
    "path", NOTEBOOKS + STUDENT, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS + STUDENT]
)
def test_first_cell_has_the_badge_of_this_notebooks_student_edition(path):
    first = _cells(path)[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be markdown (title and badge)"
    assert colab.badge_markdown(path.name) in first.source, f"{path.name}: not colab.badge_markdown(); {FIX}"
    links = BADGE_LINK.findall(first.source)
    assert len(links) == 1 and links[0].endswith(f"/blob/{colab.REF}/student/{path.name}"), links


def test_every_colab_link_opens_a_student_notebook_that_exists():
    prefix = f"{colab.COLAB_PREFIX.split('/github/')[1]}/{colab.REF}/{colab.STUDENT_FOLDER}/"
    readme = _colab_links()["README.md"]
    assert len(readme) == len(NOTEBOOKS), f"README.md should have one badge per notebook, has {len(readme)}"
    for name, links in _colab_links().items():
        for link in links:
            assert link.startswith(prefix), (
                f"{name}: a Colab link that does not open student/ at {colab.REF}: {link}"
            )
            assert (ROOT / colab.STUDENT_FOLDER / link.removeprefix(prefix)).is_file(), f"{name}: {link}"


def _missing_refs(refs: set[str]) -> set[str]:
    """The refs that this repository has neither as a branch, a remote branch nor a tag."""
    listed = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/remotes",
            "refs/tags",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    have = {r.removeprefix("refs/heads/") for r in listed if r.startswith("refs/heads/")}
    have |= {r.removeprefix("refs/tags/") for r in listed if r.startswith("refs/tags/")}
    have |= {r.split("/", 3)[3] for r in listed if r.startswith("refs/remotes/") and r.count("/") >= 3}
    return refs - have


needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout of the course"
)


@needs_git
def test_the_ref_of_every_badge_and_setup_cell_exists_in_this_repository():
    refs = {link.split("/")[3] for links in _colab_links().values() for link in links}
    for path in [*NOTEBOOKS, *STUDENT]:
        setup = next(cell for cell in _cells(path) if cell.cell_type == "code")
        refs.update(BRANCH.findall(setup.source))
    assert colab.REF in refs
    assert not _missing_refs(refs), (
        f"the Colab badges or setup cells name {sorted(_missing_refs(refs))}, which this repository does not "
        "have (no branch, remote branch or tag of that name): Colab would fail to clone it"
    )


@needs_git
def test_a_ref_the_repository_lacks_is_reported():
    assert _missing_refs({"v0.1.0-no-such-tag", colab.REF}) == {"v0.1.0-no-such-tag"}


@pytest.mark.parametrize(
    "path", NOTEBOOKS + STUDENT, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS + STUDENT]
)
def test_first_code_cell_is_exactly_the_setup_cell_with_its_tags(path):
    first_code = next(cell for cell in _cells(path) if cell.cell_type == "code")
    assert first_code.source == colab.setup_cell_source(), (
        f"{path.name}: the first code cell must be exactly lora_teach.course.colab.setup_cell_source(); {FIX}"
    )
    tags = first_code.metadata.get("tags", [])
    assert set(colab.setup_cell_tags()) <= set(tags), (
        f"{path.name}: needs the tags {colab.setup_cell_tags()}; {FIX}"
    )


def test_badge_and_setup_cell_use_the_one_address():
    assert colab.REPO_URL.removeprefix("https://github.com/") in colab.COLAB_PREFIX
    assert colab.REPO_URL in colab.setup_cell_source()
    assert f'"--branch", "{colab.REF}"' in colab.setup_cell_source()


def test_setup_cell_is_skipped_by_tag_not_by_comment():
    assert colab.setup_cell_tags() == ["nbval-skip"]
    assert "NBVAL" not in colab.setup_cell_source()


def test_setup_cell_installs_without_dependencies_and_is_quiet():
    source = colab.setup_cell_source()
    assert '"--no-deps"' in source and "torch" not in str(colab.LIGHT_DEPENDENCIES)
    assert '"advice.detachedHead=false"' in source and '"-q"' in source and "capture_output=True" in source


# ---------------------------------------------------------------- the setup cell's behaviour, run in-process


def test_setup_cell_does_nothing_off_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("LORA_TEACH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)

    def no_run(*args, **kwargs):
        raise AssertionError(f"the setup cell ran {args} off Colab")

    monkeypatch.setattr(subprocess, "run", no_run)
    exec(colab.setup_cell_source(), {})
    assert "LORA_TEACH_DATA" not in os.environ and not any(tmp_path.iterdir())


class FakeColab:
    """A stand-in ``google.colab``, ``subprocess.run`` that records commands (``fail``: {step word: stderr}),
    and ``lora_teach`` importable or not."""

    def __init__(self, monkeypatch, tmp_path, installed: bool, fail: dict[str, str] | None = None):
        self.commands: list[list[str]] = []
        self.fail = fail or {}
        self.home = tmp_path / "lora-course"
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        monkeypatch.chdir(tmp_path)  # no /content here: the clone goes to ./lora-course
        monkeypatch.setenv("LORA_TEACH_DATA", "")  # recorded, so that what the cell sets is undone after
        monkeypatch.delenv("LORA_TEACH_DATA")
        monkeypatch.setenv(colab.REPO_URL_VARIABLE, str(ROOT))  # a local folder, as in the runtime test
        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "lora_teach" and not installed else real_find_spec(name, *a),
        )
        monkeypatch.setattr(subprocess, "run", self.run)

    def run(self, command, **kwargs):
        self.commands.append(list(command))
        step = "git" if command[0] == "git" else "pip"
        if step in self.fail:
            return subprocess.CompletedProcess(command, 1, "", self.fail[step])
        if step == "git":
            Path(command[-1]).mkdir()
            (Path(command[-1]) / "pyproject.toml").write_text("[project]\n")
        return subprocess.CompletedProcess(command, 0, "", "")


def test_on_colab_with_lora_teach_installed_the_cell_installs_nothing(monkeypatch, tmp_path):
    fake = FakeColab(monkeypatch, tmp_path, installed=True)
    exec(colab.setup_cell_source(), {})
    assert fake.commands == []
    assert os.environ["LORA_TEACH_DATA"] == str(fake.home / "data")


def test_on_colab_the_cell_clones_quietly_at_the_ref_whole_then_installs_without_dependencies(
    monkeypatch, tmp_path
):
    fake = FakeColab(monkeypatch, tmp_path, installed=False)
    exec(colab.setup_cell_source(), {})
    clone, install = fake.commands
    assert clone[:3] == ["git", "-c", "advice.detachedHead=false"] and clone[3:5] == ["clone", "-q"]
    assert clone[clone.index("--depth") + 1] == "1" and clone[clone.index("--branch") + 1] == colab.REF
    assert clone[-2] == f"file://{ROOT}", "a local folder becomes a file:// URL, where git honours --depth"
    assert clone[-1] == f"{fake.home}.partial"
    assert fake.home.is_dir() and not Path(f"{fake.home}.partial").exists()
    assert install[1:] == ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(fake.home)]
    assert os.environ["LORA_TEACH_DATA"] == str(fake.home / "data")


def test_a_failed_step_is_one_sentence_that_says_what_to_do(monkeypatch, tmp_path):
    FakeColab(
        monkeypatch,
        tmp_path,
        installed=False,
        fail={"git": "Cloning...\nfatal: Remote branch v9 not found\n"},
    )
    with pytest.raises(Exception) as raised:
        exec(colab.setup_cell_source(), {})
    shown = raised.value._render_traceback_()  # what Jupyter shows instead of a traceback
    assert len(shown) == 1 and "\n" not in shown[0] and shown[0].count(". ") == 0, shown
    assert "git clone" in shown[0] and "fatal: Remote branch v9 not found" in shown[0]
    assert "run this cell again" in shown[0]
    assert not (tmp_path / "lora-course").exists()


def test_running_the_cell_again_after_a_failed_install_repairs_it(monkeypatch, tmp_path):
    first = FakeColab(monkeypatch, tmp_path, installed=False, fail={"pip": "ERROR: could not install\n"})
    with pytest.raises(Exception, match="pip install"):
        exec(colab.setup_cell_source(), {})
    assert first.home.is_dir(), "the clone stays"
    again = FakeColab(monkeypatch, tmp_path, installed=False)
    exec(colab.setup_cell_source(), {})
    assert [c[0] for c in again.commands] == [sys.executable], "no second clone: only the install is repeated"


def test_an_interrupted_clone_is_cloned_again(monkeypatch, tmp_path):
    (tmp_path / "lora-course.partial").mkdir()  # what a clone killed halfway leaves
    (tmp_path / "lora-course.partial" / "half").write_text("")
    fake = FakeColab(monkeypatch, tmp_path, installed=False)
    exec(colab.setup_cell_source(), {})
    assert fake.commands[0][0] == "git" and (fake.home / "pyproject.toml").is_file()
    assert not (fake.home / "half").exists()


# ---------------------------------------------------------------- scripts/sync_setup_cells.py


def test_sync_script_rewrites_only_the_badge_and_the_first_code_cells_source_and_tags(tmp_path):
    original = NOTEBOOKS[0]
    path = tmp_path / original.name
    notebook = json.loads(original.read_text(encoding="utf-8"))
    first = next(i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code")
    notebook["cells"][first]["source"] = ["# NBVAL_SKIP\n", "print('an old setup cell')"]
    notebook["cells"][first]["metadata"] = {"tags": ["nbval-ignore-output", "keep-me"]}
    old_badge = colab.badge_markdown(original.name).replace(f"/{colab.REF}/student/", "/v0.1.0/notebooks/")
    title = "".join(notebook["cells"][0]["source"]).replace(colab.badge_markdown(original.name), old_badge)
    notebook["cells"][0]["source"] = title.splitlines(keepends=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    command = [sys.executable, str(ROOT / "scripts" / "sync_setup_cells.py"), str(path)]
    assert "synced" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    synced = json.loads(path.read_text(encoding="utf-8"))
    cell = synced["cells"][first]
    assert "".join(cell["source"]) == colab.setup_cell_source()
    assert cell["metadata"] == {"tags": ["nbval-skip", "keep-me"]}
    assert "".join(synced["cells"][0]["source"]) == title.replace(
        old_badge, colab.badge_markdown(original.name)
    )
    others = [c for i, c in enumerate(synced["cells"]) if i not in (0, first)]
    assert others == [c for i, c in enumerate(notebook["cells"]) if i not in (0, first)]
    for key in ("metadata", "nbformat", "nbformat_minor"):
        assert synced[key] == notebook[key]
    once = path.read_bytes()
    assert "already" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    assert path.read_bytes() == once


def test_sync_script_adds_a_missing_badge_under_the_title(tmp_path):
    path = tmp_path / "07_x.ipynb"
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# 07 · X\n\nYou will be able to:"),
            nbformat.v4.new_code_cell(""),
        ]
    )
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_setup_cells.py"), str(path)], check=True)
    title = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    assert title == f"# 07 · X\n\n{colab.badge_markdown('07_x.ipynb')}\n\nYou will be able to:"


def test_jupyterlab_is_the_lab_extra_not_a_base_dependency():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(r.startswith("jupyterlab") for r in project["dependencies"]), project["dependencies"]
    assert project["optional-dependencies"]["lab"] == ["jupyterlab>=4"]
    assert '".[test,lab]"' in (ROOT / ".ci" / "run").read_text()  # tests/test_jupyterlab.py needs it
    assert "jupyterlab" in (ROOT / "environment.yml").read_text()
