"""A runfile's jobs kept compactly: one bytes blob and three arrays, not an object per line.

A 1,000,000-line runfile held as `Job` objects costs about 230 bytes a line
(the object, its command string, its 16-hex id string, its line number) plus
the duplicate check's dict of every command: 386 MB before a launch runs a
job. `JobTable` keeps the commands' UTF-8 bytes end to end in one
`bytearray`, with an array of end offsets, the ids as 64-bit integers (the
id is the first 8 bytes of the SHA-256, printed as 16 hex digits) and the
line numbers: about 24 bytes a line plus the text. A `Job` is built when a
caller indexes or iterates, so callers see an ordinary `Sequence[Job]`.
What jobs ask for (directive lines, `batchrun.resources`) is kept per run
of lines (`requestruns.RequestRuns`), not per job.

The ids are an `idindex.IdIndex`: duplicates are found by id, not by text
(the ids are sorted once, in C; equal ids sit side by side, and only those
lines' texts are compared), and the same sorted array answers `index_of`.

Parsing is `parse`'s (`parse_commands`).

This module is pure: no I/O, no printing.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from batchrun.resources import Request
from batchrun.runfile.idindex import IdIndex, has_repeats
from batchrun.runfile.packed import PackedBytes, packed_if_long
from batchrun.runfile.requestruns import RequestRuns

__all__ = ["SMALL_MAX", "Job", "JobTable", "dump_table", "extend_table", "restore_table"]

# Offsets and line numbers in 4 bytes each (unsigned int), up to 4 GB of runfile.
_SMALL = "I" if array("I").itemsize >= 4 else "L"
SMALL_MAX = 2 ** (8 * array(_SMALL).itemsize) - 1


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per
# field, 4x the cost, and a launch builds one Job per pending line. Nothing
# assigns to a Job's fields; it stays hashable by value.
@dataclass(slots=True, unsafe_hash=True)
class Job:
    """One line of a runfile: what to run and where it came from (treat as immutable)."""

    command: str
    job_id: str
    lineno: int
    # What it asks for (its directive's); not part of its identity, equality or hash.
    request: Request | None = field(default=None, compare=False)


class JobTable(Sequence[Job]):
    """The jobs of a runfile in file order, stored compactly; reads as a `Sequence[Job]`.

    Also takes `append`, `extend` and whole-slice assignment (`jobs[:] = ...`),
    the changes a followed runfile makes.
    """

    __slots__ = ("_blob", "_ends", "_ids_unique", "_keys", "_lines", "_starts", "generation", "requests")

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        # The runfile's own bytes (shared, not copied), or a bytearray once jobs are appended.
        self._blob: bytes | bytearray | PackedBytes = b""
        self._starts = array(_SMALL)
        self._ends = array(_SMALL)
        self._lines = array(_SMALL)
        self._keys = IdIndex()
        # Known when the parse found it out (no two jobs share an id); None: ask the index.
        self._ids_unique: bool | None = None
        # Counts the times the table was emptied (`clear`, `jobs[:] = ...`): a job's index
        # kept from before then names another job. Appends keep every index.
        self.generation = 0
        # What the jobs ask for, per run of lines.
        self.requests = RequestRuns()
        self.extend(jobs)

    # -- reading -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def blob(self) -> bytes | bytearray | PackedBytes:
        """The runfile's bytes the commands are in (packed when long, a bytearray once jobs were appended; do not change it)."""
        return self._blob

    @property
    def keys(self) -> IdIndex:
        """The jobs' ids by index (do not change it)."""
        return self._keys

    def columns(self) -> tuple[array[int], array[int], array[int]]:
        """Start and end offsets of each command in the runfile's bytes, and its line number (do not change them)."""
        return self._starts, self._ends, self._lines

    @overload
    def __getitem__(self, i: int) -> Job: ...

    @overload
    def __getitem__(self, i: slice) -> list[Job]: ...

    def __getitem__(self, i: int | slice) -> Job | list[Job]:
        if isinstance(i, slice):
            return [self._job(k) for k in range(*i.indices(len(self._keys)))]
        n = len(self._keys)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("job index out of range")
        return self._job(i)

    def _job(self, i: int) -> Job:
        return Job(self._blob[self._starts[i] : self._ends[i]].decode(), self._keys.text(i), self._lines[i], self.requests.at(i))

    def jobs_at(self, indices: Iterable[int]) -> Iterator[Job]:
        """The jobs at these indices, one `Job` at a time."""
        for i in indices:
            yield self._job(i)

    def __iter__(self) -> Iterator[Job]:
        blob, keys = self._blob, self._keys
        if self.requests:
            for start, end, job_id, lineno, request in zip(
                self._starts, self._ends, keys.texts(), self._lines, self.requests.each(len(self)), strict=True
            ):
                yield Job(blob[start:end].decode(), job_id, lineno, request)
            return
        for start, end, job_id, lineno in zip(self._starts, self._ends, keys.texts(), self._lines, strict=True):
            yield Job(blob[start:end].decode(), job_id, lineno)

    def job_ids(self) -> Iterator[str]:
        """The jobs' ids in order, without building `Job`s."""
        return self._keys.texts()

    def index_of(self, job_id: str) -> int:
        """The index of the (first) job with this id; -1 when none has it."""
        return self._keys.row_of(job_id)

    def indices_of(self, job_id: str) -> list[int]:
        """The indices of every job with this id, in order (one, unless ids collide or repeat)."""
        return self._keys.rows_of(job_id)

    def ids_repeat(self) -> bool:
        """Whether two jobs share an id (different commands whose SHA-256 start alike, or appended twice)."""
        if self._ids_unique is not None:
            return not self._ids_unique
        return has_repeats(self._keys)

    def ids_missing(self, keys: Collection[str]) -> list[str]:
        """The keys (in their order) that are no job's id: the records of jobs no longer in a runfile.

        Counted first, without a set of every id (100 MB for a million
        jobs): when as many distinct ids of the table are among the keys as
        there are keys, none is missing.
        """
        if not self.ids_repeat() and sum(1 for job_id in self.job_ids() if job_id in keys) == len(keys):
            return []
        ids = set(self.job_ids())
        return [key for key in keys if key not in ids]

    def has_id(self, job_id: str) -> bool:
        return self.index_of(job_id) >= 0

    def index_of_command(self, command: str) -> int:
        """The index of the job whose command is exactly `command`; -1 when none."""
        data = command.encode()
        for i in self._keys.rows_of_digest(_sha_digest(data)):
            if self._command_bytes(i) == data:
                return i
        return -1

    def command_bytes(self, i: int) -> bytes:
        """The UTF-8 bytes of job i's command."""
        return self._command_bytes(i)

    def _command_bytes(self, i: int) -> bytes:
        return bytes(self._blob[self._starts[i] : self._ends[i]])

    def __contains__(self, job: object) -> bool:
        if not isinstance(job, Job):
            return False
        return any(self._job(i) == job for i in self._keys.rows_of(job.job_id))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobTable):
            mine, theirs = self._keys, other._keys
            return (
                len(self) == len(other)
                and mine.digests == theirs.digests
                and self._lines == other._lines
                and mine._odd == theirs._odd
                and self.requests == other.requests
                and all(self._command_bytes(i) == other._command_bytes(i) for i in range(len(self)))
            )
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"JobTable({len(self)} jobs)"

    # -- changing ------------------------------------------------------------

    def append(self, job: Job) -> None:
        if job.request is not None or self.requests:
            self.requests.note(len(self), job.request)
        self._add(job.command.encode(), job.lineno)
        self._keys.append(job.job_id)

    def append_key(self, job_id: str) -> None:
        """Append a bare id (no command, line 0): the cheap append of a table used as an ordered key index."""
        self._ids_unique = None
        end = len(self._blob)
        self._starts.append(end)
        self._ends.append(end)
        self._lines.append(0)
        self._keys.append(job_id)

    def extend(self, jobs: Iterable[Job]) -> None:
        for job in list(jobs):
            self.append(job)

    def _add(self, command: bytes, lineno: int) -> None:
        self._ids_unique = None
        if not isinstance(self._blob, bytearray):
            self._blob = bytearray(bytes(self._blob))
        if len(self._blob) + len(command) >= SMALL_MAX or lineno >= SMALL_MAX:
            self._widen()
        self._starts.append(len(self._blob))
        self._blob += command
        self._ends.append(len(self._blob))
        self._lines.append(lineno)

    def _widen(self) -> None:
        """Past 4 GB of commands (or 4 billion lines): offsets and line numbers in 8 bytes each."""
        if self._starts.typecode != "q":
            self._starts, self._ends, self._lines = array("q", self._starts), array("q", self._ends), array("q", self._lines)

    def truncate(self, count: int) -> None:
        """Keep the first `count` jobs only (and the bytes before the next one's line), as a parse of the text up to there would give.

        Indices of the kept jobs do not change; `generation` counts up all the same.
        """
        if count >= len(self):
            return
        del self._starts[count:], self._ends[count:], self._lines[count:]
        self._keys.truncate(count)
        self.requests.truncate(count)
        self._ids_unique = True if self._ids_unique else None  # fewer jobs: still none repeated
        self.generation += 1

    def remove_ids(self, job_ids: Collection[str]) -> None:
        """Drop the jobs with these ids, keeping the others in order (a followed runfile lost lines).

        Indices of jobs change: `generation` counts up, as after `clear`.
        """
        drop = {i for job_id in job_ids for i in self.indices_of(job_id)}
        if drop:
            self._keep([i for i in range(len(self)) if i not in drop])
            self.generation += 1

    def _keep(self, kept: list[int]) -> None:
        """Keep only the jobs at these indices, in this order."""
        self._starts = array(self._starts.typecode, map(self._starts.__getitem__, kept))
        self._ends = array(self._ends.typecode, map(self._ends.__getitem__, kept))
        self._lines = array(self._lines.typecode, map(self._lines.__getitem__, kept))
        if self.requests:
            kept_set = set(kept)
            self.requests.drop([i for i in range(len(self._keys)) if i not in kept_set])
        self._keys = self._keys.take(kept)
        self._ids_unique = None

    def __setitem__(self, i: slice, jobs: Iterable[Job]) -> None:
        if not isinstance(i, slice) or i != slice(None):
            raise TypeError("JobTable only takes a whole-slice assignment (jobs[:] = ...)")
        jobs = list(jobs)
        self.clear()
        self.extend(jobs)

    def clear(self) -> None:
        self._blob = b""
        self._starts, self._ends, self._lines = array(_SMALL), array(_SMALL), array(_SMALL)
        self._keys = IdIndex()
        self._ids_unique = None
        self.requests.clear()
        self.generation += 1


