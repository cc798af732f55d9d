"""``lora-teach build-site OUT_DIR``: the course as a static HTML site, one page per notebook.

Pages show the complete notebooks with their stored outputs (or recompute them with ``--execute``),
without stderr (progress bars, warnings), with previous / next links; ``index.html`` holds the syllabus
and ``errata.html`` the errata page. The site needs nothing from the network: math is rendered to MathML
when the site is built, and a link either leads to a page of the site (notebook links become their pages,
``docs/errata.md`` the errata page) or is an absolute address (papers; files of the repository).
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import posixpath
import re
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from lora_teach.course.colab import COLAB_PREFIX, REF, REPO_URL
from lora_teach.course.editions import (
    NotebookReadError,
    _read,
    _title_and_goals,
    check_not_in_notebooks,
    course_notebooks,
)
from lora_teach.outputs import OutputError, atomic_folder, check_output_dir, error_line

SITE_TITLE = "LoRA from first principles"
GENERATOR = '<meta name="generator" content="lora-teach build-site">'  # marks every page the site writes
SITE_DOCS = {"errata.md": "errata.html"}  # pages of docs/ that the site holds (others link to the repository)
NAV_STYLE = """<style>
.course-nav { font-family: system-ui, sans-serif; padding: 0.6em 1em; background: #f3f3f3;
  border-bottom: 1px solid #ddd; display: flex; justify-content: space-between; gap: 1em; }
.course-nav a { color: #1f4e99; text-decoration: none; }
.course-nav a:hover { text-decoration: underline; }
a.colab-link { display: inline-block; padding: 0.15em 0.6em; border: 1px solid #f9ab00; border-radius: 4px;
  color: #333; background: #fff8e1; font-family: system-ui, sans-serif; font-size: 0.9em; text-decoration: none; }
math { font-size: 1.1em; }
math[display="block"] { margin: 0.8em 0; }
</style>"""
PAGE_STYLE = """<style>
body { font-family: system-ui, sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em; color: #222;
  line-height: 1.5; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; width: 100%; }
td, th { border-bottom: 1px solid #ddd; padding: 0.6em; vertical-align: top; text-align: left; }
td.figure img { width: 240px; border: 1px solid #eee; }
a { color: #1f4e99; }
code { background: #f5f5f5; padding: 0 0.2em; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; }
</style>"""
PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
{generator}
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{style}
</head>
<body>
{nav}
{body}
{nav}
</body>
</html>
"""
INDEX_BODY = """<h1>{title}</h1>
<p>A notebook course on low-rank adaptation: from the rank of a matrix to LoRA, its experiments and its
variants. Each page below is a complete notebook (solutions included) with its results; to work through the
exercises yourself, open the student edition: the repository's <code>student/</code> folder, or the
"Open in Colab" link at the top of each page. Where the source texts are wrong, the
<a href="errata.html">errata page</a> collects every case.</p>
<table>
<thead><tr><th>notebook</th><th>you will be able to</th><th>a figure from it</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""
# nbconvert's JupyterLab template without what it loads from a CDN (require.js, MathJax, Mermaid, widgets).
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock html_head_js_requirejs %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
"""


class SiteError(ValueError):
    """Something in the notebooks that the site cannot show (math it cannot render)."""


def _page_name(path: Path) -> str:
    return f"{path.stem}.html"


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading, so links such as ``errata.md#e-04a-...`` find it here too."""
    text = re.sub(r"<[^>]+>", "", html.unescape(text)).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def site_href(url: str, base: str, pages: dict[str, str]) -> str:
    """Where a link of a page from the repository folder ``base`` ("notebooks" or "docs") points on the
    site: a page of the site when ``pages`` (repository path -> page) has its target, the file on GitHub
    for any other relative link, and the link itself when it is absolute or an anchor."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path or url.startswith("/"):
        return url
    target = posixpath.normpath(posixpath.join(base, unquote(parts.path)))
    if target in pages:
        href = pages[target]
    elif target.startswith("../"):
        return url  # outside the repository: left as written
    else:
        href = f"{REPO_URL}/blob/{REF}/{target}"
    return href + (f"#{parts.fragment}" if parts.fragment else "")


def math_to_mathml(latex: str, display: str) -> str:
    """MathML for one formula (``display``: "inline" or "block"); SiteError if it cannot be rendered."""
    from latex2mathml.converter import convert

    # In \text{...} TeX takes \_ for an underscore; latex2mathml would keep the backslash.
    latex = re.sub(r"\\text\{([^{}]*)\}", lambda m: "\\text{" + m.group(1).replace("\\_", "_") + "}", latex)
    try:
        return convert(latex, display=display)
    except Exception as error:  # noqa: BLE001 - any parser error: say which formula
        raise SiteError(f"cannot render the math ${latex}$ ({type(error).__name__}: {error})") from error


def _renderer_class():
    """nbconvert's Markdown renderer, with math as MathML, links rewritten for the site and the Colab
    badge as a plain link (its image would come from the network)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer

    class SiteRenderer(IPythonRenderer):
        def __init__(self, href: Callable[[str], str], github_ids: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.href, self.github_ids = href, github_ids

        def inline_math(self, body: str) -> str:
            return math_to_mathml(body, "inline")

        def block_math(self, body: str) -> str:
            return math_to_mathml(body, "block")

        def latex_environment(self, name: str, body: str) -> str:
            return math_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")

        def link(self, text: str, url: str, title: str | None = None) -> str:
            if url.startswith(COLAB_PREFIX):
                return f'<a class="colab-link" href="{html.escape(url)}">Open in Colab</a>'
            return super().link(text, self.href(url), title)

        def heading(self, text: str, level: int, **attrs) -> str:
            if self.github_ids:
                return f'<h{level} id="{github_slug(text)}">{text}</h{level}>\n'
            return super().heading(text, level, **attrs)

    return SiteRenderer


def markdown_to_html(
    source: str, href: Callable[[str], str], github_ids: bool = False, attachments: dict | None = None
) -> str:
    """Markdown as the site shows it (math as MathML, links through ``href``, a cell's attached images)."""
    from nbconvert.filters.markdown_mistune import MarkdownWithMath

    renderer = _renderer_class()(href, github_ids=github_ids, escape=False, attachments=attachments)
    return MarkdownWithMath(renderer=renderer).render(source)


def _exporter(href: Callable[[str], str]):
    """An HTMLExporter (JupyterLab's look) that loads nothing from the network and renders Markdown
    with ``markdown_to_html``."""
    from jinja2 import DictLoader, pass_context
    from nbconvert import HTMLExporter

    class SiteExporter(HTMLExporter):
        @pass_context
        def markdown2html(self, context, source):
            return markdown_to_html(source, href, attachments=context.get("cell", {}).get("attachments", {}))

    return SiteExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"site.html.j2": OFFLINE_TEMPLATE})],
        template_file="site.html.j2",
    )


def _without_progress_bars(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without stderr streams (tqdm bars and warnings are not results)."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    return notebook


def _first_figure(notebook: nbformat.NotebookNode) -> str | None:
    """The first PNG output as a data URI, or None."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                png = png if isinstance(png, str) else base64.b64encode(png).decode()
                return "data:image/png;base64," + png.replace("\n", "")
    return None


def _nav(previous: tuple[str, str] | None, following: tuple[str, str] | None) -> str:
    left = (
        f'<a rel="prev" href="{previous[0]}">&larr; {html.escape(previous[1])}</a>'
        if previous
        else "<span></span>"
    )
    right = (
        f'<a rel="next" href="{following[0]}">{html.escape(following[1])} &rarr;</a>'
        if following
        else "<span></span>"
    )
    return f'<nav class="course-nav">{left}<a href="index.html">Course index</a>{right}</nav>'


def _execute(notebook: nbformat.NotebookNode, folder: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return notebook


def written_by_build_site(path: Path) -> bool:
    """Whether the file at ``path`` is a page this command wrote (it carries ``GENERATOR`` in its head)."""
    try:
        with open(path, encoding="utf-8") as file:
            return GENERATOR in file.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


def _check_dependencies() -> None:
    missing = [m for m in ("nbconvert", "latex2mathml") if not _importable(m)]
    if missing:
        raise OutputError(
            f'build-site needs {" and ".join(missing)}: pip install -e ".[site]" (from the course folder)'
        )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_site(
    out_dir: Path | str, notebooks: Path | str | None = None, execute: bool = False, force: bool = False
) -> list[Path]:
    """Write ``index.html``, ``errata.html`` and one page per notebook into ``out_dir``; return the pages.

    Refused (OutputError) before any work: an ``out_dir`` that is a file, cannot be written, or is the
    notebooks folder or inside it, and one holding a page of the same name that this command did not write
    (unless ``force``). The pages are made in a temporary folder and moved into ``out_dir`` all together
    or not at all; other files in ``out_dir`` stay.
    """
    paths = course_notebooks(notebooks)
    out_dir = check_output_dir(out_dir, "OUT_DIR")
    check_not_in_notebooks(out_dir, paths[0].parent, "the site")
    _check_dependencies()
    docs = paths[0].parent.parent / "docs"
    site_docs = {name: page for name, page in SITE_DOCS.items() if (docs / name).is_file()}
    names = ["index.html", *site_docs.values(), *(_page_name(p) for p in paths)]
    if not force:
        for name in names:
            if (out_dir / name).exists() and not written_by_build_site(out_dir / name):
                raise OutputError(
                    f"OUT_DIR {out_dir}: {name} exists and was not written by build-site; it is not replaced "
                    "(choose another folder, or pass --force to replace it)"
                )
    loaded = []
    for path in paths:
        notebook = _read(path)
        if execute:
            print(f"executing {path.name} ...", flush=True)
            notebook = _execute(notebook, path.parent)
        loaded.append((path, notebook, _title_and_goals(notebook)))
    folder = paths[0].parent.name
    pages = {f"{folder}/{path.name}": _page_name(path) for path in paths}
    pages |= {f"docs/{name}": page for name, page in site_docs.items()}
    with atomic_folder(out_dir, "OUT_DIR") as tmp:
        _write_pages(tmp, loaded, pages, folder)
        for name, page in site_docs.items():
            _write_doc_page(tmp / page, docs / name, pages)
    return [out_dir / name for name in names]


def _with_nav(page: str, nav: str) -> str:
    """A page from nbconvert with the site's mark and style in its head and ``nav`` at its top and bottom."""
    page = page.replace("<head>", f"<head>\n{GENERATOR}", 1).replace("</head>", f"{NAV_STYLE}\n</head>", 1)
    body = re.search(r"<body[^>]*>", page)
    page = page[: body.end()] + f"\n{nav}" + page[body.end() :] if body else nav + page
    return page.replace("</body>", f"{nav}\n</body>", 1)


def _write_pages(out_dir: Path, loaded: list, pages: dict[str, str], folder: str) -> None:
    """Write every notebook's page and the index into ``out_dir``."""
    exporter = _exporter(lambda url: site_href(url, folder, pages))
    rows = []
    for index, (path, notebook, (title, goals)) in enumerate(loaded):
        previous = loaded[index - 1] if index > 0 else None
        following = loaded[index + 1] if index + 1 < len(loaded) else None
        nav = _nav(
            (_page_name(previous[0]), previous[2][0]) if previous else None,
            (_page_name(following[0]), following[2][0]) if following else None,
        )
        try:
            page, _ = exporter.from_notebook_node(
                _without_progress_bars(notebook), resources={"metadata": {"name": f"{title} · {SITE_TITLE}"}}
            )
        except SiteError as error:
            raise SiteError(f"{path.name}: {error}") from error
        (out_dir / _page_name(path)).write_text(_with_nav(page, nav), encoding="utf-8")
        rows.append(_index_row(path, notebook, title, goals, lambda url: site_href(url, folder, pages)))
    index_page = PAGE_TEMPLATE.format(
        generator=GENERATOR,
        title=SITE_TITLE,
        style=PAGE_STYLE,
        nav="",
        body=INDEX_BODY.format(title=SITE_TITLE, rows="\n".join(rows)),
    )
    (out_dir / "index.html").write_text(index_page, encoding="utf-8")


def _write_doc_page(target: Path, source: Path, pages: dict[str, str]) -> None:
    """A page of the site from a Markdown file of ``docs/`` (its headings keep GitHub's anchors)."""
    text = source.read_text(encoding="utf-8")
    title = next(
        (line.lstrip("#").strip() for line in text.split("\n") if line.startswith("# ")), source.stem
    )
    try:
        body = markdown_to_html(text, lambda url: site_href(url, "docs", pages), github_ids=True)
    except SiteError as error:
        raise SiteError(f"docs/{source.name}: {error}") from error
    nav = '<nav class="course-nav"><span></span><a href="index.html">Course index</a><span></span></nav>'
    page = PAGE_TEMPLATE.format(
        generator=GENERATOR,
        title=f"{html.escape(title)} · {SITE_TITLE}",
        style=PAGE_STYLE + NAV_STYLE,
        nav=nav,
        body=body,
    )
    target.write_text(page, encoding="utf-8")


def _index_row(
    path: Path, notebook: nbformat.NotebookNode, title: str, goals: str, href: Callable[[str], str]
) -> str:
    goal_items = [
        line.lstrip("-* ").strip() for line in goals.split("\n") if line.lstrip().startswith(("-", "*"))
    ]
    rendered = [re.sub(r"^<p>|</p>\s*$", "", markdown_to_html(goal, href).strip()) for goal in goal_items]
    goal_html = "<ul>" + "".join(f"<li>{goal}</li>" for goal in rendered) + "</ul>" if rendered else ""
    figure = _first_figure(notebook)
    figure_html = f'<img src="{figure}" alt="first figure of {html.escape(title)}">' if figure else ""
    return (
        f'<tr><td><a href="{_page_name(path)}">{html.escape(title)}</a></td>'
        f'<td>{goal_html}</td><td class="figure">{figure_html}</td></tr>'
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``build-site OUT_DIR [--notebooks DIR] [--execute] [--force]``."""
    parser.add_argument(
        "out",
        type=Path,
        metavar="OUT_DIR",
        help="the folder to write the site into (created if needed); pages that build-site did not write "
        "are not replaced without --force",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="the course's notebooks folder (default: the nearest notebooks/ here or above)",
    )
    parser.add_argument(
        "--execute", action="store_true", help="run every notebook first instead of using its stored outputs"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace pages of the same name that build-site did not write"
    )


def run(args: argparse.Namespace) -> int:
    """Build the site and say where it is."""
    try:
        pages = build_site(args.out, args.notebooks, execute=args.execute, force=args.force)
    except (OutputError, SiteError, NotebookReadError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(f"wrote {len(pages)} pages to {args.out}; open {args.out / 'index.html'}")
    return 0
