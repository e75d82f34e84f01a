"""A runs directory given by path, read through its runfile beside it (`status runs/x` of a million jobs).

A runs directory alone lists its jobs from metadata.json and the journal
(`view.read_status` without a runfile: every entry held, 2-3 GB at a million).
When the runfile the last launch finished with is still where its runs
directory's name says (`<dir>/runs/<stem>/` beside `<dir>/<stem>.*`, with
the text the fingerprint's digest names, or that text and lines added since)
and metadata.json is the launch's own file (every job of the runfile, in its
order, then the others), that view lists the runfile's jobs in the runfile's
order, with the same lines and commands: the runfile's compact read
(`compact.read_compact`) then gives what the held read gives, a window at a
time. Otherwise None, and the caller holds every job as before. Pure: no
printing.

Jobs of the view that are not the runfile's (records of lines removed since,
entries of lines deleted before they ran, records metadata.json lacks) are
few: they are held (`DirStatus.others`, up to `MAX_OTHERS`), listed as the
view lists them (by their entry's line, not as removed), and merged into the
runfile's windows by line (`DirStatus.windows`, and `DirStatus.jobs_at` for a
sorted read).
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import os
import tempfile
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.runfile.file import runfile_digest
from batchrun.status.compact import WINDOW, CompactStatus, entries_beside, id_length, read_compact, usable_for
from batchrun.status.view import JobStatus, _job_from_records
from batchrun.store.fingerprint import read_fingerprint
from batchrun.store.records import State
from batchrun.store.target import Target

__all__ = ["MAX_OTHERS", "DirStatus", "entry_lines", "read_streamable", "runfile_beside"]

# metadata.json is counted a block at a time: flat memory, whatever its size.
_BLOCK = 1 << 20
# A view's jobs of no line of the runfile are held (a few kB each as `JobStatus`es with their entries): past this many, all are.
MAX_OTHERS = 50_000


@dataclass
class DirStatus(CompactStatus):
    """A runs directory's own view as `CompactStatus`: the runfile's jobs, and `others` (in the view's order) merged in by line."""

    others: list[JobStatus] = field(default_factory=list)
    _placed: array[int] | None = field(default=None, repr=False)  # each other's position in `windows()`, made by `jobs_at`

    def counts(self) -> dict[str, int]:
        counts = self.ledger.counts(self.keys)
        for job in self.others:
            counts[job.category] += 1
        return counts

    def __len__(self) -> int:
        return len(self.runfile.jobs) + len(self.others)

    def select_removed(self, states: Iterable[str] | None) -> list[JobStatus]:
        wanted = set(states or ())
        return [job for job in self.others if not wanted or job.category in wanted]

    def windows(self, indices: array[int] | None = None, removed: list[JobStatus] | None = None, size: int = WINDOW) -> Iterator[list[JobStatus]]:
        """The runfile's jobs at `indices` and `removed` (all `others` when None), in the view's order: each other before the first job of a later line."""
        rest = list(self.others if removed is None else removed)
        at = 0
        for window in super().windows(indices, [], size):
            merged: list[JobStatus] = []
            for job in window:
                line = job.line or 0
                while at < len(rest) and (other := rest[at].line) is not None and other < line:
                    merged.append(rest[at])
                    at += 1
                merged.append(job)
            yield merged
        if at < len(rest):
            yield rest[at:]

    def jobs_at(self, positions: Sequence[int]) -> list[JobStatus]:
        """The jobs at these positions of `windows()`: the others where the merge puts them, the runfile's between."""
        if self._placed is None:
            lines, count = self.runfile.jobs.columns()[2], len(self.runfile.jobs)
            # An other goes before the first runfile job of a later line: after those of its line or before.
            self._placed = array("q", [j + (bisect_right(lines, job.line) if job.line is not None else count) for j, job in enumerate(self.others)])
        placed = self._placed
        at = {k: j for j, k in enumerate(placed)}
        inside = {k: k - bisect_left(placed, k) for k in positions if k not in at}
        runfile_jobs = dict(zip(inside, super().jobs_at(list(inside.values())), strict=True))
        return [self.others[at[k]] if k in at else runfile_jobs[k] for k in positions]

    def running_jobs(self) -> list[JobStatus]:
        running = [job for job in self.others if job.record is not None and job.record.state == State.RUNNING]
        return [job for window in self.windows(self.indices([State.RUNNING]), running) for job in window]

    def id_length(self) -> int:
        return id_length(self.runfile, [job.job_id for job in self.others])


def read_streamable(target: Target, **options: Any) -> CompactStatus | None:
    """`read_compact(target, **options)` of a runfile or gridspec target (`usable_for`), or of a runs directory's
    runfile beside it when that gives the runs directory's own view; None: only the held read does.

    Raises:
        UsageError, InputError, MetadataError: as `read_compact`.
    """
    if usable_for(target):
        return read_compact(target, **options)
    found = runfile_beside(target)
    if found is None:
        return None
    runfile, prefix = found
    if prefix is None:
        status = read_compact(dataclasses.replace(target, runfile=runfile), **options)
    else:
        # Lines were added since the launch: the view is of the runfile's first bytes, read from a copy of them (a few MB).
        with tempfile.TemporaryDirectory(prefix="batchrun-") as where:
            copy = Path(where) / runfile.name
            copy.write_bytes(prefix)
            status = read_compact(dataclasses.replace(target, runfile=copy), **options)
    entries = _launch_entries(status)
    if entries < 0:
        return None
    if not status.removed and entries == len(status.runfile.jobs):
        return status
    if prefix is not None and status.launch_running:
        return None  # a launch of the longer runfile: its jobs past the first bytes would all be others
    return _with_others(status, entries)


def _with_others(status: CompactStatus, entries: int) -> DirStatus | None:
    """The view's jobs no line of the runfile has, as `view.read_status` lists them without a runfile; None when metadata.json
    lacks some of the runfile's jobs (then not the launch's own file)."""
    if entries - len(status.runfile.jobs) > MAX_OTHERS:
        return None
    beside = status.beside if status.beside is not None else entries_beside(status.runs_dir, status.runfile, status.records)
    if entries != len(status.runfile.jobs) + len(beside) or len(status.ledger.removed_ids()) > MAX_OTHERS:
        return None
    records = status.records
    ids = dict.fromkeys([*beside, *status.ledger.removed_ids()])
    others = [_job_from_records(job_id, records, beside, removed=False) for job_id in ids]
    others.sort(key=lambda job: (job.line is None, job.line or 0))
    for job in others:
        job.unwatched = job.job_id in status.settled
    fields = {f.name: getattr(status, f.name) for f in dataclasses.fields(status)}
    return DirStatus(**{**fields, "removed": []}, others=others)


def runfile_beside(target: Target) -> tuple[Path, bytes | None] | None:
    """For a runs directory given by path: the runfile beside it with the text its last launch finished with, and
    None; or one that starts with that text (lines added since), and those first bytes; else None.

    Only the default layout is looked in (`runs/<stem>/` made for `<stem>.*`
    in the directory above `runs/`); a runs directory elsewhere
    (`--accounting_dir`) or without a fingerprint is read as before.
    """
    if target.runfile is not None or target.gridspec is not None:
        return None
    runs = target.runs_dir.path
    fingerprint = read_fingerprint(runs)
    if fingerprint is None or fingerprint.metadata_name != target.runs_dir.metadata_name:
        return None
    try:
        names = sorted(entry.name for entry in os.scandir(runs.parent.parent) if entry.is_file() and Path(entry.name).stem == runs.name)
    except OSError:
        return None
    size = fingerprint.snapshot.runfile_size if fingerprint.snapshot is not None else None
    try:
        # Each entry holds its job's command: a runfile is smaller than its view, and a bigger file beside is not hashed whole.
        bound = os.stat(target.runs_dir.metadata).st_size
    except OSError:
        return None
    for name in names:
        path = runs.parent.parent / name
        try:
            length = os.stat(path).st_size
        except OSError:
            continue
        if length <= bound and runfile_digest(path) == fingerprint.runfile_digest:
            return path, None
        prefix = _prefix(path, size) if size and length > size else None
        if prefix is not None and hashlib.sha256(prefix.removeprefix(codecs.BOM_UTF8)).hexdigest()[:32] == fingerprint.runfile_digest:
            return path, prefix
    return None


def _prefix(path: Path, size: int) -> bytes | None:
    """The file's first `size` bytes (after a byte order mark, as `Runfile.digest` counts them), when longer and they end a line."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(codecs.BOM_UTF8))
            data = head + f.read(size + 1 - (len(head) if head != codecs.BOM_UTF8 else 0))
    except OSError:
        return None
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if len(data) <= start + size or data[start + size - 1 : start + size] != b"\n":
        return None
    return data[: start + size]


def _launch_entries(status: CompactStatus) -> int:
    """How many entries metadata.json holds when it is a launch's own file (the running launch's, or the one the
    fingerprint vouches for); -1 when not.

    A launch writes an entry for every job of its runfile, in the runfile's
    order, then those of jobs no line has any more (records of removed lines,
    and lines deleted before they ran): with as many entries as jobs and no
    removed record, there are no others.
    """
    runs_dir = status.runs_dir
    if not status.launch_running:
        fingerprint = read_fingerprint(runs_dir.path)
        if fingerprint is None or not fingerprint.vouches_for_metadata(runs_dir.path, runs_dir.metadata_name):
            return -1
    return entry_lines(runs_dir.metadata)


def entry_lines(path: Path) -> int:
    """How many entries a metadata.json in batchrun's layout (`{`, a line per entry, `}`) holds; -1 for any other file."""
    lines = 0
    head = tail = b""
    try:
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                if not head:
                    head = block[:2]
                lines += block.count(b"\n")
                tail = (tail + block)[-2:]
    except OSError:
        return -1
    if head != b"{\n" or tail != b"}\n" or lines < 2:
        return -1
    return lines - 2
