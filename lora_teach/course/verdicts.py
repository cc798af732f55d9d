"""The verdict words a notebook prints: what must read the same in every fresh run of the course."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

VERDICT = re.compile(
    r"\b(higher|lower|indistinguishable|faster|slower|more than|less than|no less than|a tie|depends on)\b"
)


def verdict_words(outputs: Iterable[Mapping]) -> list[str]:
    """The verdict words in one cell's printed text and Markdown outputs, in order (stderr is not read)."""
    texts = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            texts.append(output.get("text", ""))
        elif "data" in output:
            texts.append(output["data"].get("text/markdown", ""))
    # nbformat joins multi-line text; raw notebook JSON may keep it as a list of lines
    return VERDICT.findall("\n".join(t if isinstance(t, str) else "".join(t) for t in texts))
