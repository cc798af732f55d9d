"""Inside a box: run one notebook in a fresh kernel, every cell even after one raises, for at most
TIMEOUT seconds from its first cell, and write what happened into OUT (``run.json``, ``events.jsonl``,
``answers/``). Everything written here is the student's to tamper with, so the grader reads it as
untrusted and re-checks the answers elsewhere.

``python -m lora_teach.course.grading.runner NOTEBOOK OUT TIMEOUT``
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

# The cell put before the student's first cell: after every check, one JSON line (the outcome) and the
# answers themselves, as data, into OUT. Nothing printed is parsed.
LISTENER_CELL = """\
import importlib as _grade_importlib
import json as _grade_json
import pathlib as _grade_pathlib

import lora_teach.course.exercises as _grade_exercises
from lora_teach.course.grading import answers as _grade_answers


def _grade_listener(notebook, question, status, message, _out={out!r}, _count=[0]):
    _count[0] += 1
    record = {{"notebook": str(notebook), "question": str(question), "status": str(status)}}
    record["message"], record["answers"] = str(message or ""), None
    try:
        module = _grade_importlib.import_module("lora_teach.course.exercises." + str(notebook))
        folder = "a%d" % _count[0]
        _grade_answers.dump(getattr(module, str(question)).last_answers, _grade_pathlib.Path(_out) / "answers" / folder)
        record["answers"] = folder
    except Exception as error:  # the outcome is still recorded; the re-check will say it had no answer
        record["answers_error"] = ("%s: %s" % (type(error).__name__, error))[:200]
    with open(_grade_pathlib.Path(_out) / "events.jsonl", "a", encoding="utf-8") as _file:
        _file.write(_grade_json.dumps(record) + "\\n")


_grade_exercises.set_check_listener(_grade_listener)
"""


def first_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run(path: Path, out: Path, timeout: float) -> dict:
    """Execute the notebook at ``path`` (a private copy) and return what ``run.json`` holds."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import ensure_async

    result: dict = {"ended": "ok", "reason": "", "cell_errors": [], "hung_cell": None}
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one "error" notebook
        result.update(ended="error", reason=f"not a valid notebook file ({first_line(error, 120)})")
        return result
    notebook.cells.insert(0, nbformat.v4.new_code_cell(LISTENER_CELL.format(out=str(out))))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    deadline = [float("inf")]  # the clock starts with the first cell, once the kernel is up
    running = [0]

    def started(cell: nbformat.NotebookNode, cell_index: int, **_: object) -> None:
        running[0] = cell_index  # the cell that starts now (nbclient numbers it only when it ends)
        (out / "current_cell").write_text(str(cell_index))
        if cell_index == 0:
            deadline[0] = time.monotonic() + timeout

    class _Client(NotebookClient):
        """At the time limit: interrupt the running cell, then stop (the kernel, idle again, then
        shuts down gracefully instead of being killed mid-message)."""

        async def _async_handle_timeout(self, timeout: int, cell=None):
            await ensure_async(self.km.interrupt_kernel())
            try:  # the interrupted cell's reply: the kernel is idle once it has sent it
                await ensure_async(self.kc.shell_channel.get_msg(timeout=10))
                await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001, S110 - a kernel that does not answer is shut down all the same
                pass
            raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)

    client = _Client(
        notebook,
        kernel_name="python3",
        allow_errors=True,
        timeout=max(1, int(timeout)),
        startup_timeout=120,
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=started,
    )
    client.timeout_func = lambda cell: max(1, int(deadline[0] - time.monotonic() + 0.999))
    try:
        client.execute()
    except CellTimeoutError:
        result["ended"], result["hung_cell"] = "timeout", running[0]
        result["reason"] = (
            f"stopped after the notebook's time limit of {timeout:g} s (still running cell {running[0]})"
        )
    except DeadKernelError as error:
        result.update(ended="error", reason=f"the kernel died ({first_line(error, 120)})")
    except Exception as error:  # noqa: BLE001 - whatever stops a run is reported, never raised
        result.update(ended="error", reason=f"{type(error).__name__}: {first_line(error, 160)}")
    listener_error = cell_error(notebook.cells[0])
    if listener_error:
        result.update(
            ended="error", reason=f"the grader could not register its check listener ({listener_error})"
        )
    for index, cell in enumerate(notebook.cells[1:], start=1):
        error = cell_error(cell)
        if error:
            result["cell_errors"].append([index, error])
    return result


def cell_error(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return first_line(f"{output.get('ename')}: {output.get('evalue')}", 160)
    return ""


def main(argv: list[str]) -> int:
    path, out, timeout = Path(argv[0]), Path(argv[1]), float(argv[2])
    result = run(path, out, timeout)
    (out / "run.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
