"""Copy each exercise's solution block from the notebooks into ``lora_teach/course/exercises/solutions.json``.

The notebooks are the source; ``q.solution()`` and the instructor guide read the copy. Run from the course
folder after changing a solution block (tests/test_solutions.py fails until you do):

    python scripts/sync_solutions.py            # write the file
    python scripts/sync_solutions.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's lora_teach

from lora_teach.course.solutions import SOLUTIONS_FILE, course_solutions, render  # noqa: E402


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: python scripts/sync_solutions.py [--check]", file=sys.stderr)
        return 2
    text = render(course_solutions(Path(__file__).resolve().parent.parent / "notebooks"))
    current = SOLUTIONS_FILE.read_text(encoding="utf-8") if SOLUTIONS_FILE.is_file() else None
    if argv == ["--check"]:
        print("up to date" if text == current else f"{SOLUTIONS_FILE} is out of date; run this script")
        return 0 if text == current else 1
    if text == current:
        print(f"already up to date: {SOLUTIONS_FILE}")
        return 0
    SOLUTIONS_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SOLUTIONS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
