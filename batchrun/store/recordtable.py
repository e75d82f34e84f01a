"""The records of a journal kept compactly: a column per field, not an object per job.

A `JobRecord` object per job costs about 400 bytes: 400 MB for a million.
`RecordTable` keeps each field of `records.FIELDS` in a column (`columns`:
about 31 bytes a finished job in all), finds a job's row through an `IdIndex`
(or, in a launch, the job table's: `follow`), and hands out `RecordView`s,
`JobRecord`s that read and write their row. Values a column cannot hold go to
a small dict beside it, so nothing a journal line can say is lost.

It is a `MutableMapping[str, JobRecord]` in the order jobs first appear in
the journal, as the dict it replaces was; the journal's line kinds change it
through its transitions (`start`, `end`, ...), which `journal.replay` and
`Journal.record_*` both call: one place says what each line does to a record.

Pure: no I/O (the journal reads and writes the file).
"""

from __future__ import annotations

from array import array
from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from itertools import compress
from typing import Any

from batchrun.runfile.idindex import IdIndex, twin_of
from batchrun.runfile.idprefix import IdPrefix
from batchrun.runfile.jobtable import JobTable
from batchrun.store.columns import COLUMN_OF_KIND, RUNNING_CODE, STATE_CODE, Codes, Floats, Ints, Live, Names, Sections, Unread
from batchrun.store.recent import ABSENT, RecentRows
from batchrun.store.records import FIELDS, REQUEUE_STATUS, USAGE_FIELDS, JobRecord, State
from batchrun.store.recordview import RecordView

__all__ = ["KEEP", "STATE_CODE", "RecordTable", "RecordView"]

# Sentinel: an end line that does not name a host (or a code version) leaves it as it was.
KEEP: Any = object()


