"""Where the course lives, for the Colab badge and setup cell of every notebook (set here only).

Every badge opens the student edition (``student/``), whose exercises are blank. The setup cell
installs ``lora_teach`` with ``--no-deps``: Colab already has torch, torchvision, matplotlib, tqdm and
numpy, and pip must never resolve (and so never replace) Colab's CUDA torch."""

from __future__ import annotations

import json

REPO_URL = "https://github.com/lora-from-first-principles/lora-course"
REF = "main"  # the branch Colab clones and the badges open; tests/test_colab.py checks this repository has it
STUDENT_FOLDER = "student"  # the committed student edition, which every badge opens
COLAB_PREFIX = "https://colab.research.google.com/github/lora-from-first-principles/lora-course/blob"
# The one variable that points the setup cell at another clone (a fork, or a local folder in the tests).
REPO_URL_VARIABLE = "LORA_TEACH_REPO_URL"
SETUP_CELL_TAGS = ["nbval-skip"]  # nbval skips the cell: it installs only on Colab
# What the package needs besides torch and torchvision; installed on Colab only if one is missing.
LIGHT_DEPENDENCIES = ["matplotlib", "tqdm", "numpy", "safetensors"]


def badge_url(notebook: str) -> str:
    """The Colab address of the student edition of ``notebook`` (a file name such as ``00_welcome_and_setup.ipynb``)."""
    return f"{COLAB_PREFIX}/{REF}/{STUDENT_FOLDER}/{notebook}"


def badge_markdown(notebook: str) -> str:
    """The "Open in Colab" badge of ``notebook``: it opens the student edition, never the answers."""
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({badge_url(notebook)})"
    )


def setup_cell_tags() -> list[str]:
    """The cell tags the setup cell carries (``nbval-skip``: the tests never run it)."""
    return list(SETUP_CELL_TAGS)


def setup_cell_source() -> str:
    """The first code cell of every notebook. On Colab, while ``lora_teach`` is not importable, it clones
    the course at ``REF`` (from ``$LORA_TEACH_REPO_URL`` if set) unless a complete clone is there, installs
    it without touching Colab's packages, and points it at the data; run again, it repairs what a failed run
    left. A failure is one line saying what to do. Elsewhere it does nothing."""
    return f'''# Colab setup: on Google Colab this installs lora_teach and finds the data; elsewhere it does nothing.
import importlib.util
import os
import shutil
import subprocess
import sys

if "google.colab" in sys.modules:
    home = "/content/lora-course" if os.path.isdir("/content") else os.path.abspath("lora-course")

    class SetupFailed(Exception):
        def _render_traceback_(self):  # Jupyter shows this one line instead of a traceback
            return [str(self)]

    def setup_step(what, command):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[-1]
            raise SetupFailed(
                f"Colab setup could not finish {{what}} ({{said}}); run this cell again, and if the same "
                "message comes back, use Runtime > Disconnect and delete runtime, then run it once more."
            )

    if importlib.util.find_spec("lora_teach") is None:
        repo = os.environ.get(
            "{REPO_URL_VARIABLE}", "{REPO_URL}"
        )
        if os.path.isdir(repo):  # a local clone: git honours --depth for URLs only
            repo = "file://" + os.path.abspath(repo)
        if not os.path.isdir(home):  # clone beside it, then rename: home is always a whole clone
            shutil.rmtree(home + ".partial", ignore_errors=True)
            git = ["git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1"]
            setup_step("git clone", [*git, "--branch", "{REF}", repo, home + ".partial"])
            os.rename(home + ".partial", home)
        # --no-deps: Colab's own torch and torchvision stay exactly as they are
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        setup_step("pip install", [*pip, home])
        missing = [
            m for m in {json.dumps(LIGHT_DEPENDENCIES)} if importlib.util.find_spec(m) is None
        ]
        if missing:  # none on Colab today; these never pull in torch
            setup_step("pip install", [sys.executable, "-m", "pip", "install", "-q", *missing])
        importlib.invalidate_caches()
    os.environ["LORA_TEACH_DATA"] = os.path.join(home, "data")'''
