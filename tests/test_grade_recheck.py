"""The re-check outside the kernel grades every reference solution right: each function answer of the
course, written out as its source (as the grader's listener does) and re-checked on the visible and the
hidden inputs, passes. A hidden input that an honest solution fails would make an honest row `mismatch`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lora_teach.course.grading import answers, hidden, recheck
from lora_teach.course.solutions import recorded_solutions

FUNCTIONS = {
    key: source for key, source in recorded_solutions().items() if source.lstrip().startswith("def ")
}


def _student_module(tmp_path: Path, source: str):
    """The solution as a student's notebook defines it: in a file (so its source can be read), with the
    imports the notebooks make."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "student.py"
    path.write_text(
        "import math\n\nimport torch\nfrom torch import nn\n\n\n" + source + "\n", encoding="utf-8"
    )
    spec = importlib.util.spec_from_file_location("student", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("key", sorted(FUNCTIONS))
def test_every_reference_function_passes_the_recheck_and_its_hidden_inputs(tmp_path, key):
    source = FUNCTIONS[key]
    module = _student_module(tmp_path, source)
    name = source.lstrip().removeprefix("def ").partition("(")[0]
    function = getattr(module, name)
    function.__module__ = "__main__"  # as in a notebook: its helpers are written out by source
    answers.dump((function,), tmp_path / "a1")
    (tmp_path / "items.json").write_text(json.dumps([{"key": key, "folder": str(tmp_path / "a1")}]))
    recheck.main([str(tmp_path / "items.json"), str(tmp_path / "results.json")])
    status, message = json.loads((tmp_path / "results.json").read_text())[key]
    assert status == "correct", message


@pytest.mark.parametrize("key", sorted(hidden.CASES))
def test_hidden_cases_accept_the_reference_and_refuse_a_constant(key):
    assert hidden.compare_with_reference(key, hidden.reference(key)) is None
    assert hidden.compare_with_reference(key, lambda *args: 0) is not None


def test_a_function_that_hard_codes_the_visible_calls_fails_where_the_inputs_are_fixed(tmp_path):
    from lora_teach.course.exercises import nb04

    source = (
        "def lora_param_count(in_features, out_features, r):\n    return r * (in_features + out_features)\n"
    )
    honest = _student_module(tmp_path, source).lora_param_count
    visible: dict = {}

    def recording(in_features, out_features, r):  # what the visible check asks, and nothing else
        visible[(in_features, out_features, r)] = honest(in_features, out_features, r)
        return visible[(in_features, out_features, r)]

    nb04.q1._checker(recording)
    table = repr(visible)
    cheat = _student_module(
        tmp_path / "cheat",
        f"def lora_param_count(in_features, out_features, r):\n    return {table}[(in_features, out_features, r)]\n",
    ).lora_param_count
    assert nb04.q1.check(cheat)  # the visible check passes it
    assert hidden.compare_with_reference("nb04.q1", cheat) == "hidden case 1 raised KeyError"