class _Rows(MutableMapping[str, JobRecord]):
    """A `RecordTable`'s rows and columns: the mapping, and the rows by id and by state."""

    def __init__(self) -> None:
        self._keys: IdIndex | IdPrefix = IdIndex()
        # 0 for a row whose record was deleted (kept as a row: views of it stay valid).
        self._present = bytearray()
        # Rows of the jobs looked up last, by id (a running job's record: ten times between its start and end
        # lines). Sound: a row never changes its id, one present row at most holds an id, rows are only added.
        self._recent = RecentRows()
        self._count = 0
        # Count up when a row is added or a record deleted: a `ledger.Ledger` looks rows up again then.
        self.version = 0
        self.deletions = 0
        self.columns: dict[str, Any] = {field.name: COLUMN_OF_KIND[field.kind](field.default) for field in FIELDS}
        self._bind_columns()

    def _bind_columns(self) -> None:
        """Name the columns the journal's transitions use (after they were made or read back)."""
        columns = self.columns
        self._state: bytearray = columns["state"].values
        self._status: Ints = columns["status"]
        self._start: Floats = columns["start"]
        self._end: Floats = columns["end"]
        self._attempts: Ints = columns["attempts"]
        self._slot: Live = columns["slot"]
        self._host: Names = columns["host"]
        self._holds: Live = columns["holds"]
        self._ref: Live = columns["ref"]
        self._codes: Codes = columns["exit_codes"]
        self._requeues: Ints = columns["requeues"]
        self._code: Names = columns["code"]
        self._usage: tuple[Any, Any, Any, Any] = tuple(columns[name] for name in USAGE_FIELDS)  # Ints, Floats, Floats, Ints (or Unread)
        self._ignored: bytearray = columns["ignored"].values
        self._live = [column for field, column in zip(FIELDS, columns.values(), strict=True) if field.kind == "live"]

    # -- the mapping ---------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return compress(self._keys.texts(), self._present)

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self.row_of(job_id) >= 0

    def __getitem__(self, job_id: str) -> JobRecord:
        row = self.row_of(job_id)
        if row < 0:
            raise KeyError(job_id)
        return RecordView(self, row)

    def get(self, job_id: str, default: Any = None) -> Any:
        return RecordView(self, row) if (row := self.row_of(job_id)) >= 0 else default

    def __setitem__(self, job_id: str, rec: JobRecord) -> None:
        row = self._row_for(job_id)
        for field in FIELDS:
            self.columns[field.name].set(row, getattr(rec, field.name))

    def __delitem__(self, job_id: str) -> None:
        row = self.row_of(job_id)
        if row < 0:
            raise KeyError(job_id)
        self._clear_row(row)
        self._present[row] = 0
        self._count -= 1
        self.version += 1
        self.deletions += 1

    def values(self) -> ValuesView[JobRecord]:
        return _Values(self)

    def items(self) -> ItemsView[str, JobRecord]:
        return _Items(self)

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"RecordTable({self._count} records)"

    # -- rows -----------------------------------------------------------------

    @property
    def keys_index(self) -> IdIndex | IdPrefix:
        """The rows' ids (do not change it)."""
        return self._keys

    def follow(self, jobs: JobTable) -> bool:
        """Hold the rows' ids as the runfile's jobs' (`idprefix`) while rows are added in their order: whether it does."""
        prefix = IdPrefix.follow(self._keys, jobs.keys, not jobs.ids_repeat()) if isinstance(self._keys, IdIndex) else None
        self._keys = prefix if prefix is not None else self._keys  # (an empty one is false: no `or`)
        return isinstance(self._keys, IdPrefix)

    @property
    def present(self) -> bytearray:
        """1 for each row that holds a record (do not change it)."""
        return self._present

    @property
    def state_codes(self) -> bytearray:
        """Each row's state as its `STATE_CODE` (do not change it)."""
        return self._state

    @property
    def ignored_flags(self) -> bytearray:
        """1 for each row `doit ignore` set aside (do not change it)."""
        return self._ignored

    def rows(self) -> Iterator[int]:
        """The rows that hold records, in order."""
        present = self._present
        return (row for row in range(len(present)) if present[row])

    def row_of(self, job_id: str) -> int:
        """The row of a job's record; -1 when it has none."""
        rows = len(self._present)  # before the search: a row added meanwhile (maybe this job's) voids an absence it finds
        row = self._recent.get(job_id, rows)
        if row >= 0 and self._present[row]:
            return row
        if row == ABSENT:
            return -1  # a job about to start is looked up four times (doit's checks, its attempt): one search
        row = self._keys.row_of(job_id)
        if row >= 0 and not self._present[row]:
            # A deleted record's row: the job may have a later one.
            row = next((row for row in self._keys.rows_of(job_id) if self._present[row]), -1)
        self._recent.note(job_id, row, rows)
        return row

    def row_of_digest(self, digest: int) -> int:
        """The row of the record of the job whose id is this integer; -1 when none."""
        row = self._keys.row_of_digest(digest)
        if row < 0 or self._present[row]:
            return row
        return next((row for row in self._keys.rows_of_digest(digest) if self._present[row]), -1)

    def view(self, row: int) -> RecordView:
        return RecordView(self, row)

    def running_rows(self) -> list[int]:
        """The rows of records in state running, found in C (`bytearray.find`)."""
        found, state, present = [], self._state, self._present
        pos = state.find(RUNNING_CODE)
        while pos >= 0:
            if present[pos]:
                found.append(pos)
            pos = state.find(RUNNING_CODE, pos + 1)
        return found

    def _row_for(self, job_id: str) -> int:
        """The row of a job's record, made (pending) when it has none.

        A new record takes a new row at the end, as a new key goes last in a
        dict, even when the job had a record once (deleted by compaction).
        """
        row = self._recent.get(job_id)
        if row >= 0 and self._present[row]:
            return row
        row, new = self._keys.row_or_append(job_id)
        if not new:
            if not self._present[row]:
                # A deleted record's row: the job may have a later one; else a new row, as below.
                row = self.row_of(job_id)
                if row < 0:
                    return self._new_row(job_id, self._keys.append(job_id))
            self._recent.note(job_id, row)
            return row
        return self._new_row(job_id, row)

    def _new_row(self, job_id: str, row: int) -> int:
        """Make the columns' entries of a row just added to the ids (pending); its number."""
        self._present.append(1)
        for column in self.columns.values():
            column.append()
        self._count += 1
        self.version += 1
        self._recent.note(job_id, row)  # a job's start line makes its row: the lines after it find it at once
        return row

    def _clear_row(self, row: int) -> None:
        for field in FIELDS:
            self.columns[field.name].set(row, [] if field.kind == "codes" else field.default)

    def _stop_running(self, row: int) -> None:
        for column in self._live:
            column.values.pop(row, None)


