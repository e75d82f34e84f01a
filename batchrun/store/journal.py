"""The durable record of every job of a runs directory: an append-only journal.

doit's own dependency backends keep every change in memory and write it when the
whole run ends, so a kill -9 half-way through a launch would forget every finished
job. batchrun records each step of each job the moment it happens, as a line
appended with one `os.write` on an `O_APPEND` descriptor (an attempt's U and E
lines in one write): once `write` returns it is in the kernel and survives the
death of batchrun (a thread `fdatasync`s about once a second, bounding what a power
loss can take). The journal is also doit's dependency database for job tasks
(`_doit.backend`); doit's `forget` and `ignore` append `R` and `X` lines.

Line format (space separated; a torn last line from a kill is ignored):

    S <job_id> <attempt> <start> <slot> <host> [<holds>] [code=<code>]   about to start, holding <holds> (`gpu=0,1;cpus=8;mem=64G`), under that code version
    P <job_id> <attempt> <ref> 0                      started: the executor's reference (pid, ...)
    U <job_id> <attempt> <max_rss_kb> <user_cpu_s> <sys_cpu_s> [<max_gpu_mem_mb>]   what the attempt used (before its E or I line)
    E <job_id> <attempt> <status> <start> <end> [<state> [<host> [<code>]]]   ended (finished)
    I <job_id> <attempt> <start> <end> <state> [<code>]   stopped unfinished (interrupted, requeued, ...)
    R <job_id>                                        forgotten (doit forget, --rerun-all): run again
    X <job_id>                                        ignored (doit ignore): skipped until forgotten

Blank lines are skipped. Older journals load as they always did: a reader only ever learns new kinds.

This module knows nothing of doit, processes or metadata.json.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from batchrun.atomic import write_atomic
from batchrun.errors import MetadataError
from batchrun.executors.appendlock import append_locked, guard
from batchrun.store.compaction import blocks, compacted_lines, compaction_due
from batchrun.store.records import JobRecord, State, canonical_time, known_state, start_extras, start_fields
from batchrun.store.recordtable import KEEP, RecordTable

__all__ = ["JOURNAL_NAME", "Journal", "compaction_due", "excluding_writers", "replay"]

JOURNAL_NAME = "jobs.journal"

# Space kept free next to the journal (about 1,000 records) for the ends of
# jobs that are running when the disk fills, so that no finished job is lost.
_RESERVE_NAME = ".journal.reserve"
_RESERVE_BYTES = 64 * 1024

# How much of the journal is read (and held) at a time when it is loaded.
_READ_BLOCK = 2 << 20

# How often the group-commit thread flushes the journal to stable storage.
_SYNC_INTERVAL = 1.0


class Journal:
    """The append-only journal of one runs directory, replayed into records."""

    @property
    def disk_full(self) -> bool:
        """True once the disk filled and the reserve was given up to the journal."""
        return self._reserve.released

    def __init__(self, runs_dir: Path) -> None:
        self.path = runs_dir / JOURNAL_NAME
        # Every job's record, compactly (`recordtable`): a mapping of job id to record.
        self.records = RecordTable()
        self._fd: int | None = None
        self._valid_size: int | None = None  # bytes up to the last whole line, once loaded
        self._reserve = _Reserve(self.path.with_name(_RESERVE_NAME))
        self._lock = threading.Lock()
        self._dirty = False
        self._lines = 0
        # Bytes of whole lines in the file as far as this journal knows (loaded or rewritten, plus
        # appended): a larger file means another writer appended lines these records do not hold.
        self.size = 0
        self._held = ""  # a U line `record_usage(hold=True)` left for the next line's write
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None

    # -- reading -----------------------------------------------------------

    def load(self, records: RecordTable | None = None, start: int = 0, lines: int = 0) -> None:
        """Replay the journal file into `records`.

        Given `records` as of the journal's first `start` bytes (`lines` lines),
        only the bytes after those are replayed: a relaunch from the fingerprint's
        snapshot (`store.fingerprint`), whose reader checked the journal still starts with them.

        Raises:
            MetadataError: a line in the middle of the file is not a journal
                line (a torn last line is expected after a kill and skipped).
        """
        if records is not None:
            self.records = records
        try:
            with open(self.path, "rb") as f:
                if start:
                    f.seek(start)
                done, lines = self._replay_blocks(f, start, lines)
        except FileNotFoundError:
            return
        except OSError as err:
            raise MetadataError(f"{self.path}: cannot read the job journal: {err.strerror}") from err
        # After the last newline: a torn line (a kill in mid-write), ignored now and cut off by `open`.
        self._valid_size = self.size = done
        self._lines = lines

    def _replay_blocks(self, f: BinaryIO, offset: int, lines: int) -> tuple[int, int]:
        """Replay the whole lines from `offset` on, a block at a time (a million jobs' journal is hundreds of MB): (offset after them, lines in all)."""
        rest = b""
        while block := f.read(_READ_BLOCK):
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if not cut:
                continue
            try:
                # One decode a block, not one per line: replaying is most of a no-op relaunch.
                text: list[str] | list[bytes] = data[:cut].decode("ascii").split("\n")
            except UnicodeDecodeError:
                text = data[:cut].split(b"\n")  # replayed line by line, to name the bad one
            text.pop()
            replay(self.records, text, self.path, first_line=lines + 1)
            lines += len(text)
            offset += cut
        return offset, lines

    # -- writing -----------------------------------------------------------

    def open(self) -> None:
        """Open the journal for appending and start the group-commit thread."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            size = os.fstat(self._fd).st_size
            if self._valid_size is not None and size > self._valid_size:
                os.ftruncate(self._fd, self._valid_size)
            elif self._valid_size is None:
                self.size = size
        except OSError as err:
            raise MetadataError(f"{self.path}: cannot write the job journal: {err.strerror}") from err
        self._reserve.make()
        self._syncer = threading.Thread(target=self._sync_loop, name="batchrun-journal-sync", daemon=True)
        self._syncer.start()

    def _append(self, line: str, count: int = 1) -> None:
        fd = self._fd
        if fd is None:
            raise MetadataError(f"{self.path}: journal is not open")
        data = (self._held + line).encode("ascii")
        count += bool(self._held)
        self._held = ""
        try:
            self._write(fd, data)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._reserve.release():
                raise MetadataError(f"{self.path}: cannot append to the job journal: {err.strerror}") from err
            # The disk is full: the reserve's space now holds the records of
            # the jobs still running. The launch sees `disk_full` and stops.
            try:
                self._write(fd, data)
            except OSError as again:
                raise MetadataError(f"{self.path}: cannot append to the job journal: {again.strerror}") from again
        self._dirty = True
        self._lines += count
        self.size += len(data)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        """One write on O_APPEND under the journal's flock (`appendlock`): atomic to other writers (the slot
        helpers append start lines), durable against this process's death; a short one is cut off again."""
        append_locked(fd, data)

    @staticmethod
    def start_line(job_id: str, attempt: int, slot: int, host: str, holds: str | None = None, code: str | None = None) -> tuple[str, str]:
        """A job's start line, as the text before and after its start time (`%.6f`): whoever starts the job writes it, right before."""
        return f"S {job_id} {attempt} ", f" {slot} {host}{start_extras(holds, code)}\n"

    def record_start(self, job_id: str, attempt: int, start: float, slot: int, host: str, holds: str | None = None, code: str | None = None) -> JobRecord:
        """Record that a job is about to start (before its process exists), what it holds beside its slot, and its code version if known."""
        start = canonical_time(start)
        before, after = self.start_line(job_id, attempt, slot, host, holds, code)
        self._append(f"{before}{start:.6f}{after}")
        return self.records.view(self.records.start(job_id, attempt, start, slot, host, holds, code))

    def note_start(
        self, line: tuple[str, str], job_id: str, attempt: int, start: str, slot: int, host: str, holds: str | None = None, code: str | None = None
    ) -> JobRecord:
        """Take in the start line another process (the job's slot helper) appended, at start time `start` (its text), as if written here.

        `line` is the `start_line` of the same job, attempt, slot, host, holds and code, as sent to that process.
        """
        before, after = line
        self._dirty = True
        self._lines += 1
        self.size += len(before) + len(start) + len(after)
        return self.records.view(self.records.start(job_id, attempt, float(start), slot, host, holds, code))

    def record_usage(self, job_id: str, attempt: int, usage: tuple[int, float, float] | None, gpu_mb: int | None = None, hold: bool = False) -> None:
        """Record what an attempt used (`jobfiles.read_usage`, its peak GPU memory if known) before its end; nothing when unknown; `hold`: in one write with the next line."""
        if usage is None:
            return
        rss, user, system = usage
        line = f"U {job_id} {attempt} {rss} {user:.3f} {system:.3f}{'' if gpu_mb is None else f' {gpu_mb}'}\n"
        if hold:
            self._held = line
        else:
            self._append(line)
        # As the line reads back (milliseconds), so a record in memory equals the same record replayed.
        self.records.used(job_id, rss, float(f"{user:.3f}"), float(f"{system:.3f}"), gpu_mb)

    def record_ref(self, job_id: str, attempt: int, ref: str) -> None:
        """Record the executor's reference to a started job (a pid, a SLURM id...)."""
        self._append(f"P {job_id} {attempt} {ref} 0\n")
        self.records.started(job_id, ref)

    def record_end(self, job_id: str, attempt: int, status: int, start: float, end: float, state: str | None = None) -> JobRecord:
        """Record that a job ran to its end with an exit status: it is finished."""
        start, end = canonical_time(start), canonical_time(end)
        extra = f" {state}" if state is not None else ""
        self._append(f"E {job_id} {attempt} {status} {start:.6f} {end:.6f}{extra}\n")
        return self.records.view(self.records.end(job_id, attempt, status, start, end, state))

    def record_unfinished(self, job_id: str, attempt: int, start: float, end: float, state: str = State.INTERRUPTED) -> JobRecord:
        """Record that a job stopped before its end: it will run again."""
        start, end = canonical_time(start), canonical_time(end)
        self._append(f"I {job_id} {attempt} {start:.6f} {end:.6f} {state}\n")
        return self.records.view(self.records.stop(job_id, attempt, start, end, state))

    def record_reset(self, job_ids: Iterable[str]) -> None:
        """Forget jobs (--rerun-all): the next launch runs them again."""
        self._mark("R", job_ids, self.records.reset)

    def record_ignore(self, job_ids: Iterable[str]) -> None:
        """Mark jobs ignored (doit ignore): skipped until forgotten."""
        self._mark("X", job_ids, self.records.ignore)

    def _mark(self, kind: str, job_ids: Iterable[str], apply: Callable[[str], object]) -> None:
        """Append a `kind` line for each job, 4,096 in a write, then apply it to their records."""
        job_ids = list(job_ids)
        for start in range(0, len(job_ids), 4096):
            chunk = job_ids[start : start + 4096]
            self._append("".join(f"{kind} {job_id}\n" for job_id in chunk), count=len(chunk))
        for job_id in job_ids:
            apply(job_id)

    def _sync_loop(self) -> None:
        while not self._closed.wait(_SYNC_INTERVAL):
            self.sync()

    def sync(self) -> None:
        """Flush what was appended to stable storage (group commit)."""
        fd = self._fd
        if fd is not None and self._dirty:
            self._dirty = False
            try:
                os.fdatasync(fd)
            except OSError:
                # The appends reached the kernel; a failed flush only widens what a power loss could take.
                self._dirty = True

    def needs_compaction(self) -> bool:
        """Whether `compact` would rewrite the file now."""
        return compaction_due(self._lines, len(self.records))

    def make_reserve(self) -> None:
        """Set aside the disk-full reserve, as `open` does (for a launch that appends nothing)."""
        self._reserve.make()

    def compact(self) -> None:
        """Rewrite the journal as one line per job when it has grown much longer.

        Called after `close`, under the runs directory's lock: the rename must
        not leave an open descriptor appending to the replaced file.
        """
        if self._fd is not None:
            raise MetadataError(f"{self.path}: compact() needs a closed journal")
        if not self.needs_compaction():
            return
        dropped: list[str] = []
        counts = [0, 0]  # lines, bytes (ASCII: a byte a character)
        try:
            # Streamed a block of lines at a time: a million jobs' lines in a list were 400 MB.
            write_atomic(self.path, blocks(compacted_lines(self.records.values(), dropped), counts), sync=True)
        except OSError:
            return  # compaction is an optimisation: the long journal stays valid
        self._lines, self.size = counts
        # The records stay what a replay of the new file gives.
        for job_id in dropped:
            del self.records[job_id]

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        self._closed.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def excluding_writers(journal: Path) -> Iterator[None]:
    """Hold the guard of the start lines while the journal is read and opened: a slot helper of a launch that
    died appends none meanwhile (it takes the guard, then finds its launch gone; `appendlock`, `_slot_helper`)."""
    fd = guard(journal)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # lets go of the lock


