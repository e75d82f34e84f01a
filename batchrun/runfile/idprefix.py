"""A record table's ids held as the runfile's job indices: no ids, sorted copy or tail of its own.

A launch adds a record row for each job the first time it starts, and it
starts jobs in runfile order: row r of its record table is, but for a few
jobs two workers started in the other order, job r of the runfile's job
table. An `IdIndex` of the rows' own (8 bytes a row, a sorted copy of 8
more, a tail of appended rows of up to 8 more, and a sort of every row each
time the tail is as long as the index: about 24 MB and a 20 MB spike at a
million jobs) then repeats what the job table's `IdIndex` holds.

An `IdPrefix` holds instead how many rows there are and the rows whose job
is not their own number: a look-up is the job table's look-up. Workers start
jobs nearly in order (at `-j 8`, a tenth of the rows hold a neighbour's job),
so those are held as a signed byte per row (its job's distance) and per job
(its row's): 2 bytes a row, where two dict entries were about 200 bytes a row
out of order. Only a job further than a byte reaches takes dict entries. When
the rows stop following the jobs (many of those far ones, a record of no job,
a second row for one job, the job table changed under it) it turns into the
`IdIndex` it stands for (`own`) and hands every call on to it.

Pure: no I/O.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator
from itertools import compress, islice
from operator import ne
from typing import Any

from batchrun.runfile.idindex import IdIndex, digest_of, row_or_append

__all__ = ["IdPrefix", "PatchedIds"]

# Rows whose job is further from their own number than a byte reaches, past which an `IdIndex`
# of its own is smaller (two dict entries, about 200 bytes, against 24 bytes a row).
_MOVED_MIN = 1024
_MOVED_SHARE = 16
# In the distance arrays: a job that has no row yet (its own number's row holds another job), and a
# distance a byte does not hold (see the dict). Every other value is the distance itself.
_NONE = -128
_FAR = 127


class IdPrefix:
    """The ids of rows that are (nearly all) the same-numbered jobs of a job table's `IdIndex`."""

    __slots__ = ("_count", "_guard", "_ids", "_job_delta", "_job_of", "_jobs", "_moved", "_own", "_row_delta", "_row_of")

    def __init__(self, jobs: IdIndex, count: int = 0) -> None:
        """Rows 0..count-1, row r holding job r's id (`follow` notes the rows that do not)."""
        self._jobs = jobs
        # The job table's ids as they are now: it copies them before it changes them (`IdIndex._own_ids`),
        # so these stay what the rows name; its look-ups are used only while they are its ids.
        self._ids = jobs.digests
        jobs._shared = True
        self._count = count
        # Per row, its job's distance from the row's number; per job, its row's distance from the job's number
        # (`_NONE`: none, for a job below `_count`). Arrays: a job above `_count` with no row is past the end.
        self._row_delta = array("b", bytes(count))
        self._job_delta = array("b", bytes(count))
        self._job_of: dict[int, int] = {}  # row -> its job, where `_FAR`
        self._row_of: dict[int, int] = {}  # job -> its row, where `_FAR`
        self._moved = 0  # rows whose job is not their own number
        self._own: IdIndex | None = None
        self._guard = threading.RLock()

    @classmethod
    def follow(cls, keys: IdIndex, jobs: IdIndex, unique: bool) -> IdPrefix | None:
        """An `IdPrefix` for `keys`' rows over `jobs` (`unique`: no two of its ids alike, as its job table
        knows), when every row is a job's and nearly all are in order; else None."""
        n = len(keys)
        if not unique or n > len(jobs) or keys.has_odd() or jobs.has_odd():
            return None
        ids, job_ids = keys.digests, jobs.digests
        prefix = cls(jobs, n)
        step = 1 << 16
        for start in range(0, n, step):  # rows whose id is not the same-numbered job's, found in C
            differ = map(ne, islice(ids, start, start + step), islice(job_ids, start, start + step))
            for row in compress(range(start, min(n, start + step)), differ):
                job = jobs.row_of_digest(ids[row])
                if job < 0:
                    return None  # a record of no job of this runfile
                if job < len(prefix._job_delta) and prefix._job_delta[job] not in (0, _NONE):
                    return None  # a job's second row
                prefix._move(row, job)
                if len(prefix._job_of) > _MOVED_MIN + n // _MOVED_SHARE:
                    return None
        # A job moved to a row while its own row holds it too: two rows of one job.
        deltas = prefix._row_delta
        if any(job < n and not deltas[job] for job in (_job_at(deltas, prefix._job_of, row) for row in compress(range(n), deltas))):
            return None
        return prefix

    # -- reading ------------------------------------------------------------

    # Every answer is taken under the guard: a launch adds rows from its worker threads while others look up,
    # and a row added, or the turn into an `IdIndex`, changes more than one field.

    def __len__(self) -> int:
        with self._guard:
            return len(self._own) if self._own is not None else self._count

    @property
    def digests(self) -> array[int]:
        """The ids as integers in row order (made for the caller when not the job table's own)."""
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.digests
            return self._ids if not self._moved and self._count == len(self._ids) else self._id_array()

    def text(self, row: int) -> str:
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.text(row)
            if not 0 <= row < self._count:
                raise IndexError(row)
            return f"{self._ids[_job_at(self._row_delta, self._job_of, row)]:016x}"

    def texts(self, start: int = 0, stop: int | None = None) -> Iterator[str]:
        with self._guard:
            own = self._owned()
            # Rows already there never change: read without the guard, up to the count as it is now.
            ids, deltas, far, count = self._ids, self._row_delta, self._job_of, self._count
        if own is not None:
            yield from own.texts(start, stop)
            return
        for row in range(start, count if stop is None else min(stop, count)):
            yield f"{ids[_job_at(deltas, far, row)]:016x}"

    def has_odd(self) -> bool:
        with self._guard:
            own = self._owned()
            return own.has_odd() if own is not None else False

    def row_of(self, job_id: str) -> int:
        digest = digest_of(job_id)
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.row_of(job_id)
            return -1 if digest is None else self.row_of_digest(digest)

    def row_of_digest(self, digest: int) -> int:
        """The row holding this id; -1 when none."""
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.row_of_digest(digest)
            job = self._jobs.row_of_digest(digest)
            if self._jobs.digests is not self._ids:  # the job table changed meanwhile: its answer may be of other rows
                return self._own_now().row_of_digest(digest)
            return self._row_of_job(job)

    def _row_of_job(self, job: int) -> int:
        """(Under the guard, the job table unchanged.) The row holding the id of the job table's row `job` (-1: no job); -1 when none does."""
        if job < 0 or job >= len(self._job_delta):
            return -1
        delta = self._job_delta[job]
        if not delta:
            return job if job < self._count else -1
        return -1 if delta == _NONE else self._row_of[job] if delta == _FAR else job + delta

    def rows_of(self, job_id: str) -> list[int]:
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.rows_of(job_id)
            row = self.row_of(job_id)
            return [row] if row >= 0 else []

    def rows_of_digest(self, digest: int) -> list[int]:
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.rows_of_digest(digest)
            row = self.row_of_digest(digest)
            return [row] if row >= 0 else []

    def dump(self, sort: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """As `IdIndex.dump`: the job table's own arrays when the rows are its jobs in order, else the ids without a sorted index."""
        with self._guard:
            own = self._owned()
            if own is not None:
                return own.dump(sort)
            if not self._moved and self._count == len(self._ids):
                return self._jobs.dump()
            # Written a block at a time from the job table's ids (`jobsnapshot.write_sections`): a copy of
            # them all would be 8 MB at a million jobs, at the very end of a launch, its peak.
            return {"ids": PatchedIds(self._ids, self._count, array("b", self._row_delta), dict(self._job_of))}, {"odd": {}, "layout": [0, 64]}

    # -- changing -----------------------------------------------------------

    def append(self, job_id: str) -> int:
        """Add a row with this id; its row number."""
        digest = digest_of(job_id)
        with self._guard:
            own = self._owned()
            if own is None:
                job = self._jobs.row_of_digest(digest) if digest is not None else -1
                # The job table may have changed meanwhile (then it is an `IdIndex` now, and `job` of other rows).
                if self._owned() is None and self._follows(job, digest) and self._own is None:
                    return self._append_job(job)
                own = self._own_now()
            return own.append(job_id)

    def row_or_append(self, job_id: str) -> tuple[int, bool]:
        """The first row holding this id, else a new row made for it; and whether the row is new.

        A job's first record (its start line, at a launch or a replay) takes
        one search of the job table here, where `row_of` and then `append`
        would take three.
        """
        digest = digest_of(job_id)
        with self._guard:
            if digest is not None and self._owned() is None:
                job = self._jobs.row_of_digest(digest)
                if self._owned() is None:  # the search saw the job table these rows follow (see `append`)
                    row = self._row_of_job(job)
                    if row >= 0:
                        return row, False
                    if self._follows(job, digest):
                        return self._append_job(job), True
            return row_or_append(self, job_id)

    def _append_job(self, job: int) -> int:
        """(Under the guard, `_follows(job, ...)` true.) Add the row of the job table's row `job`; its row number."""
        row = self._count
        self._row_delta.append(0)
        if len(self._job_delta) <= row:
            self._job_delta.append(0)
        if job != row:
            self._move(row, job)
        self._count = row + 1
        return row

    def _follows(self, job: int, digest: int | None) -> bool:
        """Whether a new row for this job (-1: none) keeps the rows a job's each, with few out of order."""
        # `job` is the job table's answer for `digest`, taken under the guard with the table unchanged:
        # whether a row holds it already is read from the distances, without a second search.
        if job < 0 or job >= len(self._ids) or digest is None or self._row_of_job(job) >= 0:
            return False
        return job == self._count or len(self._job_of) < _MOVED_MIN + self._count // _MOVED_SHARE

    def _move(self, row: int, job: int) -> None:
        """Note that row `row` (allocated in the arrays) holds job `job`, not its own number's."""
        if job >= len(self._job_delta):
            self._job_delta.extend(bytes(job + 1 - len(self._job_delta)))
        if not self._job_delta[row]:
            self._job_delta[row] = _NONE  # the job of that number has no row yet (it would have a moved one)
        self._moved += 1
        if -_FAR < job - row < _FAR:
            self._row_delta[row], self._job_delta[job] = job - row, row - job
        else:
            self._row_delta[row], self._job_delta[job] = _FAR, _FAR
            self._job_of[row], self._row_of[job] = job, row

    # -- the `IdIndex` it stands for ------------------------------------------

    def _owned(self) -> IdIndex | None:
        """(Under the guard.) The `IdIndex` of its own, made now when the job table's ids changed under it."""
        if self._own is None and self._jobs.digests is not self._ids:
            return self._own_now()
        return self._own

    def _own_now(self) -> IdIndex:
        """(Under the guard.) Become an `IdIndex` of the rows' ids."""
        if self._own is None:
            self._own = IdIndex(self._id_array())
            self._job_of, self._row_of, self._row_delta, self._job_delta = {}, {}, array("b"), array("b")
        return self._own

    def _id_array(self) -> array[int]:
        """(Under the guard.) The rows' ids as a new array."""
        return PatchedIds(self._ids, self._count, self._row_delta, self._job_of).array()


def _job_at(deltas: array[int], far: dict[int, int], row: int) -> int:
    """The job a row holds, from an `IdPrefix`'s distances per row and its far rows."""
    delta = deltas[row]
    return row if not delta else far[row] if delta == _FAR else row + delta


class PatchedIds:
    """The first `count` ids of `ids` with some rows' ids those of other rows (`deltas`: per row, its job's
    distance, or `_FAR`: in `far`, row -> job), as an array section `jobsnapshot.write_sections` writes a
    block at a time (`typecode`, `len`, `chunks`)."""

    typecode = "Q"
    _BLOCK = 1 << 16

    def __init__(self, ids: array[int], count: int, deltas: array[int], far: dict[int, int]) -> None:
        self._ids, self._count, self._deltas, self._far = ids, count, deltas, far

    def __len__(self) -> int:
        return self._count

    def chunks(self) -> Iterator[array[int]]:
        """The ids, a block of rows at a time, in row order."""
        ids, deltas, far = self._ids, self._deltas, self._far
        for start in range(0, self._count, self._BLOCK):
            stop = min(start + self._BLOCK, self._count)
            block, moved = ids[start:stop], deltas[start:stop]
            for row in compress(range(start, stop), moved):  # the rows out of place, found in C
                delta = moved[row - start]
                block[row - start] = ids[far[row] if delta == _FAR else row + delta]
            yield block

    def array(self) -> array[int]:
        """The ids as one array (an `IdPrefix` that becomes an `IdIndex` holds them anyway)."""
        whole = array("Q")
        for block in self.chunks():
            whole.extend(block)
        return whole