class RecordTable(_Rows):
    """The records of a journal by job id, one row each, in the order jobs first appeared."""

    @classmethod
    def following(cls, jobs: JobTable) -> RecordTable:
        """An empty table whose rows will follow the runfile's jobs (`follow`), for a replay of a whole journal.

        A journal's rows come nearly in runfile order, as a launch started
        them: held as the jobs' indices, each new row takes one search of
        the job table, and no sorted index of their own ids is built (its
        sorts peaked at about 40 MB more at a million records).
        """
        table = cls()
        table.follow(jobs)
        return table

    # -- on disk (`fingerprint`'s snapshot) -----------------------------------------

    def dump(self) -> tuple[Sections, dict[str, Any]]:
        """The arrays, by name, and the rest (JSON-able) that `restore` takes back."""
        return _dump(self)

    @classmethod
    def restore(cls, sections: dict[str, array[Any]], side: dict[str, Any], twin: IdIndex | None = None) -> RecordTable:
        """The table `dump` described (read back from disk: the caller checked the bytes); its ids `twin`'s when the same.

        Raises:
            ValueError, KeyError, TypeError: it was written with other fields or states.
        """
        table = cls()
        _load(table, sections, side, twin)
        return table

    def _column_arrays(self) -> Iterator[Any]:
        yield from (values for column in self.columns.values() if not isinstance(column, Unread) for values in column.dump()[0].values())

    # -- what each journal line does (the line format is in `journal`) ---------

    def start(self, job_id: str, attempt: int, start: float, slot: int, host: str, holds: str | None = None, code: str | None = None) -> int:
        """`S`: about to start, holding `holds` beside its slot, under code version `code`. Returns the row."""
        row = self._row_for(job_id)
        self._state[row] = RUNNING_CODE
        self._attempts.set(row, attempt)
        self._start.set(row, start)
        self._slot.set(row, slot)
        self._host.set(row, host)
        self._holds.set(row, holds or None)
        self._code.set(row, code)
        # What it used is the attempt's own, once it ends (`used`).
        for column in (self._status, self._end, self._ref, *self._usage):
            column.set(row, None)
        return row

    def used(self, job_id: str, max_rss_kb: int, user_cpu_s: float, sys_cpu_s: float, max_gpu_mem_mb: int | None) -> int:
        """`U`: what the attempt used (`records.USAGE_FIELDS`), just before its end."""
        row = self._row_for(job_id)
        rss, user, system, gpu = self._usage
        rss.set(row, max_rss_kb)
        user.set(row, user_cpu_s)
        system.set(row, sys_cpu_s)
        gpu.set(row, max_gpu_mem_mb)
        return row

    def started(self, job_id: str, ref: str) -> int:
        """`P`: started, with the executor's reference."""
        row = self._row_for(job_id)
        self._ref.set(row, ref)
        return row

    def end(self, job_id: str, attempt: int, status: int, start: float, end: float, state: str | None = None, host: Any = KEEP, code: Any = KEEP) -> int:
        """`E`: ran to its end with an exit status (the state: succeeded or failed by it, unless named); no requeue pending now."""
        row = self._row_for(job_id)
        self._attempts.set(row, attempt)
        self._status.set(row, status)
        self._start.set(row, start)
        self._end.set(row, end)
        self._state[row] = STATE_CODE[state] if state else STATE_CODE[State.SUCCEEDED if status == 0 else State.FAILED]
        if host is not KEEP:
            self._host.set(row, host)
        if code is not KEEP:
            self._code.set(row, code)
        self._codes.add(row, status)
        self._requeues.set(row, 0)
        self._stop_running(row)
        return row

    def stop(self, job_id: str, attempt: int, start: float, end: float, state: str, code: Any = KEEP) -> int:
        """`I`: stopped before its end (it runs again, unless killed or stopped on purpose); a requeue is counted, its status 75 kept.

        As `JobRecord.ended_unfinished` does to a record standing alone.
        """
        row = self._row_for(job_id)
        self._attempts.set(row, attempt)
        self._start.set(row, start)
        self._end.set(row, end)
        self._state[row] = STATE_CODE[state]
        self._status.set(row, None)
        if code is not KEEP:
            self._code.set(row, code)
        if state == State.REQUEUED:
            self._requeues.set(row, (self._requeues.get(row) or 0) + 1)
            self._codes.add(row, REQUEUE_STATUS)
        else:
            self._codes.add(row, None)
        self._stop_running(row)
        return row

    def reset(self, job_id: str) -> int:
        """`R`: forgotten; a fresh record that keeps only its attempts and their exit codes."""
        row = self._row_for(job_id)
        attempts, codes = self._attempts.get(row), self._codes.get(row)
        self._clear_row(row)
        self._attempts.set(row, attempts)
        self._codes.set(row, codes)
        return row

    def ignore(self, job_id: str) -> int:
        """`X`: set aside by `doit ignore`."""
        row = self._row_for(job_id)
        self._ignored[row] = 1
        return row


