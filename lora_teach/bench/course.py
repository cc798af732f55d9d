"""``course_seconds``: wall time of each notebook run top to bottom in a fresh kernel. Each runs
once with a plain clock: a Timer would run it again, and the work is in the kernel's process."""

from __future__ import annotations

import time
from pathlib import Path


def bench_course(notebook_dir: Path | str = "notebooks", timeout: int = 600) -> dict:
    """Wall seconds of each notebook executed top to bottom in a fresh kernel (nbclient):
    {"notebooks": {name: seconds}, "total": seconds, "failed": {name: error}}."""
    import nbformat
    from nbclient import NotebookClient

    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    for path in sorted(Path(notebook_dir).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
        except Exception as error:  # noqa: BLE001 - report the notebook, keep timing the others
            failed[path.name] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
        seconds[path.name] = time.perf_counter() - start
    return {"notebooks": seconds, "total": sum(seconds.values()), "failed": failed}
