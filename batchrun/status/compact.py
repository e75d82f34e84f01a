"""The state of every job of a runfile kept compactly, for the read commands to stream (`status`, `failed`).

`view.read_status` builds a `JobStatus` per job: at a million lines that is
a gigabyte and minutes. `read_compact` reads the same things the same way
(the launch looked for before the journal, a lost journal's survivors,
metadata.json only when needed, jobs a dead launch left running settled in
memory), but keeps the runfile's `JobTable`, the journal's `RecordTable` and
each job's state byte (`store.ledger`): counts come from C-level passes, and
`JobStatus`es are built a window at a time (`CompactStatus.windows`), each
exactly as `read_status` builds it.

Only a runfile target, or a gridspec whose runfile was written (not a runs
directory alone, whose jobs are metadata.json's), is read this way;
`usable_for` says so. Pure: no printing.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.liveness import LockTable
from batchrun.runfile.file import Runfile, load_runfile
from batchrun.runfile.idindex import digest_of, short_prefix
from batchrun.status.entries import EntryIndex
from batchrun.status.view import JobStatus, _import_legacy, _job_from_records, _metadata_trusted, _settle_in_flight, check_launched, journal_records
from batchrun.store.ledger import IGNORED_BIT, Ledger, key_table
from batchrun.store.metascan import EntryScan
from batchrun.store.records import REMOVED, State, category_of_state
from batchrun.store.recordtable import STATE_CODE, RecordTable
from batchrun.store.resume import read_resume
from batchrun.store.rundir import RunsDir, launch_holder
from batchrun.store.target import Target

__all__ = ["WINDOW", "CompactStatus", "entries_beside", "gridspec_names", "id_length", "read_compact", "read_jobs", "usable_for"]

# Jobs made into `JobStatus`es at a time: a window's objects are a few MB, while the passes over a million jobs stay as quick.
WINDOW = 2048
# Every (state, ignored) pair a record can have, and the category it is counted under.
_PAIRS = [(state, ignored, category_of_state(state, ignored)) for state in State.ALL for ignored in (False, True)]


def usable_for(target: Target) -> bool:
    """Whether `read_compact` reads this target: a runfile, or a gridspec whose runfile is there (else its jobs are the gridspec's own)."""
    return target.runfile is not None and (target.gridspec is None or target.runfile.exists())


def gridspec_names(target: Target) -> list[str] | None:
    """A gridspec target's parameter names (None for a runfile), read first as `view.load_status` reads it: a broken gridspec is an error even beside its runfile.

    Raises:
        GridspecError: the gridspec cannot be read.
    """
    if target.gridspec is None:
        return None
    from batchrun.sweeps.gridspec import load_gridspec  # only for gridspecs: it pulls in YAML and the sweep rules

    return load_gridspec(target.gridspec).parameter_names()


@dataclass
class CompactStatus:
    """Every job of a runfile and its runs directory, as of `now`, held by column."""

    runs_dir: RunsDir
    runfile: Runfile
    records: RecordTable
    ledger: Ledger
    # One byte a job of the runfile: its state code, plus the ignored bit (`ledger.Ledger.keys`).
    keys: bytes
    # The jobs of records no line of the runfile has any more, as `read_status` lists them (last).
    removed: list[JobStatus]
    launch_running: bool
    launch_pid: int | None
    now: float
    settled: set[str] = field(default_factory=set)
    parameter_names: list[str] | None = None
    # Each runfile job's metadata.json entry, read again a window at a time (`read_compact(entries=True)`).
    entries: EntryIndex | None = None
    # metadata.json's entries of jobs no line of the runfile has, when it was read (None: it was not).
    beside: dict[str, dict[str, Any]] | None = None

    def counts(self) -> dict[str, int]:
        """How many jobs are in each of `STATES` (`RunsStatus.counts`)."""
        counts = self.ledger.counts(self.keys)
        counts[REMOVED] += len(self.removed)
        return counts

    def __len__(self) -> int:
        return len(self.runfile.jobs) + len(self.removed)

    def indices(self, states: Iterable[str] | None) -> array[int] | None:
        """The indices of the runfile's jobs counted under any of `states`; None for all of them."""
        if not states:
            return None
        wanted = set(states)
        return self.ledger.indices(key_table((state, ignored) for state, ignored, category in _PAIRS if category in wanted), self.keys)

    def select_removed(self, states: Iterable[str] | None) -> list[JobStatus]:
        return list(self.removed) if not states or REMOVED in set(states) else []

    def windows(self, indices: array[int] | None = None, removed: list[JobStatus] | None = None, size: int = WINDOW) -> Iterator[list[JobStatus]]:
        """The jobs at `indices` (all when None), then `removed` (all removed jobs when None), as `JobStatus`es, a window at a time."""
        table = self.runfile.jobs
        total = len(table) if indices is None else len(indices)
        settled, ledger = self.settled, self.ledger
        entry = self.entries.get if self.entries is not None else lambda i, job_id: None
        for first in range(0, total, size):
            chosen = range(first, min(total, first + size)) if indices is None else indices[first : first + size]
            window = []
            for i, job, rec in zip(chosen, table.jobs_at(chosen), ledger.records_at(chosen), strict=True):
                job_id = job.job_id
                status = JobStatus(job_id, job.command, job.lineno, rec, entry(i, job_id), False)
                if settled and job_id in settled:
                    status.unwatched = True
                window.append(status)
            yield window
        rest = self.removed if removed is None else removed
        if rest:
            yield list(rest)

    def jobs_at(self, positions: Sequence[int]) -> list[JobStatus]:
        """The jobs at these positions of `windows()` (the runfile's jobs, then the removed ones), in that order (a window's worth)."""
        count = len(self.runfile.jobs)
        inside = array("q", sorted({k for k in positions if k < count}))
        found: dict[int, JobStatus] = {}
        first = 0
        for window in self.windows(inside, []):
            found.update(zip(inside[first : first + len(window)], window, strict=True))
            first += len(window)
        return [found[k] if k < count else self.removed[k - count] for k in positions]

    def running_count(self) -> int:
        """How many of the runfile's jobs are running now."""
        running = STATE_CODE[State.RUNNING]
        return self.keys.count(running) + self.keys.count(running + IGNORED_BIT)

    def running_jobs(self) -> list[JobStatus]:
        """The runfile's jobs running now (few: one per slot)."""
        found = self.indices([State.RUNNING])
        return [job for window in self.windows(found, []) for job in window]

    def id_length(self) -> int:
        """`lookup.short_id_length` of every job: the shortest prefix, from 8 digits up, that tells them apart."""
        return id_length(self.runfile, [job.job_id for job in self.removed])


def id_length(runfile: Runfile, removed_ids: list[str]) -> int:
    """The shortest id prefix, from 8 digits up, that tells the runfile's jobs and the removed ones apart (`lookup.short_id_length`)."""
    keys = runfile.jobs.keys
    if not removed_ids:
        return short_prefix(keys)
    both = keys.take(range(len(keys)))
    for job_id in removed_ids:
        both.append(job_id)
    return short_prefix(both)


def read_compact(target: Target, ask_cluster: bool = True, *, usage: bool = True, entries: bool = False, indexes: bool = True) -> CompactStatus:
    """`view.load_status` of a runfile or gridspec target (`usable_for`), held compactly; `usage=False`: without what each run used (None);
    `entries`: with each job's metadata.json entry (`load_status(need_entries=True)`), found now and read a window at a time;
    `indexes=False`: without the ids' sorted indexes, for a read that looks up few jobs by id (`store.resume.read_resume`).

    Raises:
        UsageError, InputError, MetadataError: as `load_status`.
    """
    runs_dir = target.runs_dir
    check_launched(target, need_launched=True)
    names = gridspec_names(target)
    assert target.runfile is not None
    locks = LockTable()
    now = time.time()
    launch_pid, runfile, records, ledger = read_jobs(runs_dir, target.runfile, locks, usage=usage, indexes=indexes)
    launch_running = launch_pid is not None
    removed_ids = ledger.removed_ids()
    kept: dict[str, dict[str, Any]] | None = None
    table = runfile.jobs
    index = EntryIndex(runs_dir.metadata, len(table), table.keys.text, table.index_of) if entries else None
    if entries or not len(records) or removed_ids or not _metadata_trusted(runs_dir, launch_running):
        kept = entries_beside(runs_dir, runfile, records, index)
        removed_ids = ledger.removed_ids()
    if index is not None:
        index.finish()
    settled: set[str] = set()
    if not launch_running and records.running_rows():
        settled = _settle_in_flight(records, runs_dir, locks, now, ask_cluster)
    removed = [_job_from_records(job_id, records, kept or {}, removed=True) for job_id in removed_ids]
    for job in removed:
        job.unwatched = job.job_id in settled
    return CompactStatus(runs_dir, runfile, records, ledger, ledger.keys(), removed, launch_running, launch_pid, now, settled, names, index, kept)


def read_jobs(runs_dir: RunsDir, runfile_path: Path, locks: LockTable, *, usage: bool = True, indexes: bool = True) -> tuple[int | None, Runfile, RecordTable, Ledger]:
    """The pid of the launch running the runs directory (None: none), the runfile, the journal's records, and the ledger of the two.

    The launch is looked for before the journal is read (`view.read_records`).
    The runfile's table and the records come from the fingerprint's snapshot
    when it still holds (`store.resume`, as a relaunch reads them: no parse,
    no replay but of the journal's lines since), else from a full read.

    Raises:
        RunfileError: the runfile cannot be read.
        MetadataError: the journal is corrupt.
    """
    launch_pid = launch_holder(runs_dir, locks)
    resume = read_resume(runs_dir, runfile_path, light=True, usage=usage, indexes=indexes)
    if resume is not None:
        records = journal_records(runs_dir, resume.records, resume.journal_size, resume.journal_lines)
        return launch_pid, resume.runfile, records, Ledger(resume.runfile.jobs, records, resume.rows)
    runfile = load_runfile(runfile_path)
    records = journal_records(runs_dir, RecordTable.following(runfile.jobs))
    return launch_pid, runfile, records, Ledger(runfile.jobs, records)


def entries_beside(runs_dir: RunsDir, runfile: Runfile, records: RecordTable, index: EntryIndex | None = None) -> dict[str, dict[str, Any]]:
    """metadata.json read one entry at a time: the original batchrun's entries become records
    (`view._import_legacy`), and only the entries of jobs not in the runfile are kept; `index` notes where the others are."""
    kept: dict[str, dict[str, Any]] = {}
    legacy: dict[str, dict[str, Any]] = {}
    scan = EntryScan(runs_dir.metadata, ran=True)
    found = _rows_beside(scan, runfile) if index is None else index.scan()
    for job_id, entry, row in found:
        if entry is None:  # batchrun's entry, not decoded (`metascan`): its job's record is the journal's; wanted only for a job not in the runfile
            if row >= 0:
                continue
            entry = scan.entry()
        if "state" not in entry and job_id not in records:  # in this order: batchrun's entries need no look-up
            legacy[job_id] = entry
        if row < 0:
            kept[job_id] = entry
        if len(legacy) >= 4096:
            _import_legacy(records, legacy)
            legacy.clear()
    _import_legacy(records, legacy)
    return kept


def _rows_beside(scan: EntryScan, runfile: Runfile) -> Iterator[tuple[str, dict[str, Any] | None, int]]:
    """Each entry with its job's index in the runfile (-1: none); the entries of a launch's file are in runfile order, so the next index is tried first."""
    keys = runfile.jobs.keys
    index_of, digests, n = runfile.jobs.index_of, keys.digests, len(keys)
    plain = not keys.has_odd()
    row = -1
    for job_id, entry in scan:
        row += 1
        # A never-run entry's id is 16 lower-case hex digits already (`metascan`).
        if not (plain and row < n and digests[row] == (int(job_id, 16) if entry is None else digest_of(job_id))):
            row = index_of(job_id)
        yield job_id, entry, row
        if row < 0:
            row = n  # no guess until an entry of the runfile's is met again

