"""Writing outputs safely: check a path can be written before any work, write through a temporary
file or folder and rename, and leave nothing behind on failure. Used by the ``lora-teach`` commands."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written, with what to do about it."""


def umask_mode() -> int:
    """The mode a new file gets under the current umask (0o644 for the usual umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _existing_ancestor(path: Path) -> Path:
    for folder in [path, *path.parents]:
        if folder.exists():
            return folder
    return Path("/")


def _check_ancestor(path: Path, option: str) -> None:
    ancestor = _existing_ancestor(path.parent if not path.exists() else path)
    if not ancestor.is_dir():
        raise OutputError(f"{option} {path}: {ancestor} is a file, not a folder; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: no permission to write in {ancestor}; choose another path")


def check_output_file(path: Path | str, option: str = "output") -> Path:
    """Refuse (OutputError) a file path that cannot be written: a folder, a path under a file, a
    folder without write permission. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path}: no permission to overwrite it; choose another path")
    _check_ancestor(path.parent, option)
    return path


def check_output_dir(path: Path | str, option: str = "output") -> Path:
    """Refuse (OutputError) a folder path that cannot be written: an existing file, a path under a
    file, a folder without write permission. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder; give a folder path")
    _check_ancestor(path, option)
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename: a reader sees
    the old file or the whole new one, never a part. The new file gets the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_new_file(path: Path | str, write, *, force: bool = False, option: str = "output") -> Path:
    """Call ``write(tmp)`` on a unique temporary file beside ``path``, then put it at ``path``.

    Without ``force`` the final file is created exclusively (a hard link, which fails if ``path``
    exists): a file that appeared meanwhile, say from a second run, is never replaced, and the
    FileExistsError names ``path`` and ``--force``. With ``force`` it is replaced in one rename.
    The file gets the umask's mode; on any failure no temporary file is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        try:
            write(tmp)
            os.chmod(tmp, umask_mode())
        except OSError as error:  # named by the user's path, never the temporary file
            raise OutputError(
                f"{option} {path}: could not write it ({error.strerror or error}); it was left as it was"
            ) from error
        if force:
            os.replace(tmp, path)
        else:
            _create_exclusively(tmp, path, option)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _create_exclusively(tmp: Path, path: Path, option: str) -> None:
    exists = FileExistsError(
        f"{option} {path} exists (written while this ran?); it was left as it is: "
        "choose another path or pass --force to overwrite it"
    )
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise exists from None
    except OSError:  # a file system without hard links: copy into a file opened with O_EXCL
        pass
    try:
        out = open(path, "xb")  # noqa: SIM115 - closed below
    except FileExistsError:
        raise exists from None
    try:
        with out, open(tmp, "rb") as source:
            shutil.copyfileobj(source, out)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(out_dir: Path | str, option: str = "output") -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; when the block ends without error, move each entry
    written there into ``out_dir`` (created if needed), replacing an entry of the same name. All or
    nothing: if a move fails or is interrupted, every entry moved so far is put back, and the error (an
    OutputError for a system error) names ``out_dir``, never the temporary folder. Other entries of
    ``out_dir`` are left alone; the temporary folder is always removed. New entries get the umask's modes."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        yield tmp
        entries = sorted(tmp.iterdir())
        for path in entries:
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())
        _move_all_or_nothing(entries, out_dir, tmp, option)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_all_or_nothing(
    entries: list[Path], out_dir: Path, tmp: Path, option: str, replace: bool = True
) -> None:
    """Move ``entries`` into ``out_dir``, the entries they replace into ``tmp/.replaced``; undo every
    move on any error or interrupt. Without ``replace`` an entry that exists is an error (with --force
    as the fix): nothing that appeared meanwhile is replaced."""
    replaced = tmp / ".replaced"
    replaced.mkdir()
    created = not out_dir.exists()
    moves: list[tuple[Path, Path]] = []  # (from, to) in the order done
    name = out_dir.name
    try:
        out_dir.mkdir(exist_ok=True)
        for entry in entries:
            name, target = entry.name, out_dir / entry.name
            if (target.exists() or target.is_symlink()) and not replace:
                raise FileExistsError(errno.EEXIST, "it exists; pass --force to replace it")
            if target.exists() or target.is_symlink():
                os.replace(target, replaced / name)
                moves.append((target, replaced / name))
            os.replace(entry, target)
            moves.append((entry, target))
    except BaseException as error:
        for source, dest in reversed(moves):
            with contextlib.suppress(OSError):
                os.replace(dest, source)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        if isinstance(error, OSError):
            raise OutputError(
                f"{option} {out_dir}: could not write {name} ({error.strerror or error}); "
                f"nothing in {out_dir} was changed"
            ) from error
        raise


def error_line(error: BaseException) -> str:
    """An error as one line (an OSError from the system gets its path and reason)."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.filename:
        return f"cannot write {error.filename}: {error.strerror}"
    return " ".join(str(error).split())


RESUME_FIX = "pass --force to start again, or give another --out"


def read_json_to_resume(out: Path) -> object:
    """The JSON of the results file that ``--resume`` continues, or a one-line ValueError naming the file."""
    try:
        return json.loads(out.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"--resume: {out} is not a text file; {RESUME_FIX}") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--resume: {out} is not valid JSON ({error.msg}, line {error.lineno}); {RESUME_FIX}"
        ) from None
