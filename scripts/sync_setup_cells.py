"""Rewrite the first code cell of each notebook to ``lora_teach.course.colab.setup_cell_source()`` and its tags.

Only that cell's ``source`` and ``metadata.tags`` change (the ``nbval-*`` tags become the setup cell's;
other tags stay); every other byte of the file is kept. Run from the course folder:

    python scripts/sync_setup_cells.py               # every notebooks/*.ipynb
    python scripts/sync_setup_cells.py notebooks/03_digitsnet_baseline.ipynb
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's lora_teach

from lora_teach.course import colab  # noqa: E402


def _lines(text: str) -> list[str]:
    """Jupyter's on-disk form of a cell's source: lines that keep their newline."""
    return text.splitlines(keepends=True)


def sync(path: Path) -> bool:
    """Sync one notebook in place; True when the file changed."""
    raw = path.read_text(encoding="utf-8")
    notebook = json.loads(raw)
    if json.dumps(notebook, indent=1, ensure_ascii=False) + "\n" != raw:
        raise SystemExit(f"{path}: not in Jupyter's own JSON layout; save it from Jupyter first, then rerun")
    cell = next((c for c in notebook["cells"] if c["cell_type"] == "code"), None)
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
