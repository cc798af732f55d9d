"""Rewrite each notebook's Colab badge and setup cell to what ``lora_teach.course.colab`` says.

Two things change, nothing else: in the first cell (markdown: the title), the "Open in Colab" badge
becomes ``colab.badge_markdown(<file name>)`` (added under the title line if there is none); the first
code cell's ``source`` becomes ``colab.setup_cell_source()`` and its ``nbval-*`` tags the setup cell's
(other tags stay). Every other byte of the file is kept; a second run changes nothing. From the course
folder:

    python scripts/sync_setup_cells.py               # every notebooks/*.ipynb
    python scripts/sync_setup_cells.py notebooks/03_digitsnet_baseline.ipynb
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's lora_teach

from lora_teach.course import colab  # noqa: E402

BADGE = re.compile(
    r"\[!\[Open in Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)\s]*\)"
)


def _lines(text: str) -> list[str]:
    """Jupyter's on-disk form of a cell's source: lines that keep their newline."""
    return text.splitlines(keepends=True)


def with_badge(title_cell: str, name: str) -> str:
    """The first cell's markdown with exactly one badge, ``colab.badge_markdown(name)``."""
    badge = colab.badge_markdown(name)
    found = BADGE.findall(title_cell)
    if len(found) > 1:
        raise SystemExit(f"{name}: the first cell holds {len(found)} Colab badges; keep one, then rerun")
    if found:
        return BADGE.sub(lambda _: badge, title_cell)
    title, _, rest = title_cell.partition("\n")
    return f"{title}\n\n{badge}\n" + (f"\n{rest.lstrip(chr(10))}" if rest.strip() else "")


def sync(path: Path) -> bool:
    """Sync one notebook in place; True when the file changed."""
    raw = path.read_text(encoding="utf-8")
    notebook = json.loads(raw)
    if json.dumps(notebook, indent=1, ensure_ascii=False) + "\n" != raw:
        raise SystemExit(f"{path}: not in Jupyter's own JSON layout; save it from Jupyter first, then rerun")
    cells = notebook["cells"]
    if not cells or cells[0]["cell_type"] != "markdown":
        raise SystemExit(f"{path}: the first cell must be markdown (the title and the Colab badge)")
    cells[0]["source"] = _lines(with_badge("".join(cells[0]["source"]), path.name))
    cell = next((c for c in cells if c["cell_type"] == "code"), None)
    if cell is None:
        raise SystemExit(f"{path}: has no code cell to hold the setup cell")
    cell["source"] = _lines(colab.setup_cell_source())
    metadata = cell.setdefault("metadata", {})
    kept = [t for t in metadata.get("tags", []) if not t.startswith("nbval")]
    metadata["tags"] = colab.setup_cell_tags() + kept
    cell["metadata"] = dict(sorted(metadata.items()))  # Jupyter writes keys sorted
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if text == raw:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    paths = [Path(a) for a in argv] or sorted((root / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"{'synced ' if sync(path) else 'already'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
