"""Keeping metadata.json, the view of the journal the original tool's users read, up to date.

The journal is the truth; metadata.json is rebuilt from it when a launch
starts (only when something changed since the last launch wrote it, which
its fingerprint tells, so a no-op resume stays cheap) and rewritten about once a
second while jobs end, by a thread of its own. The first build streams the
file (never every entry in memory); a build after a small change keeps the
old file's lines of the jobs the journal did not touch since
(`batchrun.store.viewcache`), and a relaunch whose runfile only grew keeps
the old file itself and adds what changed (`keep_file`). Every rewrite after
copies the unchanged lines from the file as it was (`viewfile`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from batchrun.errors import MetadataError
from batchrun.runfile.file import Job, Runfile
from batchrun.store.fingerprint import read_fingerprint
from batchrun.store.journal import Journal
from batchrun.store.metadata import MetadataView, build_entry, legacy_record, render_entry, render_pending
from batchrun.store.recent import RecentRows
from batchrun.store.records import JobRecord
from batchrun.store.repair import iter_metadata_repairing
from batchrun.store.resume import OldView, streams_view
from batchrun.store.rundir import RunsDir
from batchrun.store.viewcache import KeptLines, journal_ids_since, lines_in_order, log_dir_json, names_log_dir, read_old_view

__all__ = ["MetadataSync"]

# How often metadata.json is brought up to date while jobs finish.
_METADATA_INTERVAL = 1.0
# The wait between flushes is at least this many times the last flush's duration.
_FLUSH_SHARE = 5.0


class MetadataSync:
    """The metadata.json of one launch: its first build, its changes, its flushes."""

    def __init__(self, runs_dir: RunsDir, runfile: Runfile, journal: Journal, lock: threading.RLock, on_error: Callable[[MetadataError], None]) -> None:
        self.runs_dir = runs_dir
        self.runfile = runfile
        self.journal = journal
        self.view = MetadataView(runs_dir.metadata, self._render)
        self.lock = lock  # the launch's lock over the journal and the records
        self.on_error = on_error
        self.logs = str(runs_dir.logs)
        self.old_entries: dict[str, dict[str, Any]] = {}
        # The old file's rendered lines, when they may be kept (see `_read_kept`),
        # and the journal mark they reflect.
        self._kept: KeptLines | None = None
        self._mark: tuple[int, str] | None = None
        # One line per repair of a damaged runs directory, for the CLI to print.
        self.notices: list[str] = []
        # How many first entries `resume_view` kept; whether an entry without a state was written.
        self._resumed: int | None = None
        self.stateless = False
        # Jobs whose entry is marked that are not in the runfile (adopted from a line since removed).
        self._outside: dict[str, Job] = {}
        # Jobs found in the runfile lately, at which index (each is asked after at its start, pid and end).
        self._known = RecentRows()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _in_runfile(self, job_id: str) -> bool:
        jobs = self.runfile.jobs
        # A remembered index holds the job still unless the runfile lost lines since: asked, not trusted.
        row = self._known.get(job_id)
        if 0 <= row < len(jobs) and jobs.keys.text(row) == job_id:
            return True
        row = jobs.index_of(job_id)
        if row >= 0:
            self._known.note(job_id, row)
        return row >= 0

    def unchanged(self) -> bool:
        """Whether metadata.json, the journal's size and the runfile are those the last launch's fingerprint names."""
        fingerprint = read_fingerprint(self.runs_dir.path)
        return fingerprint is not None and fingerprint.matches(self.runs_dir.path, self.journal.path, self.runs_dir.metadata_name, self.runfile.digest)

    # -- the first build -----------------------------------------------------

    def read_old(self) -> None:
        """Keep what the old metadata.json has that the journal may not.

        That is the entries of jobs no longer in the runfile (kept, never
        deleted) and entries the original batchrun wrote (no `state`), which
        are imported; entries of current jobs are rebuilt from the journal.
        """
        self.old_entries = {}
        self._drop_kept()
        if _read_kept(self):
            return
        # batchrun's entries of the runfile's jobs are not even decoded: each has a state, and the journal's record.
        for job_id, entry in iter_metadata_repairing(self.runs_dir, self.notices, wanted=lambda job_id: not self._in_runfile(job_id)):
            if "state" not in entry or not self._in_runfile(job_id):
                self.old_entries[job_id] = entry

    def resume_view(self, old: OldView, kept: int) -> bool:
        """Take metadata.json as the last launch left it (the snapshot's `old` layout): the relaunch renders only what changed.

        Its first entries, up to the first that is not the runfile's job at
        that index (at most `kept`: those at the same line), stay as they are;
        the entries after are read as `read_old` reads them (those of jobs
        no longer in the runfile are kept, to be rendered after the runfile's).
        False when a line cannot be read: then `read_old` and `build` as ever.
        """
        self.old_entries = {}
        self._drop_kept()
        keys, jobs = old.keys, self.runfile.jobs
        same = _common_prefix(keys.digests, jobs.keys.digests, min(kept, len(keys), len(jobs)))
        try:
            with open(self.runs_dir.metadata, "rb") as f:
                for pos in range(same, len(keys)):
                    job_id = keys.text(pos)
                    if not old.lens[pos] or jobs.has_id(job_id):
                        continue
                    f.seek(old.starts[pos])
                    entry = json.loads(f.read(old.lens[pos])[22:])
                    if not isinstance(entry, dict) or "state" not in entry:
                        return False
                    self.old_entries[job_id] = entry
        except (OSError, RecursionError, ValueError):
            self.old_entries = {}
            return False
        self.view.file.adopt(keys, old.starts, old.lens)
        self.view.file.share_keys(self.runfile.jobs.keys, not self.runfile.jobs.ids_repeat())  # its entries are the jobs': new ones added without a copy
        self._resumed = same
        return True

    def finish_resumed_view(self, touched: set[str]) -> None:
        """After `resume_view`: render the kept entries of jobs the journal named since, then everything after them.

        The result is the file `build` writes, byte for byte (the entries
        after the kept ones are dropped and added again in `build`'s order);
        past `resume.HELD_RENDERS` of them (an early edit moves every later line),
        `build` itself writes it, streaming, rather than hold them rendered.
        """
        assert self._resumed is not None
        same, view, jobs = self._resumed, self.view, self.runfile.jobs
        self._resumed = None
        if streams_view(len(jobs), same):
            view.file.forget()  # the old layout: `build` needs none of it (28 MB at a million entries)
            self.build(touched)
            return
        for job_id in touched:
            i = jobs.index_of(job_id)
            if 0 <= i < same:
                view.set(job_id, self._entry(jobs[i]))
        keys = view.file.keys
        for job_id in list(keys.texts(same)):
            view.remove(job_id)
        for job in jobs.jobs_at(range(same, len(jobs))):
            view.set(job.job_id, self._entry(job))
        for job_id, line in _extras(self):
            view.set_rendered(job_id, line)
        self.old_entries = {}

    def import_legacy(self) -> None:
        """Entries the original batchrun wrote count as finished: journal them."""
        records = self.journal.records
        for job_id, entry in self.old_entries.items():
            if job_id in records or "state" in entry:
                continue
            rec = legacy_record(job_id, entry)
            if rec is not None and rec.status is not None and rec.start is not None and rec.end is not None:
                self.journal.record_end(job_id, rec.attempts, rec.status, rec.start, rec.end)

    def removed_jobs(self) -> list[Job]:
        """Jobs no longer in the runfile, with the commands the old metadata.json gives them."""
        return [Job(str(entry.get("command", "")), job_id, 0) for job_id, entry in self.old_entries.items() if not self._in_runfile(job_id)]

    def build(self, stale: set[str] | None = None) -> None:
        """Write every entry from the journal (and what only the old file knew), streaming (`stale`: see `_entries`)."""
        jobs = self.runfile.jobs
        try:
            unique = not jobs.ids_repeat()
            if stale is None and not self.old_entries and unique:
                # The runfile's jobs in order and nothing after them: their ids are the job table's.
                self.view.rebuild(_entries(self, stale), jobs.keys)
                return
            self.view.rebuild(_entries(self, stale))
            # A first build writes the runfile's jobs in order: their ids are the job table's, held once.
            self.view.file.share_keys(jobs.keys, unique)
        finally:
            # Written now; the parsed file would only hold memory from here on.
            self.old_entries = {}
            self._drop_kept()

    def _drop_kept(self) -> None:
        if self._kept is not None:
            self._kept.close()
        self._kept = self._mark = None

    # -- while jobs run ------------------------------------------------------

    def update(self, job: Job, rec: JobRecord) -> None:
        """Note that a job's entry changed; it is rendered when the next write reaches it.

        Rendering lazily, once per write, turns a job's start, pid and end
        (often within one second) into one JSON encoding instead of three,
        off the worker threads' path; and what waits for a rewrite is a mark,
        not a rendered line (`ViewFile.mark`). Called under the launch's lock.
        """
        if not self._in_runfile(job.job_id):
            self._outside[job.job_id] = job
        self.view.mark(job.job_id)

    def forget(self, job_id: str) -> None:
        """A pending job left the followed runfile: no entry for it. Called under the launch's lock."""
        self._outside.pop(job_id, None)
        self.view.remove(job_id)

    def _render(self, job_ids: list[str]) -> list[bytes]:
        """The marked entries' lines, from the records now (b"": a job no longer known, whose entry was removed).

        Built under the launch's lock, but encoded (most of the cost)
        outside it: the worker threads wait on that lock.
        """
        jobs = self.runfile.jobs
        with self.lock:
            entries = []
            for job_id in job_ids:
                row = jobs.index_of(job_id)
                job = jobs[row] if row >= 0 else self._outside.get(job_id)
                entries.append(None if job is None else self._entry(job))
        return [b"" if entry is None else render_entry(job_id, entry) for job_id, entry in zip(job_ids, entries, strict=True)]

    def _entry(self, job: Job) -> dict[str, Any]:
        """A job's entry from its record now. Called under the launch's lock."""
        return build_entry(job, self.journal.records.get(job.job_id), f"{self.logs}/{job.job_id}")

    def start(self) -> None:
        """Start keeping metadata.json up to date while jobs run."""
        if self._thread is None:
            self._done.clear()
            self._thread = threading.Thread(target=self._loop, name="batchrun-metadata", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._done.set()
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        # A big file waits longer between rewrites: each costs at most about a
        # fifth of the time (a million entries are ~400 MB to write, over a second).
        interval = _METADATA_INTERVAL
        while not self._done.wait(interval):
            began = time.monotonic()
            self.flush()
            interval = max(_METADATA_INTERVAL, _FLUSH_SHARE * (time.monotonic() - began))

    def flush(self) -> None:
        """Write metadata.json if anything changed: the snapshot under the launch's lock, the write (and its rendering) outside it."""
        with self.lock:
            if not self.view.dirty:
                return
            parts = self.view.snapshot()
            self.view.dirty = False  # a mark from now on is the next write's
        try:
            self.view.write(parts)
        except MetadataError as err:
            self.view.dirty = True  # what it held stays in the view: the next write tries again
            self.on_error(err)

    def write_final(self) -> MetadataError | None:
        """The last write, as the launch ends; the error, if it failed."""
        if self.view.dirty or (len(self.view) and not self.view.path.exists()):
            try:
                self.view.write()
            except MetadataError as err:
                return err
        return None


def _read_kept(sync: MetadataSync) -> bool:
    """Read the old file as rendered lines, decoding only what `read_old` keeps.

    Only when metadata.json is the file the last launch finished with
    (its fingerprint names it) and the journal still starts as it did
    then (the fingerprint's mark): each line is then its job's record at
    the mark. False when any of it does not hold; nothing is read then.
    """
    if sync.notices:
        return False  # a repair changed the runs directory: rebuild whole
    fingerprint = read_fingerprint(sync.runs_dir.path)
    if fingerprint is None or not fingerprint.vouches_for_metadata(sync.runs_dir.path, sync.runs_dir.metadata_name):
        return False
    mark = (fingerprint.journal_size, fingerprint.journal_tail)
    if journal_ids_since(sync.journal.path, mark) is None:
        return False
    lines = read_old_view(sync.runs_dir.metadata)
    if lines is None:
        return False
    in_runfile = sync._in_runfile
    old: dict[str, dict[str, Any]] = {}
    keys = lines.keys
    for pos in range(len(lines)):
        line = lines.line(pos)
        job_id = keys.text(pos)
        # An entry batchrun rendered has its state right after the
        # parameters; a JSON string cannot hold that unescaped.
        if b'}, "state": "' in line and in_runfile(job_id):
            continue
        try:
            entry = json.loads(line[22:])
        except (RecursionError, ValueError):
            lines.close()
            return False
        if not isinstance(entry, dict):
            lines.close()
            return False
        if "state" not in entry or not in_runfile(job_id):
            old[job_id] = entry
    sync.old_entries = old
    sync._kept, sync._mark = lines, mark
    return True


def _entries(sync: MetadataSync, stale: set[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """Every entry `MetadataSync.build` writes: a kept line where it still holds, else rendered from the journal.
    `stale`: after `resume_view` (the old file unread), the jobs the journal named since: old lines taken in order (`lines_in_order`)."""
    records, old, logs, kept = sync.journal.records, sync.old_entries, sync.logs, sync._kept

    def render(job: Job) -> bytes:
        job_id = job.job_id
        # No record (asked only of a table that holds any: a fresh launch's is
        # empty) and no old entry: a pending job's line, from its template.
        rec = records.get(job_id) if len(records) else None
        entry = old.get(job_id)
        if rec is None and entry is None:
            return render_pending(job, f"{logs}/{job_id}")
        return render_entry(job_id, build_entry(job, rec, f"{logs}/{job_id}", entry))

    if stale is not None:
        yield from lines_in_order(sync.runs_dir.metadata, sync.runfile.jobs, old, stale, logs, render)
        yield from _extras(sync)
        return
    # Jobs the journal named since the old file was written: their lines are stale.
    touched = journal_ids_since(sync.journal.path, sync._mark) if sync._mark is not None else None
    if touched is None:
        kept, touched = None, set()
    logs_json = log_dir_json(logs)
    for job in sync.runfile.jobs:
        job_id = job.job_id
        pos = kept.keys.row_of(job_id) if kept is not None and job_id not in touched and job_id not in old else -1
        if pos >= 0:
            assert kept is not None
            line = kept.line(pos)
            if names_log_dir(line, logs_json, job_id) and b', "line": %d, "attempts": ' % job.lineno in line:
                yield job_id, line
                continue
        yield job_id, render(job)
    yield from _extras(sync)


def _extras(sync: MetadataSync) -> Iterator[tuple[str, bytes]]:
    """The entries of jobs no longer in the runfile, after the runfile's: from their records, else as the old file had them."""
    records, logs = sync.journal.records, sync.logs
    for job_id, entry in sync.old_entries.items():
        if not sync._in_runfile(job_id):
            rec = records.get(job_id)
            if rec is not None and "command" in entry:
                job = Job(str(entry["command"]), job_id, entry.get("line") or 0)
                entry = build_entry(job, rec, f"{logs}/{job_id}", entry)
            elif "state" not in entry:
                sync.stateless = True  # an entry of the original batchrun, kept as it was
            yield job_id, render_entry(job_id, entry)


# Ids compared at a time by `_common_prefix`.
_SAME_BLOCK = 1 << 16


def _common_prefix(a: Any, b: Any, limit: int) -> int:
    """How many first items of two arrays are equal, up to `limit` (compared in C a block at a time, then halving)."""
    low = 0
    while low < limit and a[low : min(low + _SAME_BLOCK, limit)] == b[low : min(low + _SAME_BLOCK, limit)]:
        low = min(low + _SAME_BLOCK, limit)  # whole slices of a million ids would be 16 MB at once
    high = min(low + _SAME_BLOCK, limit)
    while low < high:  # a[:low] == b[:low], a[:high] != b[:high]
        mid = (low + high + 1) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid - 1
    return low
