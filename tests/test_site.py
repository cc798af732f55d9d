"""The static course site: built from the stored outputs, served locally and opened in headless Chromium with
the network cut off: every link resolves inside the site, math renders, nothing is fetched from elsewhere."""

from __future__ import annotations

import functools
import html.parser
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
from lora_teach.course.colab import REF, REPO_URL
from lora_teach.course.editions import _title_and_goals
from lora_teach.course.site import GENERATOR, SITE_TITLE, build_site, site_href
from lora_teach.outputs import OutputError
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, formula_count

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
    """A page that cannot reach anything but the local server; ``page.blocked`` lists what it tried."""
    page = browser.new_page(viewport=VIEWPORT)
    page.blocked = []

    def block(route):
        page.blocked.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]|data:)"), block)
    page.set_default_timeout(60_000)
    yield page
    page.close()


def _expected_pages() -> list[tuple[str, str]]:
    """(file name, expected title) of every page, index first, the errata page last."""
    pages = [("index.html", SITE_TITLE)]
    for path in NOTEBOOKS:
        title, _ = _title_and_goals(nbformat.read(path, 4))
        pages.append((f"{path.stem}.html", f"{title} · {SITE_TITLE}"))
    return [*pages, ("errata.html", f"Errata of the source texts · {SITE_TITLE}")]


def _formulas(name: str) -> int:
    """How many formulas ($...$ or $$...$$, outside code) the Markdown of a page holds."""
    if name == "errata.html":
        texts = [(REPO / "docs" / "errata.md").read_text(encoding="utf-8")]
    elif name == "index.html":
        return sum(
            formula_count(goal)
            for path in NOTEBOOKS
            for goal in _title_and_goals(nbformat.read(path, 4))[1].split("\n")
            if goal.lstrip().startswith(("-", "*"))
        )
    else:
        cells = nbformat.read(REPO / "notebooks" / name.replace(".html", ".ipynb"), 4).cells
        texts = [c.source for c in cells if c.cell_type == "markdown"]
        texts += [
            o.data["text/markdown"]
            for c in cells
            for o in c.get("outputs", [])
            if "text/markdown" in o.get("data", {})
        ]
    return sum(formula_count(text) for text in texts)


def test_build_writes_index_errata_and_one_page_per_notebook(site):
    assert sorted(p.name for p in site.iterdir()) == sorted(name for name, _ in _expected_pages())
    for name, _ in _expected_pages():
        assert GENERATOR in (site / name).read_text(encoding="utf-8")[:4096], f"{name} is not marked"


@pytest.mark.parametrize(
    "url, base, expected",
    [
        ("01_rank_and_decomposition.ipynb", "notebooks", "01.html"),
        ("../docs/errata.md#notebook-03", "notebooks", "errata.html#notebook-03"),
        ("../notebooks/01_rank_and_decomposition.ipynb", "docs", "01.html"),
        ("#a-heading", "notebooks", "#a-heading"),
        ("https://arxiv.org/abs/2106.09685", "notebooks", "https://arxiv.org/abs/2106.09685"),
        ("../docs/performance.md", "notebooks", f"{REPO_URL}/blob/{REF}/docs/performance.md"),
        ("../data/README.md#checksums", "notebooks", f"{REPO_URL}/blob/{REF}/data/README.md#checksums"),
    ],
)
def test_links_lead_to_pages_of_the_site_or_to_an_absolute_address(url, base, expected):
    pages = {"notebooks/01_rank_and_decomposition.ipynb": "01.html", "docs/errata.md": "errata.html"}
    assert site_href(url, base, pages) == expected


