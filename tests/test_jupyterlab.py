"""End to end: JupyterLab serves notebook 00, headless Chromium runs all its cells through the UI."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "00_welcome_and_setup.ipynb"
TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="headless Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
    pytest.mark.skipif(not NOTEBOOK.exists(), reason="notebook 00 does not exist yet"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """User settings for this test only: render every cell (no windowing) and fetch no news."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, values in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port with a token, rooted at a copy of notebook 00; stopped afterwards."""
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:  # clear the stored outputs, so that whatever the page shows was just computed
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, root / NOTEBOOK.name)
    _write_settings(tmp_path / "settings")
    port, token = _free_port(), os.urandom(16).hex()
    env = {
        **os.environ,
        "LORA_TEACH_DATA": str(REPO / "data"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI containers run as root
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed in the finally block
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited early:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("jupyter lab did not answer within 120 s")
            time.sleep(1)
        yield base, token
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            server.wait(timeout=30)
        log.close()


def _run_all_cells(page, folder: Path, attempts: int = 3) -> None:
    """Run > Run All Cells, through the menus; retried when no cell starts running (a click
    that lands while the page is still settling does nothing). Saves a screenshot if all fail."""
    started = page.locator(".jp-NotebookPanel .jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    for _ in range(attempts):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            started.first.wait_for(timeout=30_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; try the menus again
            page.keyboard.press("Escape")
    page.screenshot(path=str(folder / "run-all-failed.png"))
    pytest.fail(f"Run All Cells started no cell after {attempts} tries; see {folder / 'run-all-failed.png'}")


def test_run_all_cells_of_notebook_00_in_jupyterlab(lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = lab
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
            _run_all_cells(page, tmp_path)
            outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
            for expected in [
                "Device line: ",
                "Data check passed: 60,000 training and 10,000 test images",
                "Correct (q2",
            ]:
                # about 20 s on a quiet machine; minutes on a loaded one (the imports dominate)
                outputs.filter(has_text=expected).first.wait_for(timeout=5 * TIMEOUT_MS)
            device_line = outputs.filter(has_text="Device line: ").first.inner_text()
            assert device_line.split("Device line: ")[1].split()[0] in {"cpu", "cuda", "mps"}
            assert outputs.filter(has_text="All good: you are ready for the course.").count() == 1
            assert page.locator('.jp-NotebookPanel img[src^="data:image/png"]').count() >= 1
            errors = page.locator('.jp-NotebookPanel [data-mime-type="application/vnd.jupyter.stderr"]')
            assert "Traceback" not in " ".join(errors.all_inner_texts())
        finally:
            browser.close()
