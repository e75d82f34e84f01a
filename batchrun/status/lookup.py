"""One job of a runs directory: finding it from what the user typed, its parameters and entry, and a fresh probe of its processes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchrun.errors import UsageError
from batchrun.executors.jobfiles import exit_time, job_alive
from batchrun.liveness import LockTable
from batchrun.runfile.file import (
    Job,
    parse_parameters,
)
from batchrun.status.view import JobStatus, RunsStatus
from batchrun.store.metadata import build_entry
from batchrun.store.records import State
from batchrun.store.rundir import RunsDir, launch_holder

if TYPE_CHECKING:
    from batchrun.status.compact import CompactStatus

__all__ = ["JobProbe", "find_job", "job_entry", "job_parameters", "probe_job", "short_id_length"]


# Job ids are 16 hex digits; the table shows this many unless more are needed to tell them apart.
_SHORT_ID = 8


@dataclass(frozen=True)
class JobProbe:
    """A fresh look at one job's processes, for following its log."""

    running: bool
    launch_running: bool
    # When its wrapper last wrote its exit record, if it did.
    exit_time: float | None


def probe_job(runs_dir: RunsDir, job_id: str) -> JobProbe:
    """Whether a job's processes and a launch are alive now, and when the job last ended."""
    locks = LockTable()
    log_dir = runs_dir.log_dir(job_id)
    launch_running = launch_holder(runs_dir, locks) is not None
    running = job_alive(log_dir, locks, launch_running)
    return JobProbe(running, launch_running, exit_time(log_dir))


def job_parameters(job: JobStatus) -> dict[str, Any]:
    """A job's parameters: as metadata.json has them, else from its command."""
    entry = job.entry
    if entry is not None and entry.get("command") == job.command:
        params = entry.get("parameters")
        if isinstance(params, dict):
            return params
    return dict(parse_parameters(job.command))


def job_entry(status: RunsStatus | CompactStatus, job: JobStatus) -> dict[str, Any]:
    """The job's metadata.json entry as of now.

    It is metadata.json's own entry while that agrees with the journal (so
    the two match to the last digit), else one built from the journal the
    way a launch builds it.
    """
    entry = job.entry
    rec = job.record
    if (
        entry is not None
        and rec is not None
        and entry.get("state") == rec.state
        and entry.get("attempts") == rec.attempts
        and entry.get("status") == rec.status
        and entry.get("command") == job.command
        and (job.line is None or entry.get("line") == job.line)
        and (rec.state != State.RUNNING or (entry.get("job_ref") == rec.ref and entry.get("slot") == rec.slot))
    ):
        return dict(entry)
    log_dir = str(status.runs_dir.log_dir(job.job_id))
    return build_entry(Job(job.command, job.job_id, job.line or 0), rec, log_dir, entry)


def short_id_length(jobs: Iterable[JobStatus]) -> int:
    """The shortest id prefix, from 8 digits up, that tells these jobs apart."""
    ids = [job.job_id for job in jobs]
    length = _SHORT_ID
    while length < 16 and len({job_id[:length] for job_id in ids}) < len(ids):
        length += 1
    return length


def _matching(status: RunsStatus | CompactStatus, prefix: str | None = None, part: str | None = None) -> list[JobStatus]:
    """The jobs (held, or of a compact status, made only for those that match) whose id starts with `prefix`, or whose command has `part`."""
    def keep(job_id: str, command: str) -> bool:
        return job_id.startswith(prefix) if prefix is not None else part is not None and part in command

    if isinstance(status, RunsStatus):
        return [job for job in status.jobs if keep(job.job_id, job.command)]
    table = status.runfile.jobs
    if prefix is not None:
        found = array("q", (i for i, job_id in enumerate(table.keys.texts()) if job_id.startswith(prefix)))
    else:
        found = array("q", (i for i, job in enumerate(table) if keep(job.job_id, job.command)))
    removed = [job for job in status.removed if keep(job.job_id, job.command)]
    return [job for window in status.windows(found, removed) for job in window]


def find_job(status: RunsStatus | CompactStatus, text: str) -> JobStatus:
    """The one job `text` names: a runfile line number, an id prefix, or part of a command.

    A number is a line number: a line that holds no job is an error, never
    a command that happens to contain the digits. Only a number as long as
    the short ids of the tables (8 digits or more) may also be an id prefix.
    Anything else is an id prefix, then a part of a command.

    Raises:
        UsageError: nothing matches, or several jobs do (the message lists them).
    """
    text = text.strip()
    if not text:
        raise UsageError("name a job: a line number, a job id prefix, or part of its command")
    if text.isdigit():
        job = _job_on_line(status, int(text))
        if job is not None:
            return job
        by_id = _matching(status, prefix=text) if len(text) >= _SHORT_ID else []
        if by_id:
            return _only(by_id, f"job id prefix {text!r}", "give more digits of the id")
        where = f"line {int(text)} of {status.runfile.path}" if status.runfile is not None else f"line {int(text)} of the runfile"
        raise UsageError(f"{where} holds no job (a blank or # line, or past the last job); see batchrun status for the jobs' lines")
    lowered = text.lower()
    if all(c in "0123456789abcdef" for c in lowered):
        matches = _matching(status, prefix=lowered)
        if matches:
            return _only(matches, f"job id prefix {text!r}", "give more digits of the id")
    matches = _matching(status, part=text)
    if not matches:
        raise UsageError(f"no job matches {text!r} (not a line with a command, a job id prefix, or part of a command); see batchrun status")
    return _only(matches, repr(text), "give a longer part of the command, the line number or the job id")


def _job_on_line(status: RunsStatus | CompactStatus, lineno: int) -> JobStatus | None:
    if not isinstance(status, RunsStatus):
        lines = status.runfile.jobs.columns()[2]  # the runfile's jobs' line numbers, in file order: found at C speed
        try:
            return next(status.windows(array("q", [lines.index(lineno)]), []))[0]
        except ValueError:
            pass
    else:
        for job in status.jobs:
            if job.line == lineno and not job.removed:
                return job
    if status.runfile is not None:
        # A repeated command is one job, listed at its first line.
        for _command, first, again in status.runfile.duplicates:
            if again == lineno:
                return _job_on_line(status, first)
    return None


def _only(matches: list[JobStatus], what: str, fix: str) -> JobStatus:
    if len(matches) == 1:
        return matches[0]
    shown = "; ".join(_describe(job) for job in matches[:5])
    more = f"; and {len(matches) - 5} more" if len(matches) > 5 else ""
    raise UsageError(f"{what} matches {len(matches)} jobs: {shown}{more}; {fix}")


def _describe(job: JobStatus) -> str:
    where = f"line {job.line}" if job.line is not None and not job.removed else "removed"
    return f"{job.job_id} ({where}) {job.command if len(job.command) <= 50 else job.command[:47] + '...'}"
