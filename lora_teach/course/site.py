"""``lora-teach build-site OUT_DIR``: the course as a static HTML site, one page per notebook.

Pages reuse the outputs stored in the notebooks (or recompute them with ``--execute``),
drop progress bars (stderr), and get previous / next links; ``index.html`` holds the syllabus.
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import re
import sys
from pathlib import Path

import nbformat

from lora_teach.course.editions import _title_and_goals, course_notebooks
from lora_teach.outputs import OutputError, atomic_folder, check_output_dir, error_line

SITE_TITLE = "LoRA from first principles"
NAV_STYLE = """<style>
.course-nav { font-family: system-ui, sans-serif; padding: 0.6em 1em; background: #f3f3f3;
  border-bottom: 1px solid #ddd; display: flex; justify-content: space-between; gap: 1em; }
.course-nav a { color: #1f4e99; text-decoration: none; }
.course-nav a:hover { text-decoration: underline; }
</style>"""
INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.6em; vertical-align: top; text-align: left; }}
td.figure img {{ width: 240px; border: 1px solid #eee; }}
a {{ color: #1f4e99; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>A notebook course on low-rank adaptation: from the rank of a matrix to LoRA, its experiments and its
variants. Each page below is a notebook with its results; open the notebooks themselves to run them.</p>
<table>
<thead><tr><th>notebook</th><th>you will be able to</th><th>a figure from it</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _page_name(path: Path) -> str:
    return f"{path.stem}.html"


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


def build_site(out_dir: Path | str, notebooks: Path | str | None = None, execute: bool = False) -> list[Path]:
    """Write ``index.html`` and one page per notebook into ``out_dir``; return the pages written.

    The pages are made in a temporary folder and moved into ``out_dir`` only when all are done;
    an ``out_dir`` that is a file or cannot be written is refused (OutputError) before any work.
    """
    from nbconvert import HTMLExporter

    paths = course_notebooks(notebooks)
    out_dir = check_output_dir(out_dir, "OUT_DIR")
    loaded = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if execute:
            print(f"executing {path.name} ...", flush=True)
            notebook = _execute(notebook, path.parent)
        loaded.append((path, notebook, _title_and_goals(notebook)))
    exporter = HTMLExporter(template_name="lab")
    with atomic_folder(out_dir) as tmp:
        pages = _write_pages(tmp, loaded, exporter)
    return [out_dir / name for name in pages]


def _write_pages(out_dir: Path, loaded: list, exporter) -> list[str]:
    """Write every page and the index into ``out_dir``; return their file names, index first."""
    written, rows = [], []
    for index, (path, notebook, (title, goals)) in enumerate(loaded):
        previous = loaded[index - 1] if index > 0 else None
        following = loaded[index + 1] if index + 1 < len(loaded) else None
        nav = _nav(
            (_page_name(previous[0]), previous[2][0]) if previous else None,
            (_page_name(following[0]), following[2][0]) if following else None,
        )
        page, _ = exporter.from_notebook_node(
            _without_progress_bars(notebook), resources={"metadata": {"name": f"{title} · {SITE_TITLE}"}}
        )
        page = page.replace("</head>", f"{NAV_STYLE}\n</head>", 1)
        body = re.search(r"<body[^>]*>", page)
        page = page[: body.end()] + f"\n{nav}" + page[body.end() :] if body else nav + page
        page = page.replace("</body>", f"{nav}\n</body>", 1)
        (out_dir / _page_name(path)).write_text(page, encoding="utf-8")
        written.append(_page_name(path))
        rows.append(_index_row(path, notebook, title, goals))
    index_page = INDEX_TEMPLATE.format(title=SITE_TITLE, rows="\n".join(rows))
    (out_dir / "index.html").write_text(index_page, encoding="utf-8")
    return ["index.html", *written]


def _index_row(path: Path, notebook: nbformat.NotebookNode, title: str, goals: str) -> str:
    goal_items = [
        line.lstrip("-* ").strip() for line in goals.split("\n") if line.lstrip().startswith(("-", "*"))
    ]
    goal_html = (
        "<ul>" + "".join(f"<li>{html.escape(g)}</li>" for g in goal_items) + "</ul>" if goal_items else ""
    )
    figure = _first_figure(notebook)
    figure_html = f'<img src="{figure}" alt="first figure of {html.escape(title)}">' if figure else ""
    return (
        f'<tr><td><a href="{_page_name(path)}">{html.escape(title)}</a></td>'
        f'<td>{goal_html}</td><td class="figure">{figure_html}</td></tr>'
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``build-site OUT_DIR [--notebooks DIR] [--execute]``."""
    parser.add_argument("out", type=Path, help="the folder to write the site into")
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="the course's notebooks folder (default: the nearest notebooks/ here or above)",
    )
    parser.add_argument(
        "--execute", action="store_true", help="run every notebook first instead of using its stored outputs"
    )


def run(args: argparse.Namespace) -> int:
    """Build the site and say where it is."""
    try:
        pages = build_site(args.out, args.notebooks, execute=args.execute)
    except (OutputError, OSError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(f"wrote {len(pages)} pages to {args.out}; open {args.out / 'index.html'}")
    return 0
