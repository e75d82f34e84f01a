"""The state of every job of a runs directory, read without its lock (`lookup` finds one job, `preview` plans).

`batchrun status`, `logs`, `failed` and `plan` (and `launch --dry-run`) read
what launches leave behind without taking the launch's lock and without
writing anything, so they answer while a launch runs. The journal is the
truth about jobs; the runfile (or a gridspec's) gives their order, lines and
which were removed; metadata.json gives the commands of removed jobs and the
original batchrun's records. A job the journal shows running while no launch
holds the runs directory is settled by the launch's own `settle` (job lock,
or squeue for a detached SLURM job, then exit record), but only in memory; plans come from the launch's planner.

Whether a lock is held is read from /proc/locks instead of by trying it:
even a shared probe of `run.lock` could make a launch that starts that job at
that instant fail to take it.

This module never prints; `cli/status` renders what it returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrun.errors import InputError, UsageError
from batchrun.executors import unwatched_alive
from batchrun.launch.plan import Group
from batchrun.launch.settle import Outcome, apply_decisions, settle_in_flight
from batchrun.liveness import LockTable
from batchrun.runfile.file import (
    Runfile,
    load_runfile,
    parse_runfile_text,
)
from batchrun.store.fingerprint import metadata_unchanged
from batchrun.store.journal import JOURNAL_NAME, Journal
from batchrun.store.metadata import legacy_record, load_metadata
from batchrun.store.records import STATES, JobRecord, State, category_of
from batchrun.store.recordtable import RecordTable
from batchrun.store.repair import surviving_records
from batchrun.store.rundir import RunsDir, launch_holder
from batchrun.store.target import Target

__all__ = ["GROUPS", "JobStatus", "RunsStatus", "check_launched", "journal_records", "load_status", "read_status"]

# What a launch would do with each job, in the order `plan` lists them.
GROUPS = tuple(Group)


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
        """The state it is counted, listed and filtered under (`records.category_of`)."""
        return category_of(self.record, self.removed)

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
            counts[category_of(job.record, job.removed)] += 1
        return counts

    def select(self, states: Iterable[str] | None) -> list[JobStatus]:
        """The jobs in any of `states` (all jobs when None), in listing order."""
        if not states:
            return list(self.jobs)
        wanted = set(states)
        return [job for job in self.jobs if job.category in wanted]


def load_status(target: Target, need_launched: bool = True, need_entries: bool = False, ask_cluster: bool = True) -> RunsStatus:
    """Read the state of every job of a target (`ask_cluster`: as `read_status`).

    Raises:
        UsageError: `need_launched` and nothing was ever launched there.
        InputError: the runfile or gridspec cannot be read, or a runs
            directory given by path holds no records.
        MetadataError: the journal or metadata.json is corrupt.
    """
    runs_dir = target.runs_dir
    check_launched(target, need_launched)
    names = None
    runfile = None
    if target.gridspec is not None:
        gridspec = _load_gridspec(target.gridspec)
        names = gridspec.parameter_names()
        if target.runfile is not None and target.runfile.exists():
            runfile = load_runfile(target.runfile)
        elif gridspec.method == "bayes":
            runfile = parse_runfile_text("", target.runfile or target.gridspec)  # its launch appends the points
        else:
            # The runfile was never written (or was deleted): the gridspec's
            # own commands, one per line, are what it would hold.
            runfile = parse_runfile_text("\n".join(gridspec.iter_commands()), target.runfile or target.gridspec)
    elif target.runfile is not None:
        runfile = load_runfile(target.runfile)
    status = read_status(runs_dir, runfile, need_entries, ask_cluster)
    status.parameter_names = names
    return status


def check_launched(target: Target, need_launched: bool) -> None:
    """Raise `load_status`'s errors for a target nothing was launched for (`need_launched`), or a path that is no runs directory."""
    runs_dir = target.runs_dir
    launched = (runs_dir.path / JOURNAL_NAME).exists() or runs_dir.metadata.exists()
    if not launched:
        if target.runfile is None:
            raise InputError(f"not a runs directory (no {JOURNAL_NAME} or {runs_dir.metadata_name} in it)", target.given)
        if need_launched:
            raise UsageError(f"nothing launched yet for {target.given}; run {target.launch_command}")


def _load_gridspec(path: Path) -> Any:
    from batchrun.sweeps import gridspec as sweep  # only for gridspecs: it pulls in YAML and the sweep rules

    return sweep.load_gridspec(path)


