"""A hostile class: one submission per attack of issue 21, graded in bubblewrap boxes beside an honest
student. No attack earns a ``correct`` row, no file outside a submission's private copy changes
(canaries), the honest student is graded right, and no process of a student survives its notebook."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import pytest

from lora_teach import cli
from lora_teach.course.grading import box
from tests.test_grade import NAME, Q1, Q2, _notebook, _write, needs_bwrap

WRONG = "nb00.q1.check(5)"


def _attacks(canary: Path, victim: Path) -> dict[str, list[str]]:
    """student -> the cells of their notebook (each also answers q1 wrongly, so a correct row is forged)."""
    grades = canary.with_name("grades.csv")  # the grader's output: edited after the grader exits?
    detached = (
        f"import time; time.sleep(30); open({str(canary)!r}, 'w').write('lora-teach-canary'); "
        f"open({str(grades)!r}, 'a').write('detached,nb00.q1,x,x,correct,forged,ran')"
    )
    listener = "import lora_teach.course.exercises as ex\nlistener = ex._listener\n"
    return {
        "junk_line": [
            listener + "open(listener.__defaults__[0] + '/events.jsonl', 'a').write('{junk\\n')",
            WRONG,
        ],
        "kill_parent": [WRONG, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"],
        "rewrite_victim": [
            WRONG,
            "import glob, os\n"
            f"for path in [{str(victim)!r}] + glob.glob('/proc/*/cwd/**/*.ipynb', recursive=True):\n"
            "    try:\n        open(path, 'w').write('{}')\n    except OSError:\n        pass",
        ],
        "delete_canary": [
            WRONG,
            f"import os\ntry:\n    os.remove({str(canary)!r})\nexcept OSError:\n    pass",
        ],
        "detached": [
            WRONG,
            "import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', {detached!r}], start_new_session=True)",
        ],
        "answers_link": [  # its answers folder a link to the instructor's folder, for the re-check box
            listener
            + f"import os\nos.symlink({str(canary.parent)!r}, listener.__defaults__[0] + '/answers')",
            WRONG,
        ],
        "call_listener": [
            listener + "listener('nb00', 'q1', 'correct', 'Correct')\n"
            "listener('nb00', 'q9', 'correct', 'Correct')\nlistener('nb00', 'q2', 'totally_correct', 'x')",
        ],
        "replace_checker": [
            "from lora_teach.course.exercises import nb00\nnb00.q1._checker = lambda *answers: None\n" + WRONG
        ],
        "patch_report": [
            "from lora_teach.course import exercises\nreal = exercises.Question._report\n"
            "exercises.Question._report = lambda self, status, line: real(self, 'correct', line)\n" + WRONG
        ],
        "hard_coded": [
            "def ink_fraction(image):  # a table of the five visible images\n"
            "    table = {(784, 60): 60 / 784, (784, 784): 1.0, (4, 1): 0.25, (6, 0): 0.0, (12, 4): 4 / 12}\n"
            "    return table[image.numel(), int(image.bool().sum())]\n\n\n"
            "nb00.q2.check(ink_fraction)"
        ],
        "exec_answer": [
            "from lora_teach.course.exercises import nb00\nexec(nb00.q2.answer)\nnb00.q2.check(ink_fraction)"
        ],
        "fork_bomb": [  # q1 is right only if all 100 forks succeeded: the limit of 64 must stop it
            "import os\nchildren = 0\nfor _ in range(100):\n    try:\n        if os.fork() == 0:\n"
            "            import time\n            time.sleep(60)\n            os._exit(0)\n        children += 1\n"
            "    except OSError:\n        break\nnb00.q1.check(784 if children == 100 else 5)",
        ],
        "memory_bomb": ["try:\n    hog = bytearray(64 << 30)\nexcept MemoryError:\n    pass", WRONG],
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _student_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and (
            "lora-teach-canary" in command or "lora_teach.course.grading" in command
        ):
            found.append(command)
    return found


@pytest.mark.slow
@needs_bwrap
def test_a_hostile_class_earns_nothing_and_changes_nothing(tmp_path, capsys):
    course = tmp_path / "course"
    _write(course / NAME, _notebook(Q1, Q2))
    subs = tmp_path / "submissions"
    canary = tmp_path / "canary.txt"
    canary.write_text("the instructor's file\n")
    victim = _write(subs / "zoe" / NAME, _notebook(Q1, Q2))  # honest, graded last
    attacks = _attacks(canary, victim)
    if not box.process_limit_enforced():  # root without a pids cgroup: RLIMIT_NPROC does not bind root
        del attacks["fork_bomb"]
    for student, cells in attacks.items():
        _write(subs / student / NAME, _notebook(*cells))
    (subs / "symlink").mkdir()
    (subs / "symlink" / NAME).symlink_to("/etc/passwd")
    before = {p: _sha(p) for p in [canary, victim, course / NAME]}

    out = tmp_path / "grades.csv"
    argv = [
        "grade",
        str(subs),
        "--out",
        str(out),
        "--notebooks",
        str(course),
        "--timeout",
        "60",
        "--no-progress",
        "--max-processes",
        "64",
    ]
    assert cli.main(argv) == 0
    terminal = capsys.readouterr()
    assert _student_processes() == [], "a student's process survived its notebook"
    assert "forged" not in out.read_text()

    with out.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    status = {(r["student"], r["question"]): r["status"] for r in rows}
    assert status[("zoe", "nb00.q1")] == "correct" and status[("zoe", "nb00.q2")] == "correct"
    forged = [key for key, value in status.items() if key[0] != "zoe" and value == "correct"]
    assert forged == [], forged
    assert status[("replace_checker", "nb00.q1")] == "error"  # its check reports from "__main__": tampered
    assert status[("patch_report", "nb00.q1")] == "mismatch"
    assert status[("hard_coded", "nb00.q2")] == "mismatch"
    assert status[("exec_answer", "nb00.q2")] == "error"  # no source to re-check: the instructor reads it
    assert status[("answers_link", "nb00.q1")] in ("error", "mismatch")  # nothing to re-check
    assert status[("junk_line", "nb00.q1")] == "error"
    assert status[("call_listener", "nb00.q1")] == "error"  # a record with no answers behind it
    assert status[("kill_parent", "nb00.q1")] in ("error", "incorrect")
    assert {q for s, q in status if s == "call_listener"} == {"nb00.q1", "nb00.q2"}  # no q9 row
    assert status.get(("fork_bomb", "nb00.q1"), "incorrect") == "incorrect"  # stopped by the limit
    assert status[("memory_bomb", "nb00.q1")] == "incorrect"
    passwd = Path("/etc/passwd").read_text()
    assert (
        "root:" not in out.read_text()
        and "root:" not in (tmp_path / "grades_feedback" / "symlink.md").read_text()
    )
    assert passwd.splitlines()[0] not in terminal.out + terminal.err
    assert "Traceback" not in terminal.out + terminal.err
    assert len(terminal.out.strip().splitlines()) == len({r["student"] for r in rows}) + 1  # + "wrote ..."
    assert {p: _sha(p) for p in before} == before, "a student changed a file outside their private copy"
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("lora-teach-grade-*/snapshot"))
