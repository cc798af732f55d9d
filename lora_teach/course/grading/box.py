"""A bubblewrap box for one student's run: a read-only view of the system, Python and the course, a
private writable copy of the submission, a private /tmp, no network, its own PID namespace and session,
and limits on memory (address space per process) and on the number of processes."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

INSTALL = (
    "install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)"
)
# What a box sees of the environment; everything else is cleared.
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LORA_TEACH_DATA")


@dataclass
class Limits:
    """``memory``: bytes of address space per process; ``processes``: processes the box may hold at once."""

    memory: int = 8 << 30
    processes: int = 256


@dataclass
class Finished:
    """How a boxed command ended: its exit status (None: killed at the wall-clock limit) and seconds."""

    returncode: int | None
    seconds: float


def bwrap() -> str | None:
    """The bwrap executable, if it is installed and can make a box here; else None."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run(
        [path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        timeout=30,
    )
    return path if probe.returncode == 0 else None


def memory_bytes(text: str) -> int:
    """``--memory``: a size such as 8G, 512M or 2000000000 (bytes), at least 1G."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        value = -1.0
    if not value >= 1 << 30 or value != value or value == float("inf"):
        raise ValueError(f"expected a size of at least 1G such as 8G or 4096M, got {text!r}")
    return int(value)


def readable_roots(extra: list[Path]) -> list[Path]:
    """What a box reads: the system, Python (its prefixes and the import path inside them) and
    ``extra`` (the course's package and data). Other folders on the import path (a clone's root, from
    an editable install or PYTHONPATH) are left out: a class's submissions may sit in that clone."""
    roots = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc", "/opt")]
    prefixes = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent]
    roots += prefixes
    for entry in sys.path:
        path = Path(entry).resolve() if entry else None
        if path and any(path == p.resolve() or p.resolve() in path.parents for p in prefixes):
            roots.append(path)
    roots += extra
    kept: list[Path] = []
    for root in sorted({p.resolve() for p in roots if p.exists()}, key=lambda p: len(p.parts)):
        if not any(root == k or k in root.parents for k in kept):
            kept.append(root)
    return kept


def box_command(
    argv: list[str],
    binds: dict[str, Path],
    readable: list[Path],
    env: dict[str, str],
    readonly: dict[str, Path] | None = None,
) -> list[str]:
    """``argv`` inside a new bwrap box; ``binds`` maps a path inside the box to a writable folder,
    ``readonly`` to a folder it may only read."""
    command = [shutil.which("bwrap") or "bwrap"]
    for root in readable:
        command += ["--ro-bind", str(root), str(root)]
    for inside, outside in binds.items():
        command += ["--bind", str(outside), inside]
    for inside, outside in (readonly or {}).items():
        command += ["--ro-bind", str(outside), inside]
    for link in ("/bin", "/sbin", "/lib", "/lib64", "/lib32"):
        if os.path.islink(link):  # merged /usr: /bin -> usr/bin, and the loader is found through /lib64
            command += ["--symlink", os.readlink(link), link]
    command += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev", "--dir", "/run"]
    command += ["--unshare-all", "--unshare-pid", "--new-session", "--die-with-parent", "--clearenv"]
    for name, value in env.items():
        command += ["--setenv", name, value]
    command += ["--chdir", next(iter(binds), "/tmp"), "--"]
    return command + argv


def box_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a box: a few of the grader's variables, HOME=/tmp, and ``extra``."""
    env = {name: os.environ[name] for name in KEEP_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(HOME="/tmp", MPLBACKEND="Agg", JUPYTER_PLATFORM_DIRS="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


class _ProcessCgroup:
    """A pids cgroup (v1 or v2) capping the processes of one box, when this user may make one;
    RLIMIT_NPROC does not bind root, so for root this is the only process limit."""

    def __init__(self, limit: int) -> None:
        self.path: Path | None = None
        for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
            if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
                path = base / f"lora-teach-grade-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    path.mkdir()
                    (path / "pids.max").write_text(str(limit))
                except OSError:
                    if path.exists():
                        path.rmdir()
                    continue
                self.path = path
                return

    def join(self) -> None:
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        if self.path is None:
            return
        for _ in range(50):  # processes being killed leave the group a moment later
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def process_limit_enforced() -> bool:
    """Whether ``Limits.processes`` binds here: a pids cgroup can be made, or the grader is not root
    (RLIMIT_NPROC)."""
    if os.geteuid() != 0:
        return True
    group = _ProcessCgroup(16)
    enforced = group.path is not None
    group.remove()
    return enforced


def run_limited(command: list[str], limits: Limits, wall: float, log: Path, boxed: bool = True) -> Finished:
    """Run ``command`` with the limits, stdout and stderr into ``log``, killed (with everything it
    started) after ``wall`` seconds. Unboxed (``--no-sandbox``) it runs in a session of its own."""
    group = _ProcessCgroup(limits.processes)

    def limit() -> None:  # in the child, before exec
        group.join()
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        if os.geteuid() != 0:
            soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
            mine = limits.processes + _my_process_count()
            if hard == resource.RLIM_INFINITY or mine < hard:
                resource.setrlimit(resource.RLIMIT_NPROC, (mine, hard))

    start = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=limit,
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=wall)
        except subprocess.TimeoutExpired:
            returncode = None
        _kill_group(process)
    group.remove()
    return Finished(returncode, time.monotonic() - start)


def _kill_group(process: subprocess.Popen) -> None:
    """End the command and its session: in a box the PID namespace ends with it; unboxed, whatever
    stayed in the session is killed too (a process that left it, unboxed, may survive)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _my_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count