def read_status(runs_dir: RunsDir, runfile: Runfile | None, need_entries: bool = False, ask_cluster: bool = True) -> RunsStatus:
    """Read the journal (and, when needed, metadata.json) of a runs directory, without locking it.

    Jobs come in runfile order, then those the journal knows that are no
    longer in the runfile; without a runfile, every job known, in line order.
    metadata.json is parsed only when needed (no runfile, no journal, removed
    jobs, `need_entries`) or when it may not be what a launch wrote: on a
    big run, parsing it costs more than all the rest. `ask_cluster`: settle
    detached SLURM jobs by squeue (`wait` asks it itself, with a grace).

    Raises:
        MetadataError: the journal or metadata.json is corrupt.
    """
    locks = LockTable()
    now = time.time()
    launch_pid, records = read_records(runs_dir, locks)
    launch_running = launch_pid is not None
    removed_ids = runfile.jobs.ids_missing(records) if runfile is not None else []
    if need_entries or runfile is None or not records or removed_ids or not _metadata_trusted(runs_dir, launch_running):
        entries = load_metadata(runs_dir.metadata)
        _import_legacy(records, entries)
        if runfile is not None:
            removed_ids = runfile.jobs.ids_missing(records)
    else:
        entries = {}
    settled = set() if launch_running else _settle_in_flight(records, runs_dir, locks, now, ask_cluster)

    if runfile is not None:
        get_record, get_entry = records.get, entries.get
        jobs = [JobStatus(job.job_id, job.command, job.lineno, get_record(job.job_id), get_entry(job.job_id), False) for job in runfile.jobs]
        # Only jobs that ran count as removed: a line deleted before it ever
        # ran leaves nothing behind but a stale metadata.json entry.
        jobs.extend(_job_from_records(job_id, records, entries, removed=True) for job_id in removed_ids)
    else:
        jobs = [_job_from_records(job_id, records, entries, removed=False) for job_id in dict.fromkeys([*entries, *records])]
        jobs.sort(key=lambda job: (job.line is None, job.line or 0))
    if settled:
        for job in jobs:
            if job.job_id in settled:
                job.unwatched = True
    return RunsStatus(runs_dir, runfile, jobs, launch_running, launch_pid, now)


def _job_from_records(job_id: str, records: Mapping[str, JobRecord], entries: dict[str, dict[str, Any]], removed: bool) -> JobStatus:
    entry = entries.get(job_id)
    command = entry.get("command") if entry is not None else None
    line = entry.get("line") if entry is not None else None
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        line = None
    return JobStatus(job_id, command if isinstance(command, str) else "", line, records.get(job_id), entry, removed)


def _metadata_trusted(runs_dir: RunsDir, launch_running: bool) -> bool:
    """Whether metadata.json is known to be a launch's own atomic write, so it need not be parsed.

    A running launch rewrites it; after a launch, its fingerprint (written
    by `Launch.finish`, see `batchrun.store.fingerprint`) records its size and mtime.
    Anything unexpected means "parse it".
    """
    try:
        os.stat(runs_dir.metadata)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if launch_running:
        return True
    return metadata_unchanged(runs_dir.path, runs_dir.metadata_name)


def read_records(runs_dir: RunsDir, locks: LockTable) -> tuple[int | None, RecordTable]:
    """The pid of the launch running the runs directory (None: none), and the journal's records.

    The launch is looked for before the journal is read: a launch that
    ends in between leaves its jobs' ends in the journal or in their exit
    records, and both are read after. A lost journal gives what survives
    of it, as the next launch will count it.
    """
    launch_pid = launch_holder(runs_dir, locks)
    return launch_pid, journal_records(runs_dir)


def journal_records(runs_dir: RunsDir, records: RecordTable | None = None, start: int = 0, lines: int = 0) -> RecordTable:
    """The journal's records (`Journal.load`: given `records` as of its first `start` bytes, only the rest is
    replayed); a lost journal gives what survives of it, as the next launch will count it."""
    journal = Journal(runs_dir.path)
    journal.load(records, start, lines)
    records = journal.records
    if not records:
        records.update((rec.job_id, rec) for rec in surviving_records(runs_dir))
    return records


def _import_legacy(records: MutableMapping[str, JobRecord], entries: dict[str, dict[str, Any]]) -> None:
    """Entries the original batchrun wrote count as finished, as a launch counts them."""
    for job_id, entry in entries.items():
        if job_id in records or "state" in entry:
            continue
        rec = legacy_record(job_id, entry)
        if rec is not None:
            records[job_id] = rec


def _settle_in_flight(records: Mapping[str, JobRecord], runs_dir: RunsDir, locks: LockTable, now: float, ask_cluster: bool) -> set[str]:
    """Settle in memory the jobs a dead launch left `running`, as the next launch will.

    Returns the ids of those that ended meanwhile (the launch "recovers" them).
    """

    # Each job's executor answers for it (a local job by its lock, detached
    # SLURM jobs by one squeue call, when asked); one it cannot tell about
    # (no answer, not asked, a Dask job without its scheduler) stays running.
    running = {rec.job_id: (rec.ref, runs_dir.log_dir(rec.job_id)) for rec in records.values() if rec.state == State.RUNNING}
    alive = unwatched_alive(running, locks, ask_cluster) if running else {}

    def still_running(rec: JobRecord, log_dir: Path) -> bool:
        return alive.get(rec.job_id) is not False

    decisions = settle_in_flight(records, runs_dir.log_dir, still_running, now)
    apply_decisions(records, decisions)
    return {d.job_id for d in decisions if d.outcome == Outcome.COLLECTED}


# -- single jobs -------------------------------------------------------------


# -- what a launch would do ---------------------------------------------------






