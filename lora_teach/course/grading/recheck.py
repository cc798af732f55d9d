"""Re-check answers outside the student's kernel: a fresh process that imports the course's checks
before any answer is read, rebuilds each answer from data (``answers.load``), and runs the reference
check on it; a function answer that passes is also tried on hidden inputs (``hidden``).

``python -m lora_teach.course.grading.recheck ITEMS.json RESULTS.json``: ITEMS is a list of
``{"key": "nb02.q2", "folder": "/box/answers/a3"}``; RESULTS gets ``{key: [status, message]}``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

# The checks, imported before any student code: the references kept here are what this process uses.
import torch

from lora_teach.course import exercises
from lora_teach.course.exercises import Incorrect, NotAttempted
from lora_teach.course.grading import answers, hidden

_PLACEHOLDER = exercises._is_placeholder
_ONE_LINE = exercises._one_line


def verdict(checker, values: tuple) -> tuple[str, str]:
    """What ``Question.check`` would conclude, from the checker kept at import."""
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            if any(_PLACEHOLDER(v) for v in values):
                raise NotAttempted("replace ____ with your answer")
            message = checker(*values)
        return "correct", _ONE_LINE(message or "")
    except NotAttempted as reason:
        return "not_attempted", _ONE_LINE(reason)
    except Incorrect as reason:
        return "incorrect", _ONE_LINE(reason)
    except BaseException as error:  # noqa: BLE001 - whatever an answer does, the re-check answers
        return (
            "incorrect",
            f"this answer could not be checked ({type(error).__name__}: {_ONE_LINE(error, 200)})",
        )


def main(argv: list[str]) -> int:
    items = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    modules, checkers = {}, {}
    for item in items:  # every check this run needs, imported and kept before any answer is loaded
        module_name, _, attribute = str(item["key"]).partition(".")
        module = modules.setdefault(
            module_name, importlib.import_module(f"lora_teach.course.exercises.{module_name}")
        )
        checkers[item["key"]] = getattr(module, attribute)._checker
    results: dict[str, list[str]] = {}
    for item in items:
        key = item["key"]
        try:
            values = answers.load(Path(item["folder"]))
        except Exception as error:  # noqa: BLE001 - answers.Unsupported, or a file the student broke
            results[key] = [
                "unchecked",
                f"the answer could not be rebuilt outside the notebook: {_ONE_LINE(error, 200)}",
            ]
            continue
        status, message = verdict(checkers[key], values)
        if status == "correct" and any(callable(v) for v in values):
            with hidden.hidden_inputs(key, modules[key.partition(".")[0]]):
                hidden_status, hidden_message = verdict(checkers[key], values)
            if hidden_status == "correct" and len(values) == 1:
                try:
                    reason = hidden.compare_with_reference(key, values[0])
                except Exception as error:  # noqa: BLE001 - a reference that cannot run is the grader's problem
                    reason = None
                    print(f"hidden cases of {key} could not run: {type(error).__name__}", file=sys.stderr)
                if reason:
                    hidden_status, hidden_message = "incorrect", reason
            if hidden_status != "correct":
                status = "incorrect"
                message = f"passes the visible check but not on hidden inputs (other seeds and shapes): {hidden_message}"
        results[key] = [status, message]
    Path(argv[1]).write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
