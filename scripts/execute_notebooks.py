"""Store the notebooks' outputs: run each in a fresh kernel as a fresh clone would, keep only what a reader
should see. The one way notebooks get their stored outputs.

Each notebook runs on its own, in a fresh ``python3`` kernel started in its folder, with this checkout's
``lora_teach`` first on the path, one thread (``OMP_NUM_THREADS=1``, so torch starts with one: the stored run
is the one-thread run, which CI's nbval then compares at two) and ``LORA_TEACH_CHECKPOINTS`` pointed at a new
empty folder (the baselines are trained there, as in a fresh clone). The stored cells then lose every stderr
stream (progress bars, warnings) and every widget output, and keep Jupyter's own JSON layout. A notebook is
written only when all its cells ran. From the course folder:

    python scripts/execute_notebooks.py                                  # every notebooks/*.ipynb
    python scripts/execute_notebooks.py notebooks/00_welcome_and_setup.ipynb
    python scripts/execute_notebooks.py --strip-only                     # strip, run nothing

Exit status 1 when a notebook failed, or when a cell tagged ``nbval-check-output`` wrote to stderr or showed
a widget (nbval compares that cell's output, so it would compare a progress bar).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WIDGET = "application/vnd.jupyter.widget-view+json"
CHECKED = "nbval-check-output"
CARRIAGE_RETURN = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)  # what a line shows after its last \r


def _is_noise(output: nbformat.NotebookNode) -> bool:
    """stderr (tqdm's bars, warnings) and widget outputs (tqdm's notebook bars): not results."""
    if output.output_type == "stream":
        return output.name == "stderr"
    return WIDGET in output.get("data", {})


def _as_shown(outputs: list[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """Outputs as Jupyter shows them: consecutive stdout pieces joined into one, each line reduced to
    what it shows after its last carriage return (a line a loop rewrote with ``\\r``)."""
    shown: list[nbformat.NotebookNode] = []
    for output in outputs:
        previous = shown[-1] if shown else None
        if output.output_type == "stream" and previous is not None and previous.get("name") == output.name:
            previous.text += output.text
        else:
            shown.append(output)
    for output in shown:
        if output.output_type == "stream":
            output.text = CARRIAGE_RETURN.sub("", output.text)
    return shown


def strip(notebook: nbformat.NotebookNode) -> tuple[int, list[int]]:
    """Remove stderr and widget outputs in place, and reduce stdout lines to what they show after their
    last carriage return. Return how many outputs went, and the indices of ``nbval-check-output`` cells
    that had any (nbval would compare them)."""
    removed, checked = 0, []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        kept = [output for output in cell.outputs if not _is_noise(output)]
        if len(kept) != len(cell.outputs):
            removed += len(cell.outputs) - len(kept)
            if CHECKED in cell.metadata.get("tags", []):
                checked.append(index)
        cell.outputs = _as_shown(kept)
    notebook.metadata.pop("widgets", None)
    return removed, checked


def execute(notebook: nbformat.NotebookNode, folder: Path, checkpoints: Path) -> None:
    """Run every cell in a fresh kernel started in ``folder`` (raises on the first cell that fails)."""
    from nbclient import NotebookClient

    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "LORA_TEACH_CHECKPOINTS": str(checkpoints),
        "PYTHONPATH": python_path,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    env.pop("LORA_TEACH_DATA", None)  # the notebooks find data/ from their folder, as in a clone
    client = NotebookClient(
        notebook, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env=env)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)"
    )
    parser.add_argument(
        "--strip-only", action="store_true", help="only strip the stored outputs; run nothing"
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    status = 0
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        if not args.strip_only:
            print(f"running {path} ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="lora-teach-checkpoints-") as checkpoints:
                try:
                    execute(notebook, path.resolve().parent, Path(checkpoints))
                except Exception as error:  # noqa: BLE001 - CellExecutionError, a dead kernel, a timeout
                    first = str(error).strip().splitlines()[-1:] or [type(error).__name__]
                    print(f"FAILED {path}: {first[0]} (the file is unchanged)", file=sys.stderr)
                    status = 1
                    continue
        removed, checked = strip(notebook)
        before = path.read_text(encoding="utf-8")
        nbformat.write(notebook, path)
        changed = path.read_text(encoding="utf-8") != before
        took = "" if args.strip_only else f" in {time.perf_counter() - start:.0f} s"
        print(
            f"{'wrote  ' if changed else 'already'} {path}{took}, {removed} stderr or widget outputs dropped"
        )
        if checked:
            print(
                f"WARNING {path}: cells {checked} are tagged {CHECKED} but wrote to stderr or showed a widget; "
                "nbval would compare that output: hide the progress bar there (progress=False)",
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
