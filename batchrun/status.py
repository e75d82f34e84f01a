"""Read-only views of a runs directory: job states, job lookup, logs, and plans.

`batchrun status`, `logs`, `failed` and `plan` (and `launch --dry-run`) read
what launches leave behind without taking the launch's lock and without
writing anything, so they answer while a launch runs. The journal is the
truth about jobs; the runfile (or a gridspec's runfile) gives their order,
line numbers and which jobs were removed; metadata.json gives the commands of
removed jobs and the records of the original batchrun. A job the journal
shows running while no launch holds the runs directory is settled the way the
next launch would settle it (its exit record, then its job lock), but only in
memory.

Whether a lock is held is read from /proc/locks instead of by trying it:
even a shared probe of `run.lock` could make a launch that starts that job at
that instant fail to take it.

This module never prints; `cli_status` renders what it returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.errors import GridspecError, InputError, UsageError
from batchrun.executors import local
from batchrun.journal import JOURNAL_NAME, Journal, JobRecord, State
from batchrun.launch import MODES, Plan
from batchrun.metadata import DEFAULT_METADATA_NAME, RunsDir, build_entry, legacy_record, load_metadata, read_lock_owner
from batchrun.runfile import Job, Runfile, load_runfile, parse_parameters, parse_runfile_text

__all__ = [
    "GROUPS",
    "REMOVED",
    "STATES",
    "JobStatus",
    "Preview",
    "RunsStatus",
    "Target",
    "find_job",
    "job_entry",
    "job_parameters",
    "job_running",
    "load_status",
    "preview_launch",
    "read_status",
    "resolve_target",
    "short_id_length",
    "tail_bytes",
]

# The pseudo-state of a job whose line is no longer in the runfile.
REMOVED = "removed"
# Every state `status` counts and filters on, in the order it lists them.
STATES = (State.SUCCEEDED, State.FAILED, State.TIMEOUT, State.INTERRUPTED, State.RUNNING, State.PENDING, REMOVED)
# What a launch would do with each job, in the order `plan` lists them.
GROUPS = ("new", "interrupted", "running", "failed", "succeeded", "recovered", "removed")

_GRIDSPEC_SUFFIXES = (".yml", ".yaml")
# The file `metadata.acquire_lock` flocks for a whole launch.
_LAUNCH_LOCK_NAME = ".lock"
# Job ids are 16 hex digits; the table shows this many unless more are needed to tell them apart.
_SHORT_ID = 8
# How much of a log is read per step when looking for its last lines.
_TAIL_BLOCK = 65536


@dataclass(frozen=True)
class Target:
    """What the user named: a runfile, a gridspec, or a runs directory."""

    given: Path
    runs_dir: RunsDir
    runfile: Path | None = None
    gridspec: Path | None = None

    @property
    def launch_command(self) -> str:
        """The command that launches this target."""
        return f"batchrun launch {self.runfile if self.runfile is not None else self.given}"


class JobStatus:
    """One job as the runs directory shows it now; built by `read_status`."""

    __slots__ = ("command", "entry", "job_id", "line", "record", "removed", "unwatched")

    def __init__(self, job_id: str, command: str, line: int | None, record: JobRecord | None, entry: dict[str, Any] | None, removed: bool) -> None:
        self.job_id = job_id
        self.command = command
        self.line = line
        self.record = record
        self.entry = entry
        self.removed = removed
        # Ended while no launch was watching: the next launch collects it.
        self.unwatched = False

    @property
    def state(self) -> str:
        """The job's own state (pending when it never started)."""
        return self.record.state if self.record is not None else State.PENDING

    @property
    def category(self) -> str:
        """The state `status` counts it under: `removed` wins over the rest."""
        return REMOVED if self.removed else self.state

    def __repr__(self) -> str:
        return f"JobStatus({self.job_id}, {self.category}, line={self.line})"


