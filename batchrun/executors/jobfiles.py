"""The files every executor's supervisor leaves in a job's log directory, read from anywhere.

`supervisor` writes them (and names them); everything else reads them here:
- out.log's flock: held while any process of the job (or its supervisor,
  until the record is written) is alive;
- the exit record, a line of the launch's exit log (`exitlog`, one file per
  launch in the runs directory) with what the attempt used; or, from a
  writer told no launch and from the previous release, the job's `exit`
  file: `<status> <attempt>`, or `<status> <attempt> <state>` for a job a
  stop ended (`read_exit_record`), and its `usage` file, `<attempt>
  <max_rss_kb> <user_cpu_s> <sys_cpu_s>` (`read_usage`), written just
  before the exit record;
- `.stopping`: the note a launch leaves before it signals a job on purpose
  (`note_stop`): the state the stop records and the attempt it is for
  (`stop_state`), honoured by the supervisor and by whoever settles the job.
These are the same for every executor, so a launch, `status` and `wait`
read any job's end and liveness without knowing which executor ran it.
`exitrecord` has their formats.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import batchrun.executors.exitlog as exitlog
from batchrun.executors.exitrecord import EXIT_NAME, STOP_NAME, STOP_STATES, note_stop, read_exit_record, stop_state
from batchrun.executors.supervisor import LOCK_NAME, OUT_NAME, USAGE_NAME
from batchrun.liveness import LockTable, lock_held

__all__ = [
    "EXIT_NAME",
    "LOCK_NAME",
    "LOGS_NAME",
    "OUT_NAME",
    "STOP_NAME",
    "STOP_STATES",
    "Unrecorded",
    "attempt_of",
    "exit_time",
    "job_alive",
    "job_lock_held",
    "log_dir_of",
    "note_stop",
    "read_exit_record",
    "read_usage",
    "stop_state",
    "wait_for_job_lock",
    "wait_unwatched",
]

# A runs directory's folder of job log directories: `<runs dir>/logs/<job id>/`, the original tool's
# layout. Named here, below every folder that needs it (the runs directory, the executors that find a
# job's files from their own folder, the read commands), so that none spells it again.
LOGS_NAME = "logs"


def log_dir_of(runs_dir: Path, job_id: str) -> Path:
    """A job's log directory in a runs directory."""
    return runs_dir / LOGS_NAME / job_id


class Unrecorded(enum.IntEnum):
    """What `Executor.wait` returns for a job that ended with no exit record and whose status its executor could not learn.

    Negative numbers no shell status or signal can be, so they pass where
    a returncode does.
    """

    # Nobody saw it end (its supervisor died with it, a cluster lost it): it
    # did not fail, and it runs again; never counted as a failure.
    LOST = -1000
    # Its cluster stopped it at its time limit (SLURM's --time) and its
    # supervisor died with it: recorded `timeout`, as a launch's own --timeout is.
    TIMED_OUT = -1001


def attempt_of(env: Mapping[str, str]) -> int | None:
    """The attempt a job's environment names (BATCHRUN_ATTEMPT); None when it names none."""
    attempt = env.get("BATCHRUN_ATTEMPT", "")
    return int(attempt) if attempt.isdigit() else None


def read_usage(log_dir: Path | str, attempt: int) -> tuple[int, float, float] | None:
    """What an attempt used, as its supervisor wrote it (`supervisor.record_usage`): (max_rss_kb, user_cpu_s, sys_cpu_s); None if unknown.

    Only that attempt's: an earlier attempt's is none. The launch's exit
    log (`exitlog`) holds it with the record; a writer told no launch (and
    the previous release) wrote it to the job's `usage` file.
    """
    logged = exitlog.lookup(log_dir, attempt)
    if logged is not None and logged.attempt == attempt:
        return logged.usage
    try:
        with open(f"{log_dir}/{USAGE_NAME}", "rb") as f:
            data = f.read(128)
    except OSError:
        return None
    fields = data.split()
    if not data.endswith(b"\n") or len(fields) != 4 or fields[0] != str(attempt).encode():
        return None
    try:
        return int(fields[1]), float(fields[2]), float(fields[3])
    except ValueError:
        return None


def exit_time(log_dir: Path | str, attempt: int | None = None) -> float | None:
    """When the job's attempt (by default its newest) ended, by its exit record (`read_exit_record`); None when it has none."""
    record = read_exit_record(log_dir, attempt)
    return None if record is None else record[1]


def job_lock_held(log_dir: Path | str, name: str = LOCK_NAME) -> bool:
    """True while some process of a job holds the flock on `<log_dir>/<name>` (probed): out.log unless named."""
    return lock_held(f"{log_dir}/{name}")


def job_alive(log_dir: Path, locks: LockTable | None = None, launch_running: bool = False) -> bool:
    """True while some process of a job holds its out.log lock.

    With `locks` (a /proc/locks snapshot) nothing is probed; where that table
    cannot be read and a launch runs, a probe could make the launch fail to
    start this very job, so until its exit record appears it counts as alive.
    """
    if locks is not None:
        held = locks.held(log_dir / LOCK_NAME)
        if held is not None:
            return held
        if launch_running:
            return read_exit_record(log_dir) is None
    return job_lock_held(log_dir)


def wait_for_job_lock(log_dir: Path | str, should_stop: Callable[[], bool], poll: float = 0.2, deadline: float | None = None) -> bool:
    """Block until no process of a job holds its lock; False when `should_stop` said to give up or `deadline` (monotonic) passed.

    `should_stop` is checked between polls so a stopping launch does not
    hang on a job it could not kill.
    """
    while job_lock_held(log_dir):
        if should_stop() or (deadline is not None and time.monotonic() >= deadline):
            return False
        time.sleep(poll)
    return True


def wait_unwatched(log_dir: Path | str, attempt: int | None, timeout: float | None = None, poll: float = 0.05) -> int | None:
    """Wait for a job whose supervisor this process cannot hear (it died, or it never answered to us); its status, None on timeout.

    The lock is waited for first and the record read after (see
    `launch.settle` for why). No record: the job ended unseen (`Unrecorded.LOST`).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    if not wait_for_job_lock(log_dir, lambda: False, poll, deadline):
        return None
    record = read_exit_record(log_dir, attempt)
    return record[0] if record is not None else Unrecorded.LOST
