"""Shared fixtures: small models and hypothesis settings sized for a 2-core CI machine."""

import re
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from torch import nn

# Debian's Chromium, for the browser tests (test tools cannot download browsers here)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

# Math in Markdown: $...$ or $$...$$ outside code spans and blocks (what JupyterLab and the site render as math)
CODE_IN_MARKDOWN = re.compile(r"^```.*?^```|(`+)(?!`).+?(?<!`)\1(?!`)", re.S | re.M)
MATH_IN_MARKDOWN = re.compile(r"\$\$.+?\$\$|\$[^$]+?\$", re.S)


def formula_count(markdown: str) -> int:
    """How many formulas a piece of Markdown holds."""
    return len(MATH_IN_MARKDOWN.findall(CODE_IN_MARKDOWN.sub("", markdown)))


settings.register_profile("ci", max_examples=25, deadline=None)
settings.load_profile("ci")


class TwoLayer(nn.Module):
    """A small MLP with a nested module, to test dotted target names."""

    def __init__(self, d_in: int = 12, d_hidden: int = 8, d_out: int = 5) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU())
        self.head = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def check_output(question, *answers, capsys):
    """Run ``question.check(*answers)``; return its result and what it printed."""
    result = question.check(*answers)
    return result, capsys.readouterr().out


@pytest.fixture
def two_layer() -> TwoLayer:
    torch.manual_seed(0)
    return TwoLayer()
