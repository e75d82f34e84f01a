"""A runfile's jobs beside their records: each job's record row, and what the rows say, in C-level passes.

The planner, a launch's final tally, and the fingerprint's summary and
snapshot all ask the same questions of every job of a runfile: has it a
record, in which state, is it ignored. Asked one job at a time (a `Job`, its
id string, a look-up) that is a few microseconds a job: seconds at a million.
Here each job's record row is found once (`refresh`: a look-up only for jobs
that had none), and the questions are answered over byte strings: one byte a
job, its state code (`recordtable.STATE_CODE`) plus `IGNORED_BIT` when
`doit ignore` set it aside; a job without a record reads as pending.

Pure: no I/O.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress, repeat
from operator import add, mul, or_
from typing import overload

from batchrun.runfile.jobtable import Job, JobTable
from batchrun.store.records import NOT_SUCCEEDED, STATES, JobRecord, State, category_of_state
from batchrun.store.recordtable import STATE_CODE, RecordTable

__all__ = ["IGNORED_BIT", "INDEX", "ROW", "JobsWithRecords", "Ledger", "key_table"]

# Job indices and record rows, 4 bytes each (2 billion jobs).
INDEX = "i"
ROW = INDEX
# Added to a job's state code when it is ignored.
IGNORED_BIT = 16
_STATE_OF = State.ALL
_PENDING = STATE_CODE[State.PENDING]
# Every key a job can have: (key, state, ignored).
_KEYS = [(code + bit, state, bool(bit)) for code, state in enumerate(_STATE_OF) for bit in (0, IGNORED_BIT)]


def key_table(wanted: Iterable[tuple[str, bool]]) -> bytes:
    """A `bytes.translate` table mapping the keys of these (state, ignored) pairs to 1, every other byte to 0."""
    table = bytearray(256)
    for state, ignored in wanted:
        table[STATE_CODE[state] + (IGNORED_BIT if ignored else 0)] = 1
    return bytes(table)


class Ledger:
    """The jobs of a runfile (`JobTable`) and the row of each one's record in a `RecordTable`."""

    def __init__(self, jobs: JobTable, records: RecordTable, rows: array[int] | None = None) -> None:
        self.jobs = jobs
        self.records = records
        # Job index -> its record's row, -1 for none (yet); given when known (read back from disk).
        self._rows: array[int] = rows if rows is not None else array(ROW)
        self._generation = jobs.generation
        self._version = -1  # the records' version the rows were last looked up at
        self._deletions = 0  # and how many records had been deleted then
        self._removed: tuple[tuple[int, int, int, int], list[str]] | None = None  # (what it was of, the answer)

    @classmethod
    def of(cls, jobs: Iterable[Job], records: Mapping[str, JobRecord]) -> Ledger:
        """A ledger of any jobs and records (a list, a dict: copied into tables)."""
        table = jobs if isinstance(jobs, JobTable) else JobTable(jobs)
        if not isinstance(records, RecordTable):
            copy = RecordTable()
            for job_id, rec in records.items():
                copy[job_id] = rec
            records = copy
        return cls(table, records)

    @property
    def rows(self) -> array[int]:
        """Each job's record row (-1: none), found for the jobs that had none."""
        self.refresh()
        return self._rows

    def refresh(self) -> None:
        """Find the record rows of jobs that had none: new jobs, and jobs that got a record since."""
        jobs, records, rows = self.jobs, self.records, self._rows
        n = len(jobs)
        known = len(rows)
        grew = known < n
        if jobs.generation != self._generation or len(rows) > n:
            # The table was rebuilt (a followed runfile lost lines): every job anew.
            rows = self._rows = array(ROW, [-1]) * n
            self._generation = jobs.generation
            self._version = -1
            self._deletions = -1
        elif grew:
            rows.extend(repeat(-1, n - len(rows)))
        if records.version == self._version and not grew:
            return  # no record made or deleted since the rows were looked up, and no new job
        # Only the new jobs, unless records were made or deleted since: then every job without one.
        first = known if records.version == self._version else 0
        if records.deletions != self._deletions and len(records):
            # Rows of deleted records (compaction) are looked up again: the job may have a new one.
            self._deletions = records.deletions
            present = b"\0" + bytes(records.present)
            gone = bytes(map(present.__getitem__, map(add, rows, repeat(1))))
            pos = gone.find(0)
            while pos >= 0:
                rows[pos] = -1
                pos = gone.find(0, pos + 1)
        self._version = records.version
        if not len(records):
            return
        keys = jobs.keys
        digests, odd = keys.digests, keys.has_odd()
        pos = _find(rows, -1, first)
        while pos >= 0:
            rows[pos] = records.row_of(keys.text(pos)) if odd else records.row_of_digest(digests[pos])
            pos = _find(rows, -1, pos + 1)

    def record(self, i: int) -> JobRecord | None:
        """Job i's record, None when it has none."""
        return self.records_at((i,))[0]

    def records_at(self, indices: Iterable[int]) -> list[JobRecord | None]:
        """The records of the jobs at `indices` (None: none), the rows brought up to date once for all of them."""
        rows, view = self.rows, self.records.view
        return [view(row) if (row := rows[i]) >= 0 else None for i in indices]

    def keys(self) -> bytes:
        """One byte a job: its record's state code, plus `IGNORED_BIT` when ignored (pending for none)."""
        records = self.records
        if not len(records):
            return bytes([_PENDING]) * len(self.jobs)
        rows = self.rows
        # In record-row order, with the key of "no record" in front, so that row -1 + 1 reads it.
        ignored = records.ignored_flags
        if 1 in ignored:
            by_row = bytes([_PENDING]) + bytes(map(or_, records.state_codes, map(mul, ignored, repeat(IGNORED_BIT))))
        else:
            by_row = bytes([_PENDING]) + records.state_codes
        return bytes(map(by_row.__getitem__, map(add, rows, repeat(1))))

    def indices(self, table: bytes, keys: bytes | None = None) -> array[int]:
        """The indices of jobs whose key `table` (from `key_table`) maps to 1, in order."""
        keys = self.keys() if keys is None else keys
        mask = keys.translate(table)
        if 1 not in mask:
            return array(INDEX)
        return array(INDEX, compress(range(len(keys)), mask))

    def counts(self, keys: bytes | None = None) -> dict[str, int]:
        """How many of the runfile's jobs are in each of `STATES` (`records.category_of`)."""
        keys = self.keys() if keys is None else keys
        counts = dict.fromkeys(STATES, 0)
        for key, state, ignored in _KEYS:
            found = keys.count(key)
            if found:
                counts[category_of_state(state, ignored)] += found
        return counts

    def failed(self, keys: bytes | None = None) -> JobsWithRecords:
        """The jobs that ended without succeeding (`NOT_SUCCEEDED`; not ignored), in runfile order, with their records."""
        wanted = key_table((state, False) for state in NOT_SUCCEEDED)
        return JobsWithRecords(self, self.indices(wanted, keys))

    def removed_ids(self) -> list[str]:
        """The ids of records of no job of the runfile (its line was removed), in record order."""
        rows, records = self.rows, self.records
        referenced = len(rows) - rows.count(-1)
        # Records made since the last answer, with no deletion and the same jobs, that are all jobs'
        # own (as many unreferenced records as then: a launch's new ones) leave the answer as it was.
        state = (records.deletions, len(rows), self._generation, len(records) - referenced)
        if self._removed is not None and self._removed[0] == state:
            return list(self._removed[1])
        removed: list[str] = []
        if referenced != len(records):  # else every record is a job's: the jobs' rows are distinct
            present, keys = records.present, records.keys_index
            removed = [keys.text(row) for row in _missing(rows, len(present)) if present[row]]
        self._removed = (state, removed)
        return list(removed)


