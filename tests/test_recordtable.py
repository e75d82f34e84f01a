"""A record table remembers the ids it just found absent: never past a record made for one (`store.recordtable`)."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.runfile.jobtable import Job, JobTable
from batchrun.store.recordtable import RecordTable

A, B = "a" * 16, "b" * 16


@pytest.fixture(params=["own ids", "runfile's ids"])
def table(request: pytest.FixtureRequest) -> RecordTable:
    if request.param == "own ids":
        return RecordTable()
    # Rows held as the runfile's job indices (`idprefix`), as a launch's table is.
    ids = [A, B, "c" * 16, *(f"{n:016x}" for n in range(3000))]
    return RecordTable.following(JobTable([Job(f"true {n}", job_id, n + 1) for n, job_id in enumerate(ids)]))


def _searches(table: RecordTable, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    searched: list[str] = []
    kind = type(table.keys_index)  # (slotted: its class's method is replaced)
    real = kind.row_of
    monkeypatch.setattr(kind, "row_of", lambda keys, job_id: searched.append(job_id) or real(keys, job_id))
    return searched


def test_an_id_found_absent_is_not_searched_again_until_a_row_is_added(table: RecordTable, monkeypatch: pytest.MonkeyPatch) -> None:
    table.start(B, 1, 1.0, 0, "h")
    searched = _searches(table, monkeypatch)
    assert table.get(A) is None and A not in table and table.row_of(A) == -1
    assert searched == [A]  # a job about to start is asked for four times: one search
    table.start(B, 2, 2.0, 0, "h")  # a new attempt of a job with a record adds no row: still absent
    assert table.get(A) is None and searched == [A]


def test_a_record_made_after_an_id_was_found_absent_is_found(table: RecordTable) -> None:
    assert table.get(A) is None
    row = table.start(A, 1, 1.0, 0, "h")
    assert table.row_of(A) == row and table[A].attempts == 1
    assert table.get(B) is None
    table.start("c" * 16, 1, 1.0, 1, "h")  # another job's row voids B's absence too
    row = table.start(B, 1, 1.0, 0, "h")
    assert table.row_of(B) == row


def test_a_record_made_while_the_search_ran_is_found_afterwards(table: RecordTable, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread makes A's record between the search (which saw no A) and its note: the absence noted must not stand."""
    kind = type(table.keys_index)
    real = kind.row_of
    made: list[int] = []

    def search_then_race(keys: Any, job_id: str) -> int:
        found = real(keys, job_id)
        if not made:
            made.append(-1)  # (the record's own look-ups search as they would)
            made[0] = table.start(A, 1, 1.0, 0, "h")  # the other thread, at the worst instant
        return found

    monkeypatch.setattr(kind, "row_of", search_then_race)
    assert table.row_of(A) == -1  # what the search saw
    assert table.row_of(A) == made[0] and table.get(A) is not None


def test_a_deleted_record_stays_absent_and_a_new_one_for_the_id_is_found(table: RecordTable) -> None:
    table.start(A, 1, 1.0, 0, "h")
    del table[A]
    assert table.get(A) is None and table.get(A) is None
    row = table.start(A, 1, 2.0, 0, "h")
    assert table.row_of(A) == row and table[A].start == 2.0


def test_many_absent_ids_then_their_records(table: RecordTable) -> None:
    ids = [f"{n:016x}" for n in range(3000)]  # more than the remembered rows hold
    assert all(table.get(job_id) is None for job_id in ids)
    rows = [table.start(job_id, 1, 1.0, 0, "h") for job_id in ids]
    assert [table.row_of(job_id) for job_id in ids] == rows
