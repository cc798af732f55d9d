"""Math in the notebooks' Markdown is LaTeX between dollars wherever it has a subscript or a superscript:
Markdown takes the underscores of ``M_r`` or ``s_{r+1}`` for italics (issue 20.14). The browser tests check
that JupyterLab and the site render it; this one finds the source that would not."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import CODE_IN_MARKDOWN, MATH_IN_MARKDOWN

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
BARE_MATH = re.compile(r"[\w)}\]‖|]_[{\w]|\^\{|\\[a-zA-Z]+")


def bare_math(markdown: str) -> list[str]:
    """Pieces of prose (outside code, math and link targets) that look like math written without dollars."""
    prose = markdown
    for pattern in (CODE_IN_MARKDOWN, MATH_IN_MARKDOWN, LINK_TARGET):
        prose = pattern.sub(" ", prose)
    return [prose[max(0, m.start() - 20) : m.end() + 20] for m in BARE_MATH.finditer(prose)]


@pytest.mark.parametrize(
    "markdown, found",
    [
        ("‖M − M_r‖_F = √(s_{r+1}² + …)", True),
        ("the columns u₁ … u_r", True),
        ("B ∈ ℝ^{d×r}", True),
        ("checking lora_teach against PEFT", True),
        (r"$$\lVert M - M_r \rVert_F = \sqrt{s_{r+1}^2}$$ and $W_q$", False),
        ("`lora_alpha`, ```\nx_1 = 2\n```, [a link](../docs/errata.md#e-04a_x)", False),
        ("W₀ x + (α / r) · B A x, *emphasis* and _emphasis_", False),
    ],
)
def test_bare_math_is_found(markdown, found):
    assert bool(bare_math(markdown)) is found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_math_with_subscripts_is_latex(path):
    for index, cell in enumerate(nbformat.read(path, 4).cells):
        if cell.cell_type == "markdown":
            found = bare_math(cell.source)
            assert not found, (
                f"{path.name}, cell {index}: {found[0]!r} looks like math or a name outside `code`: write math as "
                "$...$ (e.g. $M_r$, $$s_{r+1}^2$$) and names as `code`"
            )