@dataclass
class RunsStatus:
    """Every job of a runs directory and its runfile, as of `now`."""

    runs_dir: RunsDir
    runfile: Runfile | None
    jobs: list[JobStatus]
    launch_running: bool
    launch_pid: int | None
    now: float
    # The parameters of a gridspec, in order; None when not given a gridspec.
    parameter_names: list[str] | None = None

    def counts(self) -> dict[str, int]:
        """How many jobs are in each of `STATES`."""
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs:
            counts[job.category] += 1
        return counts

    def select(self, states: Iterable[str] | None) -> list[JobStatus]:
        """The jobs in any of `states` (all jobs when None), in listing order."""
        if not states:
            return list(self.jobs)
        wanted = set(states)
        return [job for job in self.jobs if job.category in wanted]


def resolve_target(path: Path, accounting_dir: Path | None = None, metadata_name: str = DEFAULT_METADATA_NAME) -> Target:
    """Tell a runs directory, a gridspec and a runfile apart.

    A gridspec `g.yml` stands for its runfile `g.runfile` in the current
    directory and that runfile's runs directory.

    Raises:
        InputError: `path` does not exist.
    """
    if path.is_dir():
        return Target(path, RunsDir(Path(os.path.abspath(path)), metadata_name))
    if not path.exists():
        raise InputError("no such runfile, gridspec or runs directory", path)
    if path.suffix.lower() in _GRIDSPEC_SUFFIXES:
        runfile = Path(f"{path.stem}.runfile")
        return Target(path, RunsDir.for_runfile(runfile, accounting_dir, metadata_name), runfile, path)
    return Target(path, RunsDir.for_runfile(path, accounting_dir, metadata_name), path)


def load_status(target: Target, need_launched: bool = True) -> RunsStatus:
    """Read the state of every job of a target.

    Raises:
        UsageError: `need_launched` and nothing was ever launched there.
        InputError: the runfile or gridspec cannot be read, or a runs
            directory given by path holds no records.
        MetadataError: the journal or metadata.json is corrupt.
    """
    runs_dir = target.runs_dir
    launched = (runs_dir.path / JOURNAL_NAME).exists() or runs_dir.metadata.exists()
    if not launched:
        if target.runfile is None:
            raise InputError(f"not a runs directory (no {JOURNAL_NAME} or {runs_dir.metadata_name} in it)", target.given)
        if need_launched:
            raise UsageError(f"nothing launched yet for {target.given}; run {target.launch_command}")
    names = None
    runfile = None
    if target.gridspec is not None:
        gridspec = _load_gridspec(target.gridspec)
        names = gridspec.parameter_names()
        if target.runfile is not None and target.runfile.exists():
            runfile = load_runfile(target.runfile)
        else:
            # The runfile was never written (or was deleted): the gridspec's
            # own commands, one per line, are what it would hold.
            runfile = parse_runfile_text("\n".join(gridspec.iter_commands()), target.runfile or target.gridspec)
    elif target.runfile is not None:
        runfile = load_runfile(target.runfile)
    status = read_status(runs_dir, runfile)
    status.parameter_names = names
    return status


def _load_gridspec(path: Path) -> Any:
    # Imported only for gridspecs: it pulls in YAML and the sweep rules.
    try:
        from batchrun import sweep
    except ImportError as err:
        raise GridspecError("this batchrun cannot read gridspecs (batchrun.sweep is missing)", path) from err
    return sweep.load_gridspec(path)


def read_status(runs_dir: RunsDir, runfile: Runfile | None) -> RunsStatus:
    """Read the journal and metadata.json of a runs directory, without locking it.

    Jobs come in runfile order, then jobs no longer in the runfile. Without
    a runfile, every job metadata.json or the journal knows, in line order.

    Raises:
        MetadataError: the journal or metadata.json is corrupt.
    """
    journal = Journal(runs_dir.path)
    journal.load()
    records = journal.records
    entries = load_metadata(runs_dir.metadata)
    _import_legacy(records, entries)
    locks = _LockTable()
    now = time.time()
    launch_running = locks.launch_running(runs_dir)
    launch_pid = read_lock_owner(runs_dir) if launch_running else None
    settled = {} if launch_running else _settle_in_flight(records, runs_dir, locks)

    jobs: list[JobStatus] = []
    if runfile is not None:
        known = set()
        for job in runfile.jobs:
            known.add(job.job_id)
            jobs.append(JobStatus(job.job_id, job.command, job.lineno, records.get(job.job_id), entries.get(job.job_id), False))
        removed = True
    else:
        known = set()
        removed = False
    others: list[JobStatus] = []
    for job_id in _ordered_union(entries, records):
        if job_id in known:
            continue
        entry = entries.get(job_id)
        command = entry.get("command") if entry is not None else None
        line = entry.get("line") if entry is not None else None
        others.append(JobStatus(
            job_id,
            command if isinstance(command, str) else "",
            line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else None,
            records.get(job_id),
            entry,
            removed,
        ))
    if runfile is None:
        others.sort(key=lambda job: (job.line is None, job.line or 0))
    jobs.extend(others)
    for job in jobs:
        if job.job_id in settled:
            job.unwatched = True
    return RunsStatus(runs_dir, runfile, jobs, launch_running, launch_pid, now)


