"""The package as a wheel, installed into a fresh venv, works against a course folder found from the working
directory (nothing looked up beside the package source)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LORA_TEACH_DATA")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; torch and the other dependencies come from this test's
    environment through a .pth line (so nothing is downloaded)."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp / "dist",
            REPO,
        ],
        cwd=tmp,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "dist").glob("lora_teach-*.whl"))
    venv.EnvBuilder(with_pip=True).create(tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)
    deps = sysconfig.get_paths()["purelib"]
    (Path(purelib.stdout.strip()) / "course_deps.pth").write_text(deps + "\n")
    done = _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp)
    assert done.returncode == 0, done.stderr
    return tmp / "venv" / "bin"


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course folder as a student's clone has it: notebooks/ and data/ (linked, it is large)."""
    folder = tmp_path_factory.mktemp("clone")
    shutil.copytree(REPO / "notebooks", folder / "notebooks")
    (folder / "data").symlink_to(REPO / "data", target_is_directory=True)
    return folder


def test_the_installed_package_is_the_wheel_not_this_checkout(installed, course):
    found = _run([installed / "python", "-c", "import lora_teach; print(lora_teach.__file__)"], cwd=course)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(installed.parent), found.stdout


def test_doctor_from_the_wheel_finds_the_clones_data(installed, course):
    done = _run([installed / "lora-teach", "doctor"], cwd=course / "notebooks")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MNIST in ../data/MNIST/raw" in done.stdout  # the clone's data/, shown from its notebooks/


def test_student_edition_and_guide_from_the_wheel_use_the_clones_notebooks(installed, course):
    done = _run([installed / "lora-teach", "student-edition", course / "student"], cwd=course / "notebooks")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (course / "student").glob("*.ipynb"))
    assert names == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    guide = _run([installed / "lora-teach", "instructor-guide", course / "guide.md"], cwd=course)
    assert guide.returncode == 0, guide.stderr
    assert "bias_parameters = 256 + 128 + 10" in (course / "guide.md").read_text()


def test_solutions_ship_in_the_wheel(installed, course):
    done = _run(
        [installed / "python", "-c", "from lora_teach.course.exercises import nb05; nb05.q2.solution()"],
        cwd=course,
    )
    assert done.stdout == "Solution (nb05.q2):\nbias_parameters = 256 + 128 + 10\n", done.stderr


def test_outside_a_course_folder_the_wheel_asks_for_notebooks(installed, tmp_path):
    done = _run([installed / "lora-teach", "student-edition", tmp_path / "out"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --notebooks: no notebooks/ folder")
