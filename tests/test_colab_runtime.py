"""The Colab path as a student meets it: a Python with only what Colab's runtime has (torch, torchvision,
matplotlib, tqdm, numpy, ipykernel; no jupyterlab, no lora_teach), a stand-in ``google.colab``, the
repository URL pointed at a local clone; the setup cell and notebook 03 run there, and torch is untouched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
import torch
from packaging.requirements import Requirement

from lora_teach.course import colab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03_digitsnet_baseline.ipynb"
COLAB_HAS = [
    "torch",
    "torchvision",
    "matplotlib",
    "tqdm",
    "numpy",
    "safetensors",
    "ipykernel",
    "pip",
    "setuptools",
]
KERNEL = "colab-stand-in"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: list[str]) -> list[metadata.Distribution]:
    """These distributions of the test's own environment and everything they require."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform package this machine does not have
        seen[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def _filtered_site(target: Path) -> set[str]:
    """Symlink into ``target`` the top-level files of Colab's packages and their requirements only."""
    site = Path(torch.__file__).resolve().parent.parent
    target.mkdir()
    linked = set()
    for dist in _closure(COLAB_HAS):
        assert _canonical(dist.metadata["Name"]) not in {"jupyterlab", "lora-teach"}
        for file in dist.files or []:
            top = file.parts[0]
            if top in {"..", "__pycache__"} or top in linked or not (site / top).exists():
                continue
            (target / top).symlink_to(site / top)
            linked.add(top)
    return {_canonical(d.metadata["Name"]) for d in _closure(COLAB_HAS)}


def _course_clone(tmp: Path) -> Path:
    """A git repository of this checkout's package, data and metadata, tagged with colab.REF."""
    repo = tmp / "origin"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*-ubyte", "checkpoints")
    shutil.copytree(ROOT / "lora_teach", repo / "lora_teach", ignore=ignore)
    shutil.copytree(ROOT / "data", repo / "data", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "course"], ["tag", colab.REF]):
        subprocess.run([*git, *command], check=True)
    return repo


def _python_says(python: Path, code: str, env: dict[str, str]) -> dict:
    done = subprocess.run(  # run outside the checkout, which `python -c` would put on the path
        [str(python), "-c", code], env=env, cwd=python.parent, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
import importlib.util, json, os, torch
print(json.dumps({
    "torch": [torch.__file__, torch.__version__, os.stat(torch.__file__).st_mtime_ns],
    "jupyterlab": importlib.util.find_spec("jupyterlab") is not None,
    "lora_teach": importlib.util.find_spec("lora_teach") is not None,
}))
"""


@pytest.mark.slow
def test_setup_cell_and_notebook_03_run_on_a_colab_stand_in_without_touching_torch(tmp_path, monkeypatch):
    env_dir = tmp_path / "colab-python"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # pip and a current setuptools come linked, as on Colab
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    linked = _filtered_site(tmp_path / "colab-packages")
    assert "jupyterlab" not in linked and "lora-teach" not in linked
    stand_in = tmp_path / "google-colab-stand-in" / "google" / "colab"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text('"""A stand-in for Colab\'s own google.colab module."""\n')
    (site / "colab_stand_in.pth").write_text(
        f"{tmp_path / 'colab-packages'}\n{stand_in.parent.parent}\nimport google.colab\n"
    )
    kernels = tmp_path / "jupyter" / "kernels" / KERNEL
    kernels.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )

    repo = _course_clone(tmp_path)
    for name in ("PYTHONPATH", "LORA_TEACH_DATA", "LORA_TEACH_CHECKPOINTS", "PIP_FIND_LINKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(colab.REPO_URL_VARIABLE, f"file://{repo}")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may be downloaded
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = dict(os.environ)

    before = _python_says(python, PROBE, env)
    assert not before["jupyterlab"] and not before["lora_teach"], before
    packages_before = set(os.listdir(site))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    first_code.source = colab.setup_cell_source()  # what scripts/sync_setup_cells.py puts there
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import json, lora_teach, torch\n"
            'print(json.dumps([lora_teach.__file__, torch.__file__, os.environ["LORA_TEACH_DATA"]]))'
        )
    )
    content = tmp_path / "content"
    content.mkdir()
    from nbclient import NotebookClient

    NotebookClient(
        notebook, kernel_name=KERNEL, timeout=900, resources={"metadata": {"path": str(content)}}
    ).execute()  # raises on the first cell that fails

    package, torch_file, data = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert Path(package).is_relative_to(site), package  # the installed copy, not this checkout
    assert data == str(content / "lora-course" / "data")
    after = _python_says(python, PROBE, env)
    assert after["torch"] == before["torch"] and torch_file == before["torch"][0]
    added = set(os.listdir(site)) - packages_before
    assert {name.split("-")[0] for name in added} <= {"lora_teach", "__editable__"}, added
    assert "lora_teach" in added
