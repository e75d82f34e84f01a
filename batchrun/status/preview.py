"""What a launch would do now (`batchrun plan`, `launch --dry-run`): the launch's own planner over the jobs as they stand.

The records are read as `status` reads them (no lock taken, nothing
written; a job a dead launch left running settled in memory), but the jobs
are never listed one object each: the plan is `make_plan`'s over a `Ledger`
(one byte a job), and each group of jobs is a list of indices that builds a
`JobStatus` only for the jobs shown. A million pending lines plan in the time
of their parse, in a few bytes a line beyond the runfile's own.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from batchrun.launch.options import parse_mode
from batchrun.launch.plan import Group, Plan, classify, make_plan
from batchrun.liveness import LockTable
from batchrun.runfile.file import Job, Runfile
from batchrun.status.compact import entries_beside, id_length
from batchrun.status.view import GROUPS, JobStatus, _job_from_records, _metadata_trusted, _settle_in_flight, read_records
from batchrun.store.ledger import IGNORED_BIT, Ledger
from batchrun.store.records import IGNORED, REMOVED, JobRecord, State
from batchrun.store.recordtable import STATE_CODE, RecordTable
from batchrun.store.rundir import RunsDir

__all__ = ["Preview", "Read", "preview_launch"]

# A runs directory read already: the launch's pid, the runfile, the records, their ledger (`compact.read_jobs`).
Read = tuple[int | None, Runfile, RecordTable, Ledger]


@dataclass
class Preview:
    """What a launch of a runfile would do now, and which jobs it concerns."""

    plan: Plan
    mode: str
    total: int
    launch_running: bool
    launch_pid: int | None
    groups: dict[str, Sequence[JobStatus]] = field(default_factory=dict)  # GROUPS (and IGNORED) -> jobs, in listing order
    counts: dict[str, int] = field(default_factory=dict)  # the jobs by state, as `status` counts them
    # The shortest id prefix that tells every job listed apart.
    id_length: int = 8

    def categories(self) -> dict[str, str]:
        """Every job's id -> the state it is counted under (`records.category_of`), in listing order."""
        return {job.job_id: job.category for jobs in self.groups.values() for job in jobs}


def preview_launch(runfile: Runfile, runs_dir: RunsDir, mode: str = "resume", read: Read | None = None) -> Preview:
    """Plan a launch of `runfile` with the launch's planner, touching nothing (`launch --dry-run`).

    While a launch runs, this is the plan of the next one if it stopped now.
    `read`: the runs directory read already (`compact.read_jobs`, whose runfile `runfile` is).

    Raises:
        UsageError: unknown mode.
        MetadataError: the journal or metadata.json is corrupt.
    """
    parsed = parse_mode(mode)
    locks = LockTable()
    now = time.time()
    if read is None:
        launch_pid, records = read_records(runs_dir, locks)  # as `status.view.read_status` reads them
        ledger = Ledger(runfile.jobs, records)
    else:
        launch_pid, _, records, ledger = read
    launch_running = launch_pid is not None
    entries: dict[str, dict[str, Any]] = {}
    if not records or ledger.removed_ids() or not _metadata_trusted(runs_dir, launch_running):
        entries = entries_beside(runs_dir, runfile, records)  # one entry at a time: only the removed jobs' are kept
    # Only records in state running are settled: a dict of those few.
    running: dict[str, JobRecord] = {rec.job_id: rec for rec in map(records.view, records.running_rows())}
    settled = set() if launch_running else _settle_in_flight(running, runs_dir, locks, now, True)
    adopt_ids = {rec.job_id for rec in map(records.view, records.running_rows())}
    removed_ids = ledger.removed_ids()
    removed = [_job_from_records(job_id, records, entries, True) for job_id in removed_ids]
    plan = make_plan(
        ledger, None, parsed, recovered=len(settled), adopt_ids=adopt_ids, removed_jobs=[Job(job.command, job.job_id, 0) for job in removed]
    )
    keys = ledger.keys()
    groups = _groups(ledger, keys, entries, removed, settled)
    counts = ledger.counts(keys)
    counts[REMOVED] += len(removed)
    return Preview(plan, parsed, len(runfile.jobs), launch_running, launch_pid, groups, counts, id_length(runfile, removed_ids))


def _groups(
    ledger: Ledger, keys: bytes, entries: dict[str, dict[str, Any]], removed: list[JobStatus], settled: set[str]
) -> dict[str, Sequence[JobStatus]]:
    """Each group's jobs: the runfile's by the state of their record (in file order), then the others."""
    listed = _Listed(ledger, entries, settled)
    groups: dict[str, Sequence[JobStatus]] = {}
    for group in GROUPS:
        table = bytearray(256)
        for state in State.ALL:
            if classify(_record_in(state), adopted=state == State.RUNNING) == group:
                table[STATE_CODE[state]] = 1
                # Set aside by `doit ignore`: listed apart, as the plan counts it, unless it runs.
                if state == State.RUNNING:
                    table[STATE_CODE[state] + IGNORED_BIT] = 1
        groups[group] = listed.of(ledger.indices(bytes(table), keys))
    ignored = bytearray(256)
    for state in State.ALL:
        if state != State.RUNNING:
            ignored[STATE_CODE[state] + IGNORED_BIT] = 1
    groups[IGNORED] = listed.of(ledger.indices(bytes(ignored), keys))
    recovered = list(listed.of(array("q", sorted(i for i in map(ledger.jobs.index_of, settled) if i >= 0))))
    groups[Group.RECOVERED] = [*recovered, *(job for job in removed if job.job_id in settled)]
    groups[Group.REMOVED] = removed
    for job in removed:
        job.unwatched = job.job_id in settled
    return groups


def _record_in(state: str) -> JobRecord:
    rec = JobRecord("")
    rec.state = state
    return rec


class _Listed:
    """Builds the `JobStatus` of the runfile's jobs by index, as they are read."""

    def __init__(self, ledger: Ledger, entries: dict[str, dict[str, Any]], settled: set[str]) -> None:
        self.ledger = ledger
        self.entries = entries
        self.settled = settled

    def of(self, indices: array[int]) -> _Group:
        return _Group(self, indices)

    def status(self, i: int) -> JobStatus:
        job = self.ledger.jobs[i]
        listed = JobStatus(job.job_id, job.command, job.lineno, self.ledger.record(i), self.entries.get(job.job_id), False)
        listed.unwatched = job.job_id in self.settled
        return listed


class _Group(Sequence[JobStatus]):
    """The jobs of one group, by their indices in the runfile: a `JobStatus` built per job read."""

    def __init__(self, listed: _Listed, indices: array[int]) -> None:
        self._listed = listed
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, i: int) -> JobStatus: ...

    @overload
    def __getitem__(self, i: slice) -> list[JobStatus]: ...

    def __getitem__(self, i: int | slice) -> JobStatus | list[JobStatus]:
        if isinstance(i, slice):
            return [self._listed.status(k) for k in self._indices[i]]
        return self._listed.status(self._indices[i])

    def __iter__(self) -> Iterator[JobStatus]:
        return map(self._listed.status, self._indices)
