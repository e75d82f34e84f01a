"""A local job's two files that say how it stands: out.log's flock (alive) and `exit` (how it ended).

Kept apart from `local` so that the per-slot helpers' client (`helpers`),
which `local` uses, reads them without an import circle.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchrun.liveness import LockTable, lock_held

__all__ = ["EXIT_NAME", "LOCK_NAME", "OUT_NAME", "STOP_NAME", "job_alive", "job_lock_held", "read_exit_record"]

EXIT_NAME = "exit"
OUT_NAME = "out.log"
# The file whose flock says a job's processes are alive.
LOCK_NAME = OUT_NAME
# A note a launch leaves before it signals a job's group (`LocalExecutor.signal`):
# the job's helper then writes no exit record (`_slot_helper`).
STOP_NAME = ".stopping"


def read_exit_record(log_dir: Path, attempt: int | None = None) -> tuple[int, float] | None:
    """The exit status and end time a job's wrapper recorded, if complete.

    With `attempt`, only a record of that attempt counts. A record that
    names no attempt (written before records named them, or by a wrapper
    run without BATCHRUN_ATTEMPT) counts for any attempt.
    """
    path = log_dir / EXIT_NAME
    try:
        with open(path, "rb") as f:
            data = f.read(64)
            end = os.fstat(f.fileno()).st_mtime
    except OSError:
        return None
    if not data.endswith(b"\n"):
        return None
    fields = data.split()
    try:
        status = int(fields[0])
        recorded = int(fields[1]) if len(fields) > 1 else None
    except (ValueError, IndexError):
        return None
    if len(fields) > 2 or (attempt is not None and recorded is not None and recorded != attempt):
        return None
    return status, end


def job_lock_held(log_dir: Path | str, name: str = LOCK_NAME) -> bool:
    """True while some process of a job holds the flock on `<log_dir>/<name>` (probed).

    For jobs started with `spawn_job` that is out.log; other executors'
    supervisors lock files of their own.
    """
    return lock_held(f"{log_dir}/{name}")


def job_alive(log_dir: Path, locks: LockTable | None = None, launch_running: bool = False) -> bool:
    """True while some process of a local job holds its out.log lock.

    With `locks` (a /proc/locks snapshot) nothing is probed; where that table
    cannot be read and a launch runs, a probe could make the launch fail to
    start this very job, so until its exit record appears it counts as alive.
    """
    if locks is not None:
        held = locks.held(log_dir / LOCK_NAME)
        if held is not None:
            return held
        if launch_running:
            return not (log_dir / EXIT_NAME).exists()
    return job_lock_held(log_dir)
