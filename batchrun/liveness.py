"""The one liveness probe: whether a process is alive, and whether someone holds a file's flock.

Every "is it still running" question batchrun asks comes down to these:
a launch is alive while it holds its runs directory's `.lock`; a job while any
of its processes (or its supervisor) holds the flock on its `out.log`; a
process named by a pid while that pid exists and, where it matters, started
when it did (a pid is reused after its process dies).

A flock is read two ways. `lock_held` probes it (a shared, non-blocking
flock), which is exact but, for an instant, holds the lock itself: a launch
starting that job in that instant could fail to take it. `LockTable` reads
/proc/locks instead, which takes nothing: the read-only commands (`status`,
`wait`, `kill`) use it while a launch may be running.

Standard library only, and no import of batchrun: every folder may use it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["MAX_PID", "LockTable", "lock_held", "pid_alive", "start_time"]

# Largest pid Linux hands out (pid_max's ceiling, 2**22).
MAX_PID = 4_194_304


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours to signal or not)."""
    if not 0 < pid <= MAX_PID:
        return False  # 0 is our own process group to os.kill, a negative pid a group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def start_time(pid: int) -> str:
    """When the process started (clock ticks since boot), to tell it from a later one with its pid; "" if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def lock_held(path: Path | str) -> bool:
    """True while some process holds a flock on `path` (probed: see the module docstring)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class LockTable:
    """Who holds a flock on which file, read once from /proc/locks: a snapshot that takes no lock.

    Where /proc/locks cannot be read, `held` and `holder` answer None and
    the caller decides how to guess.
    """

    def __init__(self) -> None:
        # inode -> pid of a holder (0 when /proc/locks shows none: another pid namespace).
        self.holders = _flock_holders()

    @property
    def readable(self) -> bool:
        return self.holders is not None

    def held(self, path: Path | str) -> bool | None:
        """Whether someone holds a flock on `path`; None when /proc/locks is not readable."""
        if self.holders is None:
            return None
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return False
        return inode in self.holders

    def holder(self, path: Path | str) -> int | None:
        """The pid /proc/locks shows holding `path`'s flock (0: held, by a pid it cannot show); None: not held or unknown."""
        if self.holders is None:
            return None
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return None
        return self.holders.get(inode)


def _flock_holders() -> dict[int, int] | None:
    """Inode numbers of files flock()ed by anyone, with a holder's pid; None where /proc/locks is missing.

    Only inodes are compared: on overlayfs /proc/locks names the upper
    layer's device, not the one stat() reports.
    """
    try:
        with open("/proc/locks", "rb") as f:
            data = f.read()
    except OSError:
        return None
    holders: dict[int, int] = {}
    for line in data.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:567 0 EOF"; a waiter's line reads "1: -> FLOCK ...".
        parts = line.split()
        if len(parts) >= 6 and parts[1] == b"FLOCK" and (inode := parts[5].rsplit(b":", 1)[-1]).isdigit():
            holders.setdefault(int(inode), int(parts[4]) if parts[4].isdigit() else 0)
    return holders
