"""Appending to a file that several processes append to: one `write` under the file's exclusive flock.

The job journal has more than one writer: the launch, and its slot helpers
(`local/_slot_helper.py`), each of which appends a job's start line itself,
right before the job starts. A write that the disk cuts short leaves part of
a line; the writer cuts it back off, which is only safe while no one else can
append behind it: every writer holds the journal's flock across its write
and its cut-back, for microseconds.

A second lock, the flock of the journal's folder (`guard`), orders a
helper's "is my launch still there?" check, its start line and its taking of
the job's out.log lock against a later launch's reading of the journal:
helpers hold it shared, a launch takes it exclusively before it replays.

Standard library only: the helpers import it by path.
"""

from __future__ import annotations

import errno
import fcntl
import os

__all__ = ["append_locked", "guard"]


def append_locked(fd: int, data: bytes) -> None:
    """Append `data` to the file of `fd` (opened `O_APPEND`) with one write, holding its flock exclusively.

    Raises:
        OSError: the write failed; a short one (the disk filled mid-line) was cut back off and raises ENOSPC.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        written = os.write(fd, data)
        if written != len(data):
            os.ftruncate(fd, os.fstat(fd).st_size - written)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def guard(journal: str | os.PathLike[str]) -> int:
    """A descriptor of the journal's folder, whose flock is the guard above (the caller closes it)."""
    return os.open(os.path.dirname(os.path.abspath(journal)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
