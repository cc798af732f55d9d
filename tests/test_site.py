"""The static course site: built from the stored outputs, served locally and opened in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import io
import os
import re
import shutil
import struct
import threading
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lora_teach import cli
from lora_teach.course.editions import _title_and_goals
from lora_teach.course.site import SITE_TITLE, build_site
from tests.conftest import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
VIEWPORT = {"width": 1280, "height": 900}
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
)
pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_site(out, REPO / "notebooks")
    return out


@pytest.fixture(scope="module")
def server(site):
    """Serve the site on a free local port for the duration of the module."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport=VIEWPORT)
    # Offline: CDN scripts (MathJax, require.js) and the Colab badge image are not fetched.
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    page.set_default_timeout(60_000)
    yield page
    page.close()


def _expected_pages() -> list[tuple[str, str]]:
    """(file name, expected title) of every page, index first."""
    pages = [("index.html", SITE_TITLE)]
    for path in NOTEBOOKS:
        title, _ = _title_and_goals(nbformat.read(path, 4))
        pages.append((f"{path.stem}.html", f"{title} · {SITE_TITLE}"))
    return pages


def test_build_writes_index_and_one_page_per_notebook(site):
    assert sorted(p.name for p in site.glob("*.html")) == sorted(name for name, _ in _expected_pages())


def test_pages_drop_progress_bars_and_link_previous_and_next(site):
    names = [f"{p.stem}.html" for p in NOTEBOOKS]
    for i, name in enumerate(names):
        text = (site / name).read_text(encoding="utf-8")
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in text, (
            f"{name}: stderr or error output"
        )
        assert 'href="index.html"' in text
        if i > 0:
            assert f'rel="prev" href="{names[i - 1]}"' in text
        if i + 1 < len(names):
            assert f'rel="next" href="{names[i + 1]}"' in text


def test_cli_build_site(tmp_path, capsys):
    source = tmp_path / "notebooks"
    source.mkdir()
    shutil.copy(NOTEBOOKS[0], source)
    assert cli.main(["build-site", str(tmp_path / "out"), "--notebooks", str(source)]) == 0
    assert (tmp_path / "out" / "index.html").exists()
    assert cli.main(["build-site", str(tmp_path / "out2"), "--notebooks", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["build-site", str(tmp_path / "out2"), "--notebooks", str(tmp_path / "empty")]) == 2
    assert "holds no notebooks" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow
@needs_chromium
def test_every_page_loads_with_title_figure_and_no_traceback(server, page):
    for name, title in _expected_pages():
        response = page.goto(f"{server}/{name}", wait_until="load")
        assert response is not None and response.ok, f"{name}: HTTP {response and response.status}"
        assert page.title() == title, name
        figures = page.locator('img[src^="data:image/"], .jp-RenderedSVG svg')
        assert figures.count() >= 1, f"{name}: no figure"
        assert figures.first.evaluate("img => img.complete && img.naturalWidth > 0"), (
            f"{name}: figure not decoded"
        )
        text = page.locator("body").inner_text()
        assert "Traceback (most recent call last)" not in text, f"{name} shows a Python traceback"
        assert page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0, (
            f"{name}: error output"
        )
        assert page.locator(".ansi-red-fg").count() == 0, f"{name}: coloured (error) terminal output"


@pytest.mark.slow
@needs_chromium
def test_navigation_walks_the_course_in_order(server, page):
    page.goto(f"{server}/index.html")
    page.locator("table a").first.click()
    seen = [page.url.rsplit("/", 1)[1]]
    while page.locator('nav a[rel="next"]').count():
        page.locator('nav a[rel="next"]').first.click()
        page.wait_for_load_state("load")
        seen.append(page.url.rsplit("/", 1)[1])
    assert seen == [f"{p.stem}.html" for p in NOTEBOOKS]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
@needs_chromium
def test_index_screenshot_is_a_non_blank_png(server, page):
    """A reference image is not compared: fonts differ between machines, so a pixel diff would be flaky."""
    from PIL import Image

    page.goto(f"{server}/index.html", wait_until="load")
    shot = page.screenshot()
    if os.environ.get("LORA_TEACH_SCREENSHOT"):
        Path(os.environ["LORA_TEACH_SCREENSHOT"]).write_bytes(shot)
    assert _png_size(shot) == (VIEWPORT["width"], VIEWPORT["height"])
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    not_white = float((pixels.sum(axis=1) < 700).mean())
    assert not_white > 0.02, f"the index looks blank ({100 * not_white:.1f} % non-white pixels)"
    assert len(np.unique(pixels, axis=0)) > 50, "too few colours: no text or figures rendered"
