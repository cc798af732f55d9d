"""The warnings the notebooks once printed have no cause left: in a notebook kernel, the course's progress bars,
a log-scale figure and its timer print nothing but the bar, even where matplotlib's font list lacks STIX (which
made mathtext print a findfont line per family) and where torch finds nvcc but no GPU ("No CUDA runtime")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

LOG_FIGURE = (
    "fig, ax = plt.subplots(figsize=(3, 2))\n"
    "ax.plot([1, 2, 64], [0.01, 10, 100])\n"
    'ax.set_yscale("log")\n'
    'ax.set_xscale("log", base=2)\n'
    "plt.show()"
)
CELLS = [
    "import importlib\n\nfrom lora_teach.progress import tqdm\n\nimportlib.import_module('tqdm.auto')  # as PEFT does",
    "for _ in tqdm(range(3), desc='runs'):\n    pass",
    f"import matplotlib.pyplot as plt\nfrom lora_teach.plots import COLORS\n\n{LOG_FIGURE}",
    "from lora_teach.bench.timing import make_timer\n\nmake_timer(lambda: None).timeit(3)",
    "import importlib.util\n\nif importlib.util.find_spec('peft'):\n    import peft",
]
NOISE = ("Warning", "findfont", "No CUDA runtime", "IProgress")


def _font_cache_without_stix(folder: Path) -> dict[str, str]:
    """A matplotlib config folder whose font list has no STIX font, and the environment that uses it."""
    env = {**os.environ, "MPLCONFIGDIR": str(folder), "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env, check=True)
    (cache,) = folder.glob("fontlist-*.json")
    fonts = json.loads(cache.read_text())
    fonts["ttflist"] = [font for font in fonts["ttflist"] if "STIX" not in font["name"]]
    cache.write_text(json.dumps(fonts))
    return env


@pytest.mark.slow
def test_progress_bars_log_figures_and_timers_print_no_warning_in_a_notebook(tmp_path):
    env = _font_cache_without_stix(tmp_path / "matplotlib")
    plain = "import matplotlib.pyplot as plt\n" + LOG_FIGURE.replace("plt.show()", "fig.savefig('x.png')")
    control = subprocess.run(
        [sys.executable, "-c", plain], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert "findfont: Font family ['STIXGeneral'] not found" in control.stderr, "the font list still has STIX"

    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute(env=env)
    stderr = {
        index: "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
        for index, cell in enumerate(notebook.cells)
    }
    for index, text in stderr.items():
        for word in NOISE:
            assert word not in text, f"cell {index} ({CELLS[index].splitlines()[0]}) printed: {text[:300]}"
    assert "runs: 100%" in stderr[1], "the bar itself is shown, as text"
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[2].outputs), "the figure was drawn"