class _Links(html.parser.HTMLParser):
    """The ids of a page, and the addresses its links and resources point to."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.resources = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for key in ("src", "href") if tag in ("img", "script", "link", "iframe", "source") else ():
            if attrs.get(key):
                self.resources.append(attrs[key])


def _parsed(site: Path) -> dict[str, _Links]:
    parsed = {}
    for path in sorted(site.glob("*.html")):
        parsed[path.name] = _Links()
        parsed[path.name].feed(path.read_text(encoding="utf-8"))
    return parsed


def test_every_link_of_the_site_resolves_inside_it_and_it_loads_nothing_from_elsewhere(site):
    parsed = _parsed(site)
    for name, page in parsed.items():
        for resource in page.resources:
            assert resource.startswith("data:"), f"{name} loads {resource[:80]} (the site must work offline)"
        for link in page.links:
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            target, _, fragment = link.partition("#")
            target = target or name
            assert target in parsed, f"{name}: the link {link} leads to no page of the site"
            assert not fragment or fragment in parsed[target].ids, (
                f"{name}: {link}: {target} has no #{fragment}"
            )
    assert "cdnjs" not in "".join(p.read_text(encoding="utf-8") for p in site.glob("*.html"))


def test_next_links_and_errata_links_are_pages_of_the_site(site):
    text = (site / "00_welcome_and_setup.html").read_text(encoding="utf-8")
    assert 'href="01_rank_and_decomposition.html"' in text and "01_rank_and_decomposition.ipynb" not in text
    errata = [
        link for links in _parsed(site).values() for link in links.links if link.startswith("errata.html")
    ]
    assert len(errata) >= 10, errata


def test_the_colab_link_of_each_page_opens_the_student_edition_as_plain_text(site):
    for path in NOTEBOOKS:
        text = (site / f"{path.stem}.html").read_text(encoding="utf-8")
        assert 'class="colab-link" href="https://colab.research.google.com/github/' in text
        assert f"/blob/{REF}/student/{path.name}" in text
        assert "colab-badge.svg" not in text, "the badge image would come from the network"


def test_math_is_mathml_built_in_the_page(site):
    for name, _ in _expected_pages():
        text = (site / name).read_text(encoding="utf-8")
        assert text.count("<math ") == _formulas(name), f"{name}: not every formula became MathML"
    assert _formulas("01_rank_and_decomposition.html") >= 5  # Eckart-Young and M_r among them


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
def test_every_page_loads_offline_with_title_figure_math_and_no_traceback(server, page):
    for name, title in _expected_pages():
        response = page.goto(f"{server}/{name}", wait_until="load")
        assert response is not None and response.ok, f"{name}: HTTP {response and response.status}"
        assert page.title() == title, name
        assert page.blocked == [], f"{name} asked for {page.blocked[:3]} from outside the site"
        assert page.locator("math em, math i, math strong").count() == 0, f"{name}: Markdown inside math"
        assert page.locator("math").count() == _formulas(name), f"{name}: a formula did not render"
        sizes = page.locator("math").evaluate_all("ms => ms.map(m => m.getBoundingClientRect().width)")
        assert all(width > 0 for width in sizes), f"{name}: a formula renders with no width"
        prose = page.locator(".jp-RenderedMarkdown, body > p, li").evaluate_all(
            "els => els.map(e => { const c = e.cloneNode(true);"
            " c.querySelectorAll('code, pre, math, a').forEach(x => x.remove()); return c.textContent; }).join(' ')"
        )
        leftover = re.findall(r"\$|\\[a-zA-Z]+|_\{|\^\{|\w_\w", prose)
        assert not leftover, f"{name}: TeX left in the prose as text: {leftover[:5]}"
        if name == "errata.html":
            continue
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
def test_every_link_a_reader_can_follow_resolves_in_the_browser(server, page):
    """Follows every link of the site in Chromium: the target page loads and holds the anchor."""
    ids = {}
    for name, _ in _expected_pages():
        page.goto(f"{server}/{name}", wait_until="load")
        ids[page.url] = set(page.locator("[id]").evaluate_all("els => els.map(e => e.id)"))
        ids[page.url, "links"] = page.locator("a[href]").evaluate_all("as => as.map(a => a.href)")
    for name, _ in _expected_pages():
        for href in ids[f"{server}/{name}", "links"]:
            if not href.startswith(server):
                assert href.startswith(("https://", "http://")), href
                continue
            target, _, fragment = href.partition("#")
            assert target in ids, f"{name}: {href} leads to no page of the site"
            assert not fragment or fragment in ids[target], f"{name}: {href}: no such anchor"
    assert page.blocked == []


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


# ---------------------------------------------------------------- what build-site never overwrites (22.4, 22.5)


def _one_notebook(tmp_path: Path) -> Path:
    source = tmp_path / "notebooks"
    source.mkdir()
    shutil.copy(NOTEBOOKS[0], source)
    return source


@pytest.mark.parametrize("where", [".", "site"])
def test_build_site_refuses_the_notebooks_folder(tmp_path, capsys, where):
    source = _one_notebook(tmp_path)
    assert cli.main(["build-site", str(source / where), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert "is the notebooks folder or inside it" in err and err.count("\n") == 1
    assert sorted(p.name for p in source.iterdir()) == [NOTEBOOKS[0].name]


def test_build_site_replaces_only_pages_it_wrote(tmp_path, capsys):
    source = _one_notebook(tmp_path)
    out = tmp_path / "public_html"
    out.mkdir()
    (out / "index.html").write_text("<p>my home page</p>")
    (out / "photo.jpg").write_bytes(b"\xff\xd8")
    assert cli.main(["build-site", str(out), "--notebooks", str(source)]) == 2
    err = capsys.readouterr().err
    assert "index.html exists and was not written by build-site" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "photo.jpg"]
    assert (out / "index.html").read_text() == "<p>my home page</p>"
    assert cli.main(["build-site", str(out), "--notebooks", str(source), "--force"]) == 0
    assert cli.main(["build-site", str(out), "--notebooks", str(source)]) == 0, "its own pages: replaced"
    assert (out / "photo.jpg").read_bytes() == b"\xff\xd8"


def test_a_site_that_fails_midway_leaves_the_old_site_and_names_out_dir(tmp_path, capsys, monkeypatch):
    source = _one_notebook(tmp_path)
    out = tmp_path / "site"
    assert cli.main(["build-site", str(out), "--notebooks", str(source)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise OSError(30, "Read-only file system", str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match=rf"^OUT_DIR {re.escape(str(out))}: could not write .*Read-only"):
        build_site(out, source)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "site"]
