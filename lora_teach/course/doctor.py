"""``lora-teach doctor``: check Python, the packages, the device and the data, each with OK or a fix."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass

MIN_PYTHON = (3, 10)
# (import name, pip name, essential?): everything a notebook imports is essential; nbval only runs the tests.
PACKAGES = [
    ("torch", "torch", True),
    ("torchvision", "torchvision", True),
    ("jupyterlab", "jupyterlab", True),
    ("matplotlib", "matplotlib", True),
    ("tqdm", "tqdm", True),
    ("nbval", "nbval", False),
]
INSTALL_FIX = (
    'install the course into your environment: pip install -e ".[test,lab]" (from the course folder)'
)
# On Colab the notebook's setup cell installs the course; JupyterLab and the test tools are not wanted there.
COLAB_FIX = "run the notebook's first code cell (the Colab setup cell), then this check again"
COLAB_NOT_NEEDED = {"jupyterlab": "Colab runs the notebooks", "nbval": "it only runs the course's tests"}


@dataclass
class DoctorRow:
    """One line of the report: what was checked, what was found, and the fix when it is not OK."""

    name: str
    value: str
    ok: bool
    fix: str = ""
    essential: bool = True

    @property
    def status(self) -> str:
        """ "OK", "FAIL" (essential) or "WARN" (optional)."""
        if self.ok:
            return "OK"
        return "FAIL" if self.essential else "WARN"


def _python_row() -> DoctorRow:
    version = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    need = ".".join(map(str, MIN_PYTHON))
    return DoctorRow("python", version, ok, "" if ok else f"use Python {need} or newer")


def _install_fix() -> str:
    """How to install what is missing: the setup cell on Colab, the course's extras elsewhere."""
    return COLAB_FIX if on_colab() else INSTALL_FIX


def _package_row(module: str, pip_name: str, essential: bool) -> DoctorRow:
    try:
        imported = importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - a broken install is reported, whatever the cause
        if on_colab():
            fix = f"{COLAB_FIX}; if it is still missing, run `%pip install {pip_name}` in a cell"
        else:
            fix = f"pip install {pip_name}, or {INSTALL_FIX}"
        return DoctorRow(module, f"not importable ({type(error).__name__}: {error})", False, fix, essential)
    return DoctorRow(module, str(getattr(imported, "__version__", "installed")), True, "", essential)


def shown_path(path: os.PathLike | str) -> str:
    """``path`` as a reader finds it: relative to the working directory when it lies there or one folder
    up (``../data/MNIST/raw`` from ``notebooks/``), otherwise absolute with ``~`` for the home folder."""
    path = os.path.abspath(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        relative = path
    if not relative.startswith(os.pardir + os.sep + os.pardir) and not os.path.isabs(relative):
        return relative
    home = os.path.expanduser("~")
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


def on_colab() -> bool:
    """True inside Google Colab's runtime (its ``google.colab`` module is loaded or importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def _colab_row() -> DoctorRow:
    """On Colab: where lora_teach and the data came from, and the torch Colab brought."""
    found = []
    try:
        package = importlib.import_module("lora_teach")
        found.append(f"lora_teach from {os.path.dirname(package.__file__)}")
    except Exception as error:  # noqa: BLE001
        return DoctorRow("colab", f"on Google Colab, lora_teach not importable ({error})", False, COLAB_FIX)
    try:
        torch = importlib.import_module("torch")
        found.append(f"Colab's own torch {torch.__version__}")
    except Exception:  # noqa: BLE001 - the torch row says what is wrong
        pass
    data = os.environ.get("LORA_TEACH_DATA", "")
    ok = bool(data) and os.path.isdir(data)
    found.append(f"data in {data}" if ok else "LORA_TEACH_DATA not set to the clone's data folder")
    return DoctorRow("colab", "on Google Colab: " + "; ".join(found), ok, "" if ok else COLAB_FIX)


def _device_row() -> DoctorRow:
    try:
        from lora_teach.train import get_device

        device = get_device()
    except Exception as error:  # noqa: BLE001
        return DoctorRow("device", f"unknown ({type(error).__name__}: {error})", False, _install_fix())
    notes = {
        "cuda": "an NVIDIA GPU",
        "mps": "Apple silicon GPU",
        "cpu": "no GPU found; every notebook runs on the CPU in minutes",
    }
    return DoctorRow("device", f"{device.type} ({notes.get(device.type, device.type)})", True)


def _data_row() -> DoctorRow:
    try:
        from lora_teach.data import DataError, ensure_mnist
    except Exception as error:  # noqa: BLE001
        return DoctorRow("data", f"cannot check ({type(error).__name__}: {error})", False, _install_fix())
    try:
        raw = ensure_mnist(download=False)
    except DataError as error:
        message = str(error)
        problem, _, fix = message.partition(" Fix: ")
        return DoctorRow(
            "data", problem, False, COLAB_FIX if on_colab() else fix.rstrip(".") or "see data/README.md"
        )
    return DoctorRow("data", f"MNIST in {shown_path(raw)} (4 files, MD5 sums match)", True)


def doctor_rows() -> Iterator[DoctorRow]:
    """Check Python, the packages, the device and the MNIST files, yielding one row each as it is known (and
    on Colab, a ``colab`` row with what the setup cell installed)."""
    colab = on_colab()
    yield _python_row()
    if colab:
        yield _colab_row()
    for module, pip_name, essential in PACKAGES:
        if colab and module in COLAB_NOT_NEEDED:
            yield DoctorRow(module, f"not needed on Colab ({COLAB_NOT_NEEDED[module]})", True, "", False)
        else:
            yield _package_row(module, pip_name, essential)
    yield _device_row()
    yield _data_row()


def doctor_report() -> list[DoctorRow]:
    """All of :func:`doctor_rows`, as a list."""
    return list(doctor_rows())


NAME_WIDTH = max(len(name) for name in ["python", "colab", "device", "data", *(m for m, _, _ in PACKAGES)])


def format_row(row: DoctorRow, width: int = NAME_WIDTH) -> str:
    """One row as aligned text, with its fix under it when it is not OK."""
    line = f"{row.status:<4}  {row.name:<{width}}  {row.value}"
    return line + (f"\n{'':<4}  {'':<{width}}  fix: {row.fix}" if row.fix else "")


def verdict(rows: list[DoctorRow]) -> str:
    """The last line: ready, ready for the notebooks only, or what to fix."""
    failed = [row.name for row in rows if row.status == "FAIL"]
    warned = [row.name for row in rows if row.status == "WARN"]
    if failed:
        return f"Not ready: fix {', '.join(failed)} (see above)."
    if warned:
        return f"Ready for the notebooks ({', '.join(warned)} is only needed to run the tests)."
    return "All good: you are ready for the course."


def format_report(rows: list[DoctorRow]) -> str:
    """The report as aligned text, a fix under each row that is not OK, and a verdict."""
    width = max(len(row.name) for row in rows)
    return "\n".join([*(format_row(row, width) for row in rows), verdict(rows)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``lora-teach doctor`` takes no options."""


def run(args: argparse.Namespace) -> int:
    """Print the report row by row as each check ends (importing torch takes seconds); exit status 1 when an
    essential check fails."""
    print("Checking Python, the packages, the device and the data (importing torch takes a few seconds):")
    rows = []
    for row in doctor_rows():
        print(format_row(row), flush=True)
        rows.append(row)
    print(verdict(rows))
    return 1 if any(row.status == "FAIL" for row in rows) else 0
