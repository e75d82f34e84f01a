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

Parsing runfile bytes into a table is `parse`'s (`parse_commands`).
Duplicates are found by id, not by text: the ids are sorted once (packed
with their index into one integer each, so the sort runs in C), equal ids
sit side by side, and only those lines' texts are compared. The same sorted
array answers `index_of` by bisection.

This module is pure: no I/O, no printing.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from batchrun.resources import Request
from batchrun.runfile.requestruns import RequestRuns

__all__ = ["Job", "JobTable"]

_U64 = (1 << 64) - 1


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

    __slots__ = ("_blob", "_ends", "_ids", "_ids_unique", "_index", "_index_bits", "_lines", "_odd", "_starts", "_tail", "requests")

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        # The runfile's own bytes (shared, not copied), or a bytearray once jobs are appended.
        self._blob: bytes | bytearray = b""
        self._starts = array("q")
        self._ends = array("q")
        self._ids = array("Q")
        self._lines = array("q")
        # Ids that are not 16 lower-case hex digits (a caller's own `Job`): by index.
        self._odd: dict[int, str] = {}
        # The sorted (id's high bits | index) array of `index_of`, built on first use,
        # and the ids appended since, by id.
        self._index: array[int] | None = None
        self._index_bits = 0
        self._tail: dict[int, int] = {}
        # Known when the parse found it out (no two jobs share an id); None: ask the index.
        self._ids_unique: bool | None = None
        self.requests = RequestRuns()  # what the jobs ask for, per run of lines
        self.extend(jobs)

    # -- reading -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, i: int) -> Job: ...

    @overload
    def __getitem__(self, i: slice) -> list[Job]: ...

    def __getitem__(self, i: int | slice) -> Job | list[Job]:
        if isinstance(i, slice):
            return [self._job(k) for k in range(*i.indices(len(self._ids)))]
        n = len(self._ids)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("job index out of range")
        return self._job(i)

    def _job(self, i: int) -> Job:
        job_id = self._odd.get(i) if self._odd else None
        return Job(self._blob[self._starts[i] : self._ends[i]].decode(), job_id or f"{self._ids[i]:016x}", self._lines[i], self.requests.at(i))

    def __iter__(self) -> Iterator[Job]:
        blob, odd = self._blob, self._odd
        if self.requests:
            asks = self.requests.each(len(self._ids))
            for i, (start, end, digest, lineno, request) in enumerate(zip(self._starts, self._ends, self._ids, self._lines, asks, strict=True)):
                yield Job(blob[start:end].decode(), (odd.get(i) if odd else None) or f"{digest:016x}", lineno, request)
            return
        for i, (start, end, digest, lineno) in enumerate(zip(self._starts, self._ends, self._ids, self._lines, strict=True)):
            yield Job(blob[start:end].decode(), (odd.get(i) if odd else None) or f"{digest:016x}", lineno)

    def job_ids(self) -> Iterator[str]:
        """The jobs' ids in order, without building `Job`s."""
        odd = self._odd
        for i, digest in enumerate(self._ids):
            yield (odd.get(i) if odd else None) or f"{digest:016x}"

    def index_of(self, job_id: str) -> int:
        """The index of the (first) job with this id; -1 when none has it."""
        if self._odd:
            for i, odd in self._odd.items():
                if odd == job_id:
                    return i
        digest = _digest_of(job_id)
        if digest is None:
            return -1
        index = self._index
        if index is None:
            index = self._build_index()
        bits = self._index_bits
        mask = (1 << bits) - 1
        key = digest & ~mask & _U64
        ids = self._ids
        pos = bisect_left(index, key)
        while pos < len(index) and index[pos] & ~mask & _U64 == key:
            i = index[pos] & mask
            if ids[i] == digest and i not in self._odd:
                return i
            pos += 1
        return self._tail.get(digest, -1)

    def indices_of(self, job_id: str) -> list[int]:
        """The indices of every job with this id, in order (one, unless ids collide or repeat)."""
        found = [i for i, odd in self._odd.items() if odd == job_id]
        digest = _digest_of(job_id)
        if digest is not None:
            found.extend(i for i in self._indices_of_digest(digest) if i not in self._odd)
        return sorted(found)

    def ids_repeat(self) -> bool:
        """Whether two jobs share an id (different commands whose SHA-256 start alike, or appended twice)."""
        if self._ids_unique is not None:
            return not self._ids_unique
        if len(set(self._odd.values())) < len(self._odd):
            return True
        ids, odd = self._ids, self._odd
        return any(len({ids[i] for i in group if i not in odd}) < len([i for i in group if i not in odd]) for group in self._high_groups())

    def _high_groups(self) -> list[list[int]]:
        """Indices whose ids share their high bits in the sorted index (where any repeated id is), in groups."""
        index = self._build_index() if self._index is None or self._tail else self._index
        mask = (1 << self._index_bits) - 1
        groups: dict[int, list[int]] = {}
        previous = first = -1
        for packed in index:
            key = packed & ~mask
            if key == previous:
                groups.setdefault(key, [first]).append(packed & mask)
            else:
                previous, first = key, packed & mask
        return list(groups.values())

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
        for i in self._indices_of_digest(_sha_digest(data)):
            if self._command_bytes(i) == data:
                return i
        return -1

    def _indices_of_digest(self, digest: int) -> list[int]:
        index = self._index if self._index is not None else self._build_index()
        mask = (1 << self._index_bits) - 1
        key = digest & ~mask & _U64
        ids = self._ids
        found = []
        pos = bisect_left(index, key)
        while pos < len(index) and index[pos] & ~mask & _U64 == key:
            if ids[index[pos] & mask] == digest:
                found.append(index[pos] & mask)
            pos += 1
        if digest in self._tail:
            found.extend(i for i in range(len(index), len(ids)) if ids[i] == digest)
        return sorted(found)

    def _command_bytes(self, i: int) -> bytes:
        return bytes(self._blob[self._starts[i] : self._ends[i]])

    def _build_index(self) -> array[int]:
        n = len(self._ids)
        bits = max(1, (n - 1).bit_length())
        high = ~((1 << bits) - 1) & _U64
        # One integer per job, sorted in C: no list of tuples, no dict of 1,000,000 keys.
        index = array("Q", sorted([(digest & high) | i for i, digest in enumerate(self._ids)]))
        self._index, self._index_bits, self._tail = index, bits, {}
        return index

    def __contains__(self, job: object) -> bool:
        if not isinstance(job, Job):
            return False
        return any(self._job(i) == job for i in self._odd) or (
            (digest := _digest_of(job.job_id)) is not None and any(self._job(i) == job for i in self._indices_of_digest(digest))
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobTable):
            return len(self) == len(other) and self._ids == other._ids and self._lines == other._lines and self._odd == other._odd and self.requests == other.requests and all(
                self._command_bytes(i) == other._command_bytes(i) for i in range(len(self))
            )
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"JobTable({len(self)} jobs)"

    # -- changing ------------------------------------------------------------

    def append(self, job: Job) -> None:
        i = len(self._ids)
        digest = _digest_of(job.job_id)
        if digest is None:
            self._odd[i] = job.job_id
            digest = 0
        if job.request is not None or self.requests:
            self.requests.note(i, job.request)
        self._add(job.command.encode(), digest, job.lineno)
        if self._index is not None:
            self._tail.setdefault(digest, i)
            if len(self._tail) > 1024 + len(self._index):
                self._index = None  # rebuilt at the next look-up: twice the size each time, so O(n log n) in all

    def append_key(self, job_id: str) -> None:
        """Append a bare id (no command, line 0): the cheap append of a table used as an ordered key index."""
        digest = _digest_of(job_id)
        if digest is None or self._index is not None:
            self.append(Job("", job_id, 0))
            return
        self._ids_unique = None
        end = len(self._blob)
        self._starts.append(end)
        self._ends.append(end)
        self._ids.append(digest)
        self._lines.append(0)

    def extend(self, jobs: Iterable[Job]) -> None:
        for job in list(jobs):
            self.append(job)

    def _add(self, command: bytes, digest: int, lineno: int) -> None:
        self._ids_unique = None
        if not isinstance(self._blob, bytearray):
            self._blob = bytearray(self._blob)
        self._starts.append(len(self._blob))
        self._blob += command
        self._ends.append(len(self._blob))
        self._ids.append(digest)
        self._lines.append(lineno)

    def __setitem__(self, i: slice, jobs: Iterable[Job]) -> None:
        if not isinstance(i, slice) or i != slice(None):
            raise TypeError("JobTable only takes a whole-slice assignment (jobs[:] = ...)")
        jobs = list(jobs)
        self.clear()
        self.extend(jobs)

    def clear(self) -> None:
        self._blob = b""
        self._starts, self._ends, self._ids, self._lines = array("q"), array("q"), array("Q"), array("q")
        self._odd, self._index, self._tail, self._ids_unique = {}, None, {}, None
        self.requests.clear()


def _sha_digest(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _digest_of(job_id: str) -> int | None:
    """A 16-hex-digit id as its integer; None for any other string."""
    if len(job_id) != 16:
        return None
    try:
        digest = int(job_id, 16)
    except ValueError:
        return None
    return digest if f"{digest:016x}" == job_id else None