def _ordered_union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _import_legacy(records: dict[str, JobRecord], entries: dict[str, dict[str, Any]]) -> None:
    """Entries the original batchrun wrote count as finished, as a launch counts them."""
    for job_id, entry in entries.items():
        if job_id in records or "state" in entry:
            continue
        rec = legacy_record(job_id, entry)
        if rec is not None:
            records[job_id] = rec


def _settle_in_flight(records: dict[str, JobRecord], runs_dir: RunsDir, locks: _LockTable) -> set[str]:
    """Settle in memory the jobs a dead launch left `running`, as the next launch will.

    Returns the ids of those that ended meanwhile (the launch "recovers" them).
    """
    ended = set()
    for rec in records.values():
        if rec.state != State.RUNNING:
            continue
        log_dir = runs_dir.log_dir(rec.job_id)
        exit_record = local.read_exit_record(log_dir)
        if exit_record is not None:
            rec.status, rec.end = exit_record
            if rec.start is None:
                rec.start = rec.end
            rec.state = State.SUCCEEDED if rec.status == 0 else State.FAILED
            ended.add(rec.job_id)
        elif not locks.job_running(log_dir):
            # Its processes are gone with no exit record: it runs again next time.
            rec.state = State.INTERRUPTED
            rec.status = rec.end = None
    return ended


class _LockTable:
    """Which files someone holds a flock on, read once from /proc/locks."""

    def __init__(self) -> None:
        self.inodes = _flocked_inodes()

    def _held(self, path: Path) -> bool | None:
        if self.inodes is None:
            return None
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return False
        return inode in self.inodes

    def launch_running(self, runs_dir: RunsDir) -> bool:
        """True while a launch holds the runs directory's lock."""
        held = self._held(runs_dir.path / _LAUNCH_LOCK_NAME)
        if held is not None:
            return held
        # No /proc/locks: the pid the lock file names is the best guess.
        pid = read_lock_owner(runs_dir)
        return pid is not None and _pid_alive(pid)

    def job_running(self, log_dir: Path) -> bool:
        """True while some process of a job holds its `run.lock`."""
        held = self._held(log_dir / local.LOCK_NAME)
        if held is not None:
            return held
        # Only reached with no launch running, so no launch can be taking
        # this lock at the same instant.
        return local.job_lock_held(log_dir)


def _flocked_inodes() -> set[int] | None:
    """Inode numbers of files flock()ed by anyone; None where /proc/locks is missing.

    Only inodes are compared: on overlayfs /proc/locks names the upper
    layer's device, not the one stat() reports.
    """
    try:
        with open("/proc/locks", "rb") as f:
            data = f.read()
    except OSError:
        return None
    inodes = set()
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:567 0 EOF"; waiters read "1: -> FLOCK ...".
    for line in data.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != b"FLOCK":
            continue
        try:
            inodes.add(int(parts[5].rsplit(b":", 1)[1]))
        except (IndexError, ValueError):
            continue
    return inodes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_running(runs_dir: RunsDir, job_id: str) -> bool:
    """Whether a job's processes are alive now (fresh look, for following logs)."""
    return _LockTable().job_running(runs_dir.log_dir(job_id))


# -- single jobs -------------------------------------------------------------


def job_parameters(job: JobStatus) -> dict[str, Any]:
    """A job's parameters: as metadata.json has them, else from its command."""
    entry = job.entry
    if entry is not None and entry.get("command") == job.command:
        params = entry.get("parameters")
        if isinstance(params, dict):
            return params
    return dict(parse_parameters(job.command))