class _Reserve:
    """Space set aside next to the journal for the records of running jobs, should the disk fill."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.released = False

    def make(self) -> None:
        try:
            if self.path.stat().st_size >= _RESERVE_BYTES:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            with open(self.path, "wb") as f:
                f.write(b"\0" * _RESERVE_BYTES)
        except OSError:
            self.path.unlink(missing_ok=True)  # no room even for the reserve: go on without

    def release(self) -> bool:
        """Give the reserve's space back to the filesystem; False if there was none."""
        try:
            self.path.unlink()
        except OSError:
            return False
        self.released = True
        return True


def replay(table: RecordTable, lines: Iterable[str | bytes], path: Path, first_line: int) -> None:
    """Apply journal lines, in order, to `table` (the first is line `first_line` of the file): each through its transition.

    Raises:
        MetadataError: a line that is not a journal line, named by its number in `path`.
    """
    for lineno, raw in enumerate(lines, start=first_line):
        if not raw:
            continue
        try:
            parts = (raw if isinstance(raw, str) else raw.decode("ascii")).split(" ")
            kind = parts[0]
            job_id = parts[1]
            if kind == "E":
                state = known_state(parts[6]) if len(parts) > 6 else None
                # A host and a code version are written by compaction, which drops the S line.
                host, code = parts[7] if len(parts) > 7 else KEEP, parts[8] if len(parts) > 8 else KEEP
                table.end(job_id, int(parts[2]), int(parts[3]), float(parts[4]), float(parts[5]), state, host, code)
            elif kind == "S":
                table.start(job_id, int(parts[2]), float(parts[3]), int(parts[4]), parts[5], *start_fields(parts[6:]))
            elif kind == "U":
                table.used(job_id, int(parts[3]), float(parts[4]), float(parts[5]), int(parts[6]) if len(parts) > 6 else None)
            elif kind == "P":
                table.started(job_id, parts[3])
            elif kind == "I":
                # A code version is written by compaction, which drops the S line.
                table.stop(job_id, int(parts[2]), float(parts[3]), float(parts[4]), known_state(parts[5]), parts[6] if len(parts) > 6 else KEEP)
            elif kind == "R":
                table.reset(job_id)
            elif kind == "X":
                table.ignore(job_id)
            else:
                raise ValueError(kind)
        except (ValueError, IndexError, UnicodeDecodeError) as err:
            # ascii(): any byte shows as an escape, and the message stays one line.
            shown = raw[:60] if isinstance(raw, str) else raw[:60].decode("latin-1")
            message = f"{path}:{lineno}: corrupt job journal line {ascii(shown)}; remove that line (jobs it recorded will run again)"
            raise MetadataError(message) from err
