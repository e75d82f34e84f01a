"""A runs directory: where a runfile's logs and records live, and the lock one launch at a time holds on it.

The lock is an exclusive `flock` on `<runs dir>/.lock`, whose file also names
the holder's pid; `launch_holder` is the one answer to "which launch runs this
runs directory now", for the launch that refuses to start beside it, for
`status`, `wait`, `kill` and `stop`.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from batchrun.errors import LockedError, MetadataError
from batchrun.executors.jobfiles import LOGS_NAME, log_dir_of
from batchrun.liveness import MAX_PID, LockTable, pid_alive

__all__ = ["DEFAULT_METADATA_NAME", "DEFAULT_RUNS_ROOT", "LaunchLock", "RunsDir", "acquire_lock", "read_lock_owner"]


DEFAULT_RUNS_ROOT = Path("runs")
DEFAULT_METADATA_NAME = "metadata.json"
_LOCK_NAME = ".lock"


@dataclass(frozen=True)
class RunsDir:
    """Where one runfile's logs and records live."""

    path: Path
    metadata_name: str = DEFAULT_METADATA_NAME

    @classmethod
    def for_runfile(cls, runfile: Path, accounting_dir: Path | None = None, metadata_name: str = DEFAULT_METADATA_NAME) -> RunsDir:
        """`runs/<runfile stem>/` under the current directory, or `accounting_dir`."""
        path = accounting_dir if accounting_dir is not None else DEFAULT_RUNS_ROOT / runfile.stem
        return cls(Path(os.path.abspath(path)), metadata_name)

    @property
    def logs(self) -> Path:
        return self.path / LOGS_NAME

    @property
    def metadata(self) -> Path:
        return self.path / self.metadata_name

    def log_dir(self, job_id: str) -> Path:
        return log_dir_of(self.path, job_id)

    def create(self) -> None:
        """Create the runs directory and check that it is writable."""
        # One at a time, so that the message names the one that failed: the runs directory, or its logs/.
        for path, what in ((self.path, "the runs directory"), (self.logs, "the logs directory")):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise MetadataError(f"{path}: cannot create {what}: {err.strerror}") from err
            if not os.access(path, os.W_OK | os.X_OK):
                raise MetadataError(f"{path}: {what} is not writable")


class LaunchLock:
    """An exclusive `flock` on the runs directory, held for a whole launch.

    The kernel drops a flock when its holder dies, so a lock left by a
    killed launch never blocks the next one. The descriptor is close-on-exec:
    jobs, which may outlive a killed launch, never inherit it.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_lock_owner(runs_dir: RunsDir) -> int | None:
    """The pid written by the launch that holds (or last held) the lock."""
    try:
        with open(runs_dir.path / _LOCK_NAME, "rb") as f:
            text = f.read(32).strip()
        pid = int(text) if text.isdigit() else 0
    except (OSError, ValueError):
        return None
    # Damaged bytes may spell 0 (our process group to os.kill), or a number
    # os.kill refuses: neither is a launch's pid.
    return pid if 0 < pid <= MAX_PID else None


def _live_lock_owner(runs_dir: RunsDir, wait: float = 1.0) -> int | None:
    """The holder's pid, waiting briefly for a live one.

    The holder writes its pid just after taking the lock, so for an instant
    the file may still name the previous launch (or nothing).
    """
    deadline = time.monotonic() + wait
    while True:
        owner = read_lock_owner(runs_dir)
        if owner is not None and owner != os.getpid() and pid_alive(owner):
            return owner
        if time.monotonic() >= deadline:
            return None  # the file still names a finished launch: do not repeat it
        time.sleep(0.02)


def acquire_lock(runs_dir: RunsDir) -> LaunchLock:
    """Take the runs directory's lock or raise `LockedError` naming the holder."""
    path = runs_dir.path / _LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise MetadataError(f"{path}: cannot create the launch lock: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        owner = _live_lock_owner(runs_dir)
        who = f"pid {owner}" if owner else "another process"
        raise LockedError(
            f"{runs_dir.path}: another batchrun launch ({who}) is running this runfile; "
            "wait for it to finish or stop it first"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as err:
        # A full disk (ENOSPC) or quota: one line, as for any runs directory that cannot be written.
        os.close(fd)
        raise MetadataError(f"{path}: cannot write the launch lock: {err.strerror}") from err
    return LaunchLock(fd, path)


def launch_holder(runs_dir: RunsDir, locks: LockTable | None = None) -> int | None:
    """The pid of the launch holding the runs directory's lock, or None when none does.

    Read from /proc/locks (`locks`, or a fresh table), which takes no lock; the
    pid the lock file names serves where /proc/locks shows none (another pid
    namespace) or cannot be read (then a live pid is the best guess).
    """
    locks = locks if locks is not None else LockTable()
    path = runs_dir.path / _LOCK_NAME
    written = read_lock_owner(runs_dir)
    if not locks.readable:
        return written if written is not None and pid_alive(written) else None
    shown = locks.holder(path)
    if shown is None:
        return None
    return written if written is not None and (shown in (0, written) or not pid_alive(shown)) else shown
