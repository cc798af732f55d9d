"""Regenerate data/text/prose.txt and data/text/code.txt from the running Python's standard library.

prose: every entry of ``pydoc_data.topics`` (the text behind ``help("topic")``), sorted by key.
code: the source files of CODE_MODULES, concatenated in that order.
Usage: python scripts/make_text_corpora.py [--out data/text]; prints each file's size and sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import sys
from pathlib import Path

CODE_MODULES = ["argparse", "dataclasses", "functools", "fractions", "statistics", "random", "textwrap"]


def prose_text() -> str:
    """The text of pydoc_data.topics: each topic's text, keys sorted, separated by a blank line."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def code_text() -> str:
    """The source of CODE_MODULES, each preceded by a one-line header naming the module."""
    parts = []
    for name in CODE_MODULES:
        source = inspect.getsource(importlib.import_module(name))
        parts.append(f"# ===== {name}.py =====\n{source}")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "text"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Python {sys.version.split()[0]}")
    for name, text in [("prose", prose_text()), ("code", code_text())]:
        data = text.encode("utf-8")
        (out / f"{name}.txt").write_bytes(data)
        print(
            f"{name}.txt: {len(text):,} characters, {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