class _Values(ValuesView[JobRecord]):
    def __init__(self, table: _Rows) -> None:
        super().__init__(table)
        self._table = table

    def __iter__(self) -> Iterator[JobRecord]:
        return (RecordView(self._table, row) for row in self._table.rows())


class _Items(ItemsView[str, JobRecord]):
    def __init__(self, table: _Rows) -> None:
        super().__init__(table)
        self._table = table

    def __iter__(self) -> Iterator[tuple[str, JobRecord]]:
        return zip(iter(self._table), self._table.values(), strict=True)


def _dump(table: RecordTable) -> tuple[Sections, dict[str, Any]]:
    """`RecordTable.dump`: its keys, presence and columns."""
    sections, keys_side = table._keys.dump()
    out: Sections = {f"keys.{name}": column for name, column in sections.items()}
    out["present"] = table._present  # its bytes as they are: the snapshot writer takes any buffer (a copy is 1 MB at a million)
    side: dict[str, Any] = {"keys": keys_side, "fields": [field.name for field in FIELDS], "columns": {}}
    for name, column in table.columns.items():
        parts, extra = column.dump()
        out.update({f"{name}.{part}" if part else name: values for part, values in parts.items()})
        side["columns"][name] = extra
    return out, side


def _load(table: RecordTable, sections: dict[str, array[Any]], side: dict[str, Any], twin: IdIndex | None) -> None:
    """`RecordTable.restore`: an empty table's keys and columns as `dump` wrote them."""
    if side["fields"] != [field.name for field in FIELDS]:
        raise ValueError("the record fields are not this version's")
    keys = IdIndex.restore({name[5:]: column for name, column in sections.items() if name.startswith("keys.")}, side["keys"])
    table._keys = twin_of(keys, twin) if twin is not None else keys
    table._present = bytearray(sections["present"])
    rows = len(table._keys)
    for name, column in table.columns.items():
        parts = {key[len(name) + 1 :] if key != name else "": values for key, values in sections.items() if key == name or key.startswith(f"{name}.")}
        if not parts and name in USAGE_FIELDS:
            table.columns[name] = Unread(column, rows)  # left unread by a read that shows none of it (`resume.read_resume`)
            continue
        column.load(parts, side["columns"][name])
    table._bind_columns()
    if len(table._present) != rows or any(len(values) != rows for values in table._column_arrays()):
        raise ValueError("the columns are not all as long")
    table._count = rows - table._present.count(0)
