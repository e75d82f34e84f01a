"""`batchrun logs`: a job's out.log or err.log, its tail, and following it while the job runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from batchrun.cli.target import target_of
from batchrun.errors import MetadataError, UsageError
from batchrun.status.lookup import find_job, probe_job
from batchrun.status.view import JobStatus, RunsStatus, load_status
from batchrun.store.records import State
from batchrun.store.target import Target

if TYPE_CHECKING:
    from batchrun.status.compact import CompactStatus

__all__ = ["cmd_logs", "jobs_of"]

# How often `logs --follow` looks for new output and for the job's end.
_FOLLOW_POLL = 0.25

# Bytes copied per read when printing a log.
_COPY_CHUNK = 1 << 20

# How much of a log is read per step when looking for its last lines.
_TAIL_BLOCK = 65536


def jobs_of(target: Target) -> RunsStatus | CompactStatus:
    """The target's jobs, to find one in (`lookup.find_job`): a runfile's held by column (`status.compact`), not a
    `JobStatus` each, which at a million lines is over a GB."""
    from batchrun.status.compact import read_compact, usable_for

    return read_compact(target, usage=False) if usable_for(target) else load_status(target)


def cmd_logs(args: argparse.Namespace) -> int:
    """Run `batchrun logs`."""
    target = target_of(args)
    status = jobs_of(target)
    job = find_job(status, args.job)
    name = "err.log" if args.err else "out.log"
    path = status.runs_dir.log_dir(job.job_id) / name
    out = sys.stdout.buffer
    # --follow waits for a job that has not started while a launch may start it.
    waits = args.follow and job.state not in State.FINISHED and (job.state == State.RUNNING or status.launch_running)
    if waits:
        return _follow(status, job, path, args.tail, out)
    if not path.exists():
        raise UsageError(f"job {job.job_id} ({_where(job)}) has no {name} yet: it is {job.category}; see batchrun status {shlex.quote(str(target.given))}")
    try:
        if args.tail is not None:
            out.write(_tail_bytes(path, args.tail))
        else:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out, _COPY_CHUNK)
    except OSError as err:
        raise MetadataError(f"{path}: cannot read the log: {err.strerror}") from err
    out.flush()
    return 0


def _where(job: JobStatus) -> str:
    return "removed from the runfile" if job.removed else f"line {job.line}"


def _follow(status: RunsStatus | CompactStatus, job: JobStatus, path: Path, tail: int | None, out: IO[bytes]) -> int:
    """Print the log and what is appended to it until the job ends, like `tail -f`.

    A job that has not started yet is waited for while the launch runs; a
    new attempt truncates the log, which starts the printing over.
    """
    # Read before the journal was: an exit record at least this recent ends
    # an attempt the status did not see running.
    since = status.now
    started = job.state == State.RUNNING
    pos = 0
    try:
        if tail is not None and path.exists():
            out.write(_tail_bytes(path, tail))
            pos = path.stat().st_size
        while True:
            pos = _copy_new(path, pos, out)
            probe = probe_job(status.runs_dir, job.job_id)
            if probe.running:
                started = True
            elif started or not probe.launch_running or (probe.exit_time is not None and probe.exit_time >= since):
                _copy_new(path, pos, out)
                return 0
            time.sleep(_FOLLOW_POLL)
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        raise MetadataError(f"{path}: cannot read the log: {err.strerror}") from err


def _tail_bytes(path: Path, lines: int) -> bytes:
    """The last `lines` lines of a file, read from its end.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if lines <= 0:
            return b""
        pos = end
        data = b""
        # One more newline than lines wanted, unless the file ends without one.
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    body = data[:-1] if data.endswith(b"\n") else data
    cut = len(body)
    for _ in range(lines):
        cut = body.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1 :]


def _copy_new(path: Path, pos: int, out: IO[bytes]) -> int:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < pos:
            pos = 0  # a new attempt truncated the log
        f.seek(pos)
        while chunk := f.read(_COPY_CHUNK):
            out.write(chunk)
            pos += len(chunk)
    out.flush()
    return pos