def extend_table(table: JobTable, other: JobTable, offset: int) -> None:
    """Append to `table` the jobs of `other`, parsed from its bytes from `offset` on
    (`parse_commands(blob, start=offset)`); those bytes become the table's.

    For a runfile whose text changed only from `offset` on: the caller
    vouches that the bytes before `offset` hold the table's commands where they were.
    """
    table._ids_unique = None
    if len(table) and table._ends[-1] > offset:
        raise ValueError("extend_table: a kept job ends past the new bytes' start")
    if len(other._blob) >= SMALL_MAX:
        table._widen()
    table._blob = other._blob
    for column, values in ((table._starts, other._starts), (table._ends, other._ends), (table._lines, other._lines)):
        column.extend(values if values.typecode == column.typecode else iter(values))  # arrays of one kind only
    table._keys.extend(other._keys)
    # The runs of `other` go on from where the table's last one is still in effect, as in a parse of the whole text.
    table.requests.extend(other.requests, len(table) - len(other))


def dump_table(table: JobTable) -> tuple[dict[str, array[Any]], dict[str, Any]]:
    """The table's arrays and the rest (JSON-able) that `restore_table` takes back, all but the runfile's bytes."""
    sections, side = table.keys.dump()
    out: dict[str, array[Any]] = {f"keys.{name}": column for name, column in sections.items()}
    out.update(starts=table._starts, ends=table._ends, lines=table._lines)
    return out, {"keys": side, "ids_unique": table._ids_unique}


def restore_table(blob: bytes | PackedBytes, sections: dict[str, array[Any]], side: dict[str, Any]) -> JobTable:
    """The table `dump_table` described, over the runfile's bytes (read back from disk: the caller checked them)."""
    table = JobTable()
    table._blob, table._starts, table._ends, table._lines = packed_if_long(blob), sections["starts"], sections["ends"], sections["lines"]
    table._keys = IdIndex.restore({name[5:]: column for name, column in sections.items() if name.startswith("keys.")}, side["keys"])
    table._ids_unique = side["ids_unique"]
    return table


def _sha_digest(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
