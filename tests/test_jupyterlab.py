"""End to end in JupyterLab and headless Chromium: Run All on notebook 00 through the UI, and every formula of
every notebook renders as math (MathJax), none of it eaten by Markdown."""

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
import warnings
from pathlib import Path

import nbformat
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, formula_count

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "00_welcome_and_setup.ipynb"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _formulas(path: Path) -> int:
    return sum(formula_count(c.source) for c in nbformat.read(path, 4).cells if c.cell_type == "markdown")


WITH_MATH = [path for path in NOTEBOOKS if _formulas(path)]
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port with a token, rooted at copies of notebook 00 and of the notebooks
    with math, outputs cleared (whatever a page shows was just computed or rendered); stopped afterwards."""
    tmp_path = tmp_path_factory.mktemp("lab")
    root = tmp_path / "notebooks"
    root.mkdir()
    for path in {NOTEBOOK, *WITH_MATH}:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, root / path.name)
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
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: open notebooks without reloading the page
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
        yield base, token, tmp_path / "jupyterlab.log"
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


# The notebook panel's kernel once it is connected, has answered kernel_info and is idle; null before then.
KERNEL_READY = """async () => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext) return null;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel) return null;
  await kernel.info;
  return kernel.connectionStatus === 'connected' && kernel.status === 'idle' ? kernel.id : null;
}"""
EXPECTED = ["Device line: ", "Data check passed: 60,000 training and 10,000 test images", "Correct (q2"]


def _wait_for_kernel(page, seconds: float = 180) -> str:
    """Waits until the panel's kernel is ready and has kept the same id for 2 s (JupyterLab may replace the
    kernel it started first; a Run All sent to that one is lost). Returns the kernel's id."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        now = page.evaluate(KERNEL_READY)
        if now is not None and now == last:
            return now
        last = now
        time.sleep(2)
    pytest.fail(f"the notebook's kernel was not ready within {seconds:.0f} s")


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


def _restart_and_run_all(page) -> None:
    """Kernel > Restart Kernel and Run All Cells..., confirmed in its dialog."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel and Run All Cells").first.click()
    page.locator(".jp-Dialog .jp-mod-accept").first.click()


def _outputs_appear(outputs, seconds: float) -> str | None:
    """None when every EXPECTED text shows within `seconds`; otherwise the first one missing."""
    deadline = time.monotonic() + seconds
    for expected in EXPECTED:
        try:
            outputs.filter(has_text=expected).first.wait_for(
                timeout=max(1.0, deadline - time.monotonic()) * 1000
            )
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            return expected
    return None


def _what_the_page_shows(page, folder: Path, name: str, server_log: Path) -> str:
    page.screenshot(path=str(folder / name))
    prompts = page.locator(".jp-NotebookPanel .jp-InputPrompt").all_inner_texts()
    shown = [text[:80] for text in page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_inner_texts()]
    log = server_log.read_text(errors="replace")[-1500:]
    return f"prompts {prompts[:14]}, outputs {shown[:6]}; see {folder / name}; server log ends:\n{log}"


def test_run_all_cells_of_notebook_00_in_jupyterlab(lab, tmp_path):
    """Run > Run All Cells on notebook 00 shows the device, data and exercise lines and a figure, no traceback.
    If the outputs do not come (a headless browser sometimes loses the first run), the test says what the page
    showed, then restarts the kernel and runs all once more, as a student would; that run must succeed."""
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token, server_log = lab
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            _wait_for_kernel(page)
            _run_all_cells(page, tmp_path)
            outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
            # about 20 s on a quiet machine; minutes on a loaded one (the imports dominate)
            missing = _outputs_appear(outputs, seconds=240)
            if missing is not None:
                shown = _what_the_page_shows(page, tmp_path, "first-run.png", server_log)
                warnings.warn(f"first Run All showed no {missing!r} within 240 s; {shown}", stacklevel=1)
                _restart_and_run_all(page)
                _wait_for_kernel(page)
                missing = _outputs_appear(outputs, seconds=300)
                assert missing is None, f"no {missing!r} after a restart either; " + _what_the_page_shows(
                    page, tmp_path, "second-run.png", server_log
                )
            device_line = outputs.filter(has_text="Device line: ").first.inner_text()
            assert device_line.split("Device line: ")[1].split()[0] in {"cpu", "cuda", "mps"}
            assert outputs.filter(has_text="All good: you are ready for the course.").count() == 1
            assert page.locator('.jp-NotebookPanel img[src^="data:image/png"]').count() >= 1
            errors = page.locator('.jp-NotebookPanel [data-mime-type="application/vnd.jupyter.stderr"]')
            assert "Traceback" not in " ".join(errors.all_inner_texts())
        finally:
            browser.close()


# Open a notebook without reloading the page (window.jupyterapp: --LabApp.expose_app_in_browser); its panel's id.
OPEN = """async path => {
  const widget = await window.jupyterapp.commands.execute('docmanager:open', {path});
  await widget.context.ready;
  return widget.id;
}"""
CLOSE = "id => window.jupyterapp.shell.widgets('main').find(w => w.id === id).dispose()"
# The text of rendered Markdown without its code, math and links.
PROSE = """els => els.map(e => {
  const copy = e.cloneNode(true);
  copy.querySelectorAll('code, pre, mjx-container, a, script').forEach(x => x.remove());
  return copy.textContent;
}).join(' ')"""


def test_every_formula_renders_as_math_in_jupyterlab(lab, tmp_path):
    """Opens each notebook with math (no kernel needed) and counts MathJax's formulas against the $...$ of its
    Markdown; fails on Markdown inside math, and on TeX left in the prose as text (math Markdown ate)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token, _ = lab
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]|data:|blob:)"), lambda route: route.abort())
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{base}/lab/workspaces/math?token={token}")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.commands.hasCommand('docmanager:open')"
            )
            for path in WITH_MATH:
                opened = page.evaluate(OPEN, path.name)
                panel = page.locator(f"#{opened}")
                panel.locator(".jp-Cell").first.wait_for()
                formulas = panel.locator(".jp-RenderedMarkdown mjx-container")
                expected = _formulas(path)
                deadline = time.monotonic() + 60
                while formulas.count() < expected and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert formulas.count() == expected, (
                    f"{path.name}: {formulas.count()} of {expected} formulas rendered"
                )
                assert panel.locator(".jp-RenderedMarkdown mjx-container em").count() == 0, path.name
                prose = panel.locator(".jp-RenderedMarkdown").evaluate_all(PROSE)
                leftover = re.findall(r"\$|\\[a-zA-Z]+|_\{|\^\{|\w_\w", prose)
                assert not leftover, f"{path.name}: TeX left in the prose as text: {leftover[:5]}"
                page.evaluate(CLOSE, opened)
        finally:
            browser.close()