def job_entry(status: RunsStatus, job: JobStatus) -> dict[str, Any]:
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
        and (rec.state != State.RUNNING or (entry.get("pid") == rec.pid and entry.get("slot") == rec.slot))
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


def find_job(status: RunsStatus, text: str) -> JobStatus:
    """The one job `text` names: a runfile line number, an id prefix, or part of a command.

    A number names the job on that line when there is one; otherwise, and
    for anything else, an id prefix is tried before a command substring.

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
    lowered = text.lower()
    if all(c in "0123456789abcdef" for c in lowered):
        matches = [job for job in status.jobs if job.job_id.startswith(lowered)]
        if matches:
            return _only(matches, f"job id prefix {text!r}", "give more digits of the id")
    matches = [job for job in status.jobs if text in job.command]
    if not matches:
        raise UsageError(f"no job matches {text!r} (not a line with a command, a job id prefix, or part of a command); see batchrun status")
    return _only(matches, repr(text), "give a longer part of the command, the line number or the job id")


def _job_on_line(status: RunsStatus, lineno: int) -> JobStatus | None:
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
    command = job.command if len(job.command) <= 50 else job.command[:47] + "..."
    return f"{job.job_id} ({where}) {command}"


def tail_bytes(path: Path, lines: int) -> bytes:
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


# -- what a launch would do ---------------------------------------------------


@dataclass
class Preview:
    """What a launch of a runfile would do now, and which jobs it concerns."""

    plan: Plan
    mode: str
    total: int
    launch_running: bool
    launch_pid: int | None
    # GROUPS -> jobs, in runfile order (removed ones after).
    groups: dict[str, list[JobStatus]] = field(default_factory=dict)


def preview_launch(runfile: Runfile, runs_dir: RunsDir, mode: str = "resume") -> Preview:
    """Plan a launch of `runfile` exactly as `Launch.prepare` would, touching nothing.

    This is `batchrun plan` and `batchrun launch --dry-run`: the `Plan`
    equals the one the launch would make now (while a launch runs, the one
    the next launch would make if that launch stopped now).

    Raises:
        UsageError: unknown mode.
        MetadataError: the journal or metadata.json is corrupt.
    """
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return _preview(read_status(runs_dir, runfile), mode)


def _preview(status: RunsStatus, mode: str) -> Preview:
    groups: dict[str, list[JobStatus]] = {name: [] for name in GROUPS}
    to_run: list[Job] = []
    adopt: list[Job] = []
    overwrite = mode == "overwrite"
    retry = mode == "retry_failed"
    succeeded = failed = failed_skipped = unfinished = 0
    for job in status.jobs:
        rec = job.record
        if job.unwatched:
            groups["recovered"].append(job)
        if job.removed:
            groups["removed"].append(job)
            if job.state == State.RUNNING:
                adopt.append(Job(job.command, job.job_id, 0))
            continue
        as_job = Job(job.command, job.job_id, job.line or 0)
        if job.state == State.RUNNING:
            groups["running"].append(job)
            adopt.append(as_job)
            continue
        if rec is None or rec.state == State.PENDING:
            groups["new"].append(job)
            runs = True
        elif rec.state == State.SUCCEEDED:
            groups["succeeded"].append(job)
            succeeded += 1
            runs = overwrite
        elif rec.finished:
            groups["failed"].append(job)
            failed += 1
            runs = retry or overwrite
            if not retry:
                failed_skipped += 1
        else:
            groups["interrupted"].append(job)
            unfinished += 1
            runs = True
        if runs:
            to_run.append(as_job)
    # A launch puts adopted jobs of the runfile first, then removed ones.
    adopt.sort(key=lambda job: job.lineno == 0)
    new = len(groups["new"])
    if overwrite:
        # --rerun-all forgets every record first: the launch counts all as new.
        new, succeeded, failed, failed_skipped, unfinished = len(to_run), 0, 0, 0, 0
    removed = sum(1 for job in groups["removed"] if job.record is not None)
    plan = Plan(to_run, adopt, new, succeeded, failed, failed_skipped, unfinished, len(groups["recovered"]), removed)
    total = len(status.runfile.jobs) if status.runfile is not None else 0
    return Preview(plan, mode, total, status.launch_running, status.launch_pid, groups)
