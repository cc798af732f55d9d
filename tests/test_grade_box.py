"""The bubblewrap box itself, without a notebook: what a boxed process can see, write and reach."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lora_teach.course import grade
from lora_teach.course.grading import box

pytestmark = pytest.mark.skipif(
    box.bwrap() is None,
    reason="bubblewrap (bwrap) is not installed or cannot make a box here; .ci/run installs it",
)

PROBE = """
import json, os, socket, sys
canary, found = sys.argv[1], {}
found["canary_visible"] = os.path.exists(canary)
found["home_entries"] = sorted(os.listdir("/root")) if os.path.isdir("/root") else []
try:
    open("/usr/lora-teach-probe", "w")
    found["usr_writable"] = True
except OSError:
    found["usr_writable"] = False
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    found["network"] = True
except OSError:
    found["network"] = False
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
open("/box/work/mine.txt", "w").write("written in the box")
open("/box/work/found.json", "w").write(json.dumps(found))
"""


def test_a_box_sees_no_file_of_the_instructor_and_no_network(tmp_path):
    canary = tmp_path / "instructor" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text("secret")
    work = tmp_path / "work"
    work.mkdir()
    setup = grade.make_setup(10)
    argv = [sys.executable, "-c", PROBE, str(canary)]
    command = box.box_command(argv, {"/box/work": work}, setup.readable, setup.env)
    finished = box.run_limited(command, box.Limits(), 60, tmp_path / "log.txt")
    assert finished.returncode == 0, (tmp_path / "log.txt").read_text()
    found = json.loads((work / "found.json").read_text())
    assert found["canary_visible"] is False and found["usr_writable"] is False and found["network"] is False
    assert found["pids"][0] == 1 and len(found["pids"]) < 5  # its own PID namespace: none of the grader's
    assert found["home_entries"] in ([], [".pyenv"])  # at most the Python installation inside a home
    assert (work / "mine.txt").read_text() == "written in the box"
    assert Path("/usr/lora-teach-probe").exists() is False
