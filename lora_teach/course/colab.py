"""Where the course lives, for the Colab badge and setup cell of every notebook (set here only).

The setup cell installs ``lora_teach`` with ``--no-deps``: Colab already has torch, torchvision,
matplotlib, tqdm and numpy, and pip must never resolve (and so never replace) Colab's CUDA torch."""

from __future__ import annotations

import json

REPO_URL = "https://github.com/lora-from-first-principles/lora-course"
REF = "v0.1.0"  # the tag (or commit) Colab installs; bump it with each release
COLAB_PREFIX = "https://colab.research.google.com/github/lora-from-first-principles/lora-course/blob"
# The one variable that points the setup cell at another clone (a fork, or a local folder in the tests).
REPO_URL_VARIABLE = "LORA_TEACH_REPO_URL"
SETUP_CELL_TAGS = ["nbval-skip"]  # nbval skips the cell: it installs only on Colab
# What the package needs besides torch and torchvision; installed on Colab only if one is missing.
LIGHT_DEPENDENCIES = ["matplotlib", "tqdm", "numpy", "safetensors"]


def badge_markdown(notebook: str) -> str:
    """The "Open in Colab" badge for ``notebooks/<notebook>``."""
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({COLAB_PREFIX}/{REF}/notebooks/{notebook})"
    )


def setup_cell_tags() -> list[str]:
    """The cell tags the setup cell carries (``nbval-skip``: the tests never run it)."""
    return list(SETUP_CELL_TAGS)


def setup_cell_source() -> str:
    """The first code cell of every notebook: on Colab it clones the course at ``REF`` (from
    ``$LORA_TEACH_REPO_URL`` if set), installs ``lora_teach`` without touching Colab's packages and
    points it at the data; elsewhere it does nothing."""
    return f'''# Colab setup: on Google Colab this installs lora_teach and finds the data; elsewhere it does nothing.
import importlib.util
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    home = "/content/lora-course" if os.path.isdir("/content") else os.path.abspath("lora-course")
    if not os.path.isdir(home):
        repo = os.environ.get(
            "{REPO_URL_VARIABLE}", "{REPO_URL}"
        )
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "{REF}", repo, home], check=True)
        # --no-deps: Colab's own torch and torchvision stay exactly as they are
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.run([*pip, home], check=True)
        missing = [
            m for m in {json.dumps(LIGHT_DEPENDENCIES)} if importlib.util.find_spec(m) is None
        ]
        if missing:  # none on Colab today; these never pull in torch
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        importlib.invalidate_caches()
    os.environ["LORA_TEACH_DATA"] = os.path.join(home, "data")'''
