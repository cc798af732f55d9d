"""The class, read once, safely: each student's notebooks copied into the grader's private folder
before anyone's code runs. Symbolic links are refused (named, never followed or echoed), and two files
for one notebook are resolved by a stated rule: the exact course name wins, else the browser copy
with the highest number (``(2)`` over ``(1)``), the latest download."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 64 << 20  # a bigger "notebook" is refused rather than read
COPY_NUMBER = re.compile(r"\((\d+)\)\.ipynb$")


@dataclass
class Student:
    """One student's hand-in: course notebook -> private copy, plus what was refused or set aside."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # course notebook -> why it was not read
    notes: list[str] = field(default_factory=list)


def match_notebook(name: str, course: list[str]) -> str | None:
    """The course notebook a submitted file is: the same name, else the same two-digit number
    (so ``01_rank_and_decomposition (1).ipynb`` from a browser download still counts)."""
    if name in course:
        return name
    number = re.match(r"(\d\d)[_ -]", name)
    if number:
        same = [c for c in course if c.startswith(number.group(1) + "_")]
        if len(same) == 1:
            return same[0]
    return None


def _rank(name: str, course_name: str) -> tuple[int, int]:
    """Higher wins: the exact course name, then the highest browser copy number."""
    if name == course_name:
        return (1, 0)
    copy = COPY_NUMBER.search(name)
    return (0, int(copy.group(1)) if copy else 0)


def _read(path: Path) -> bytes:
    """The bytes of a regular file, never through a symbolic link (O_NOFOLLOW), at most MAX_BYTES."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        if info.st_size > MAX_BYTES:
            raise OSError(f"larger than {MAX_BYTES >> 20} MB")
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            return file.read(MAX_BYTES + 1)
    finally:
        os.close(descriptor)


def snapshot(submissions: Path, course: list[str], into: Path) -> list[Student]:
    """Copy every student's course notebooks from ``submissions/<student>/`` into ``into/<student>/``."""
    students: list[Student] = []
    for folder in sorted(submissions.iterdir()):
        if folder.name.startswith("."):
            continue
        if folder.is_symlink():
            student = Student(folder.name)
            student.notes.append(f"{folder.name}/ is a symbolic link; it was not read")
            student.refused = {
                name: "the student's folder is a symbolic link; it was not read" for name in course
            }
            students.append(student)
            continue
        if not folder.is_dir():
            continue
        student = Student(folder.name)
        candidates: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.suffix != ".ipynb":
                continue
            name = match_notebook(path.name, course)
            if name is not None:
                candidates.setdefault(name, []).append(path)
        for name, paths in candidates.items():
            paths.sort(key=lambda p: _rank(p.name, name), reverse=True)
            chosen, others = paths[0], paths[1:]
            if others:
                student.notes.append(
                    f"{len(paths)} files for {name}: graded {chosen.name}, set aside "
                    + ", ".join(p.name for p in others)
                )
            if chosen.is_symlink():
                student.refused[name] = f"{chosen.name} is a symbolic link; it was not read"
                continue
            try:
                data = _read(chosen)
            except OSError as error:
                why = (
                    "a symbolic link" if getattr(error, "errno", None) == 40 else str(error.strerror or error)
                )
                student.refused[name] = f"{chosen.name} could not be read safely ({why})"
                continue
            copy = into / student.name / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(data)
            student.files[name] = copy
        students.append(student)
    return students
