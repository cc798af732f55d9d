"""Safe outputs: paths checked before any work, writes through a temporary file or folder."""

from __future__ import annotations

import os
import stat

import pytest

from lora_teach import outputs
from lora_teach.outputs import (
    OutputError,
    atomic_folder,
    atomic_write_text,
    check_output_dir,
    check_output_file,
)


def test_a_file_where_a_folder_is_expected_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f", "OUT_DIR")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f" / "sub", "OUT_DIR")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_file(tmp_path / "f" / "guide.md", "OUT_FILE")
    with pytest.raises(OutputError, match="is a folder; give a file path"):
        check_output_file(tmp_path, "OUT_FILE")


def test_a_folder_without_write_permission_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)  # as for a read-only folder
    with pytest.raises(OutputError, match="no permission to write in"):
        check_output_dir(tmp_path / "new", "OUT_DIR")
    (tmp_path / "old.md").write_text("x")
    with pytest.raises(OutputError, match="no permission to overwrite it"):
        check_output_file(tmp_path / "old.md", "OUT_FILE")


def test_checking_creates_nothing(tmp_path):
    check_output_dir(tmp_path / "a" / "b")
    check_output_file(tmp_path / "c" / "d.md")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_gets_the_umask_mode_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "guide.md", "new\n")
    finally:
        os.umask(previous)
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o644

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "guide.md", "newer\n")
    assert path.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["guide.md"]


def test_atomic_folder_changes_nothing_when_the_block_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("kept")
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "kept.txt").write_text("replaced")
        raise RuntimeError("halfway")
    assert (out / "kept.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_folder(out) as tmp:
        (tmp / "kept.txt").write_text("replaced")
    assert (out / "kept.txt").read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
