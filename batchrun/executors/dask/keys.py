"""The files in a job's log directory that decide which Dask attempt may run it.

`start` writes the attempt's key to `dask-key` (`claim_log_dir`); a
supervisor on a worker (`dask._forkserver`) runs the command only if that
file still names its key once it holds `run.lock`. `mark_stopped` replaces
the key under the lock, so an attempt not yet running never starts. These
files are read back after a crash: a damaged key file (bytes that are not
UTF-8, garbage, a truncated write) names no attempt, never an error.
"""

from __future__ import annotations

import fcntl
import os

from batchrun.atomic import write_atomic
from batchrun.executors.jobfiles import job_lock_held
from batchrun.executors.supervisor import OUT_NAME, clear_job_files

__all__ = ["KEY_NAME", "LOCK_NAME", "STOPPED", "claim_log_dir", "job_alive", "mark_stopped", "read_key", "write_key"]

# The file in a job's log directory naming the attempt (Dask key) allowed to run it.
KEY_NAME = "dask-key"
# What `mark_stopped` writes into KEY_NAME so that a task not yet running never starts.
STOPPED = "stopped"
# The file in a job's log directory whose flock a supervisor holds from
# before it runs the job until no process of the job holds out.log's lock
# (`dask._forkserver`). Not out.log itself: the launch renames out.log
# between attempts, and this lock must stay put to keep two attempts from
# ever overlapping.
LOCK_NAME = "run.lock"


def claim_log_dir(log_dir: str, key: str) -> None:
    """Prepare a job's log directory for attempt `key` and make it the one allowed to run.

    Raises:
        OSError: the log directory or its files cannot be created.
    """
    try:
        os.mkdir(log_dir)
    except FileExistsError:
        pass
    fd = os.open(f"{log_dir}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free = True
        except BlockingIOError:
            # A run of an earlier attempt started after the recovery looked:
            # keep its record; the new task waits for it and reports it.
            free = False
        if free:
            # The supervisor starts later and leaves the record and stop note be.
            clear_job_files(log_dir)
            for name in (OUT_NAME, "err.log"):
                os.close(os.open(f"{log_dir}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
        write_key(log_dir, key)
    finally:
        os.close(fd)


def mark_stopped(log_dir: str, key: str) -> bool:
    """Keep attempt `key` from ever starting its command; False while its lock is held."""
    try:
        fd = os.open(f"{log_dir}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if read_key(log_dir) == key:
            write_key(log_dir, STOPPED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def job_alive(log_dir: str) -> bool:
    """True while a supervisor or any process of the job is alive.

    Also true for a job an earlier launch ran with another executor, whose
    processes hold the flock on out.log (as every supervisor's do), so
    switching executors between launches never runs a job twice.
    """
    return job_lock_held(log_dir, LOCK_NAME) or job_lock_held(log_dir)


def read_key(log_dir: str) -> str | None:
    """The attempt the key file names; None when it cannot be read. Damaged bytes name no attempt."""
    try:
        with open(f"{log_dir}/{KEY_NAME}", "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def write_key(log_dir: str, key: str) -> None:
    """Name `key` as the attempt allowed to run (atomic: a supervisor reads the old key or the new one)."""
    write_atomic(f"{log_dir}/{KEY_NAME}", key + "\n")
