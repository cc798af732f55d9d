"""Where the course lives, for the Colab badge and setup cell of every notebook (set here only)."""

from __future__ import annotations

REPO_URL = "https://github.com/lora-from-first-principles/lora-course"
REF = "v0.1.0"  # the tag (or commit) Colab installs; bump it with each release
COLAB_PREFIX = "https://colab.research.google.com/github/lora-from-first-principles/lora-course/blob"


def badge_markdown(notebook: str) -> str:
    """The "Open in Colab" badge for ``notebooks/<notebook>``."""
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({COLAB_PREFIX}/{REF}/notebooks/{notebook})"
    )


def setup_cell_source() -> str:
    """The first code cell of every notebook: on Colab it clones the course at ``REF``,
    installs ``lora_teach`` and points it at the data; elsewhere it does nothing."""
    return f'''# NBVAL_SKIP
# Colab setup: on Google Colab this installs lora_teach and finds the data; elsewhere it does nothing.
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.isdir("/content/lora-course"):
    subprocess.run(["git", "clone", "--depth", "1", "--branch", "{REF}", "{REPO_URL}", "/content/lora-course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "/content/lora-course"], check=True)
if "google.colab" in sys.modules:
    os.environ["LORA_TEACH_DATA"] = "/content/lora-course/data"'''