class JobsWithRecords(Sequence[tuple[Job, JobRecord]]):
    """Some of a ledger's jobs, each with its record, made when asked for: 4 bytes a job until then.

    A launch's result names every job that failed; as a list of jobs and
    record views that is about 500 bytes a job (70 MB for the 143,000
    failures of a million-line sweep), while its readers print the first
    few and count the rest.
    """

    def __init__(self, ledger: Ledger, indices: array[int]) -> None:
        self._ledger = ledger
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, i: int) -> tuple[Job, JobRecord]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[Job, JobRecord]]: ...
    def __getitem__(self, i: int | slice) -> tuple[Job, JobRecord] | list[tuple[Job, JobRecord]]:
        if isinstance(i, slice):
            return [self._pair(index) for index in self._indices[i]]
        return self._pair(self._indices[i])

    def _pair(self, index: int) -> tuple[Job, JobRecord]:
        ledger = self._ledger
        return ledger.jobs[index], ledger.records.view(ledger.rows[index])


def _missing(rows: array[int], count: int) -> list[int]:
    """The numbers in [0, count) that `rows` (distinct, and -1 for none) does not hold, in order.

    Marked in a byte a number, in C: sorting the rows (a list of a million
    ints, and two more of the gaps) put 80 MB on `status` of a million-line
    runs directory with removed lines.
    """
    held = bytearray(count)
    deque(map(held.__setitem__, filter(_NONE.__ne__, rows), repeat(1)), maxlen=0)
    return list(compress(range(count), held.translate(_NOT)))


# -1: a job without a record; `_NOT` turns each byte 0 to 1 and 1 to 0.
_NONE = -1
_NOT = bytes([1, 0]) + bytes(254)


def _find(rows: array[int], value: int, start: int) -> int:
    """The first index from `start` holding `value`, in C; -1 when none."""
    try:
        return rows.index(value, start)
    except ValueError:
        return -1
