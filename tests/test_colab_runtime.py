"""The Colab path as a student meets it: a Python with only what Colab's runtime has (torch, torchvision,
matplotlib, tqdm, numpy, ipykernel; no jupyterlab, no lora_teach), a stand-in ``google.colab``, and the setup
cell cloning THIS repository exactly as committed (``LORA_TEACH_REPO_URL`` is its folder; no tag or file is
added). Its first run fails at pip (a simulated failure), says so in one line and leaves the clone; its second
run repairs the install; then the student edition of notebook 00, what its Colab badge opens, runs to its end,
and Colab's torch is untouched."""

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
NOTEBOOK = ROOT / colab.STUDENT_FOLDER / "00_welcome_and_setup.ipynb"
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


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _skip_unless_this_checkout_is_the_ref() -> None:
    """The setup cell clones colab.REF; the test means something only where that is this very commit (CI's
    clone of main). Elsewhere (a feature branch) it would test another commit, so it says so and skips."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout of the course")
    try:
        ref = _git("rev-parse", "--verify", "--quiet", f"refs/heads/{colab.REF}")
    except subprocess.CalledProcessError:
        pytest.skip(f"this repository has no branch {colab.REF!r} (test_colab.py reports a missing ref)")
    if ref != _git("rev-parse", "HEAD"):
        pytest.skip(
            f"the setup cell clones {colab.REF!r}, which is not this checkout's commit; run from a clone of it"
        )


BAD_PIP = (
    "import os\n"
    'os.environ["PIP_CONSTRAINT"] = os.path.abspath("no-such-constraints.txt")  # pip will fail on it'
)
AFTER_FAILURE = """import importlib.util, json, os
print(json.dumps({
    "lora_teach": importlib.util.find_spec("lora_teach") is not None,
    "clone": os.path.isfile("lora-course/pyproject.toml"),
    "clone_inode": os.stat("lora-course").st_ino,
}))
del os.environ["PIP_CONSTRAINT"]  # the network is back"""
FINAL = """import json, os, subprocess, lora_teach, torch
git = ["git", "-C", os.path.join(os.getcwd(), "lora-course")]
print(json.dumps({
    "lora_teach": lora_teach.__file__, "torch": torch.__file__, "data": os.environ["LORA_TEACH_DATA"],
    "clone_inode": os.stat("lora-course").st_ino, "partial": os.path.exists("lora-course.partial"),
    "head": subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "commits": subprocess.run([*git, "rev-list", "--count", "HEAD"], capture_output=True, text=True).stdout.strip(),
}))"""


@pytest.mark.slow
def test_setup_cell_repairs_a_failed_install_then_the_student_notebook_runs_on_a_colab_stand_in(
    tmp_path, monkeypatch
):
    _skip_unless_this_checkout_is_the_ref()
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

    for name in (
        "PYTHONPATH",
        "LORA_TEACH_DATA",
        "LORA_TEACH_CHECKPOINTS",
        "PIP_FIND_LINKS",
        "PIP_CONSTRAINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(colab.REPO_URL_VARIABLE, str(ROOT))  # this repository, as committed, as a local folder
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may be downloaded
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = dict(os.environ)

    before = _python_says(python, PROBE, env)
    assert not before["jupyterlab"] and not before["lora_teach"], before
    packages_before = set(os.listdir(site))

    student = nbformat.read(NOTEBOOK, as_version=4)
    setup_index = next(i for i, cell in enumerate(student.cells) if cell.cell_type == "code")
    assert student.cells[setup_index].source == colab.setup_cell_source()
    failing = nbformat.v4.new_code_cell(colab.setup_cell_source(), metadata={"tags": ["raises-exception"]})
    student.cells[setup_index:setup_index] = [
        nbformat.v4.new_code_cell(BAD_PIP),
        failing,  # first run: pip fails
        nbformat.v4.new_code_cell(AFTER_FAILURE),
    ]  # then the notebook's own setup cell runs again, and the rest of the notebook
    student.cells.append(nbformat.v4.new_code_cell(FINAL))
    content = tmp_path / "content"
    content.mkdir()
    from nbclient import NotebookClient

    NotebookClient(
        student, kernel_name=KERNEL, timeout=900, resources={"metadata": {"path": str(content)}}
    ).execute()  # raises on the first cell that fails, the tagged one aside

    (error,) = failing.outputs
    assert error.output_type == "error" and len(error.traceback) == 1, failing.outputs
    assert error.traceback[0].startswith("Colab setup could not finish pip install (")
    assert "run this cell again" in error.traceback[0]
    after_failure = json.loads(student.cells[setup_index + 2].outputs[0]["text"])
    assert after_failure["clone"] and not after_failure["lora_teach"], after_failure
    repair = student.cells[setup_index + 3]
    assert repair.source == colab.setup_cell_source() and repair.outputs == [], "the repair is quiet"

    final = json.loads(student.cells[-1].outputs[0]["text"])
    assert Path(final["lora_teach"]).is_relative_to(site), final  # the installed copy, not this checkout
    assert final["data"] == str(content / "lora-course" / "data")
    assert final["clone_inode"] == after_failure["clone_inode"], "the clone was kept, not made again"
    assert final["head"] == _git("rev-parse", "HEAD") and final["commits"] == "1", (
        "a depth-1 clone of this commit"
    )
    assert not final["partial"]
    for cell in [c for c in student.cells[setup_index + 4 : -1] if c.cell_type == "code"]:
        assert not any(o.output_type == "error" for o in cell.outputs)
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert not re.search(r"^Correct \(", text, flags=re.MULTILINE), "the student edition has no answers"
    doctor_text = "".join(
        o.get("text", "")
        for c in student.cells
        for o in c.get("outputs", [])
        if "OK    colab" in o.get("text", "")
    )
    assert "on Google Colab: lora_teach from" in doctor_text and "pip install -e" not in doctor_text
    after = _python_says(python, PROBE, env)
    assert after["torch"] == before["torch"] and final["torch"] == before["torch"][0]
    added = set(os.listdir(site)) - packages_before
    assert {name.split("-")[0] for name in added} <= {"lora_teach", "__editable__"}, added
    assert "lora_teach" in added
