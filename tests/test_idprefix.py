"""`IdPrefix`: a record table's ids held as job indices answers every question as an `IdIndex` of the same rows."""

from __future__ import annotations

import hashlib
import random
from array import array
from pathlib import Path

import pytest

from batchrun.runfile.idindex import IdIndex
from batchrun.runfile.idprefix import IdPrefix, PatchedIds
from batchrun.runfile.parse import parse_commands
from batchrun.store.jobsnapshot import read_sections, write_sections
from batchrun.store.recordtable import RecordTable


def _ids(n: int) -> list[str]:
    return [hashlib.sha256(f"job {i}".encode()).hexdigest()[:16] for i in range(n)]


def _jobs(ids: list[str]) -> IdIndex:
    jobs = IdIndex()
    for job_id in ids:
        jobs.append(job_id)
    return jobs


def _same(prefix: IdPrefix, plain: IdIndex, probes: list[str]) -> None:
    assert len(prefix) == len(plain)
    assert list(prefix.texts()) == list(plain.texts())
    assert list(prefix.texts(3, 9)) == list(plain.texts(3, 9))
    assert list(prefix.digests) == list(plain.digests)
    for job_id in probes:
        assert prefix.row_of(job_id) == plain.row_of(job_id), job_id
        assert prefix.rows_of(job_id) == plain.rows_of(job_id), job_id
    for row in range(len(plain)):
        assert prefix.text(row) == plain.text(row)
    sections, side = prefix.dump()
    restored = IdIndex.restore({name: values.array() if isinstance(values, PatchedIds) else values for name, values in sections.items()}, side)
    assert list(restored.texts()) == list(plain.texts())
    assert all(restored.row_of(job_id) == plain.row_of(job_id) for job_id in probes)


ORDERS = ["in order", "neighbours swapped", "random", "a job twice", "an odd id", "a job of no runfile"]


def _in_order(ids: list[str], order: str) -> list[str]:
    """`ids` as a journal may add them (one of `ORDERS`)."""
    sequence = list(ids)
    if order == "neighbours swapped":
        for i in range(0, len(ids) - 10, 17):
            sequence[i], sequence[i + 1] = sequence[i + 1], sequence[i]
    elif order == "random":
        random.Random(7).shuffle(sequence)
    elif order == "a job twice":
        sequence.insert(100, sequence[40])
    elif order == "an odd id":
        sequence.insert(120, "not-a-hex-id")
    elif order == "a job of no runfile":
        sequence.insert(60, _ids(400)[350])
    return sequence


@pytest.mark.parametrize("order", ORDERS)
def test_rows_added_in_any_order_read_as_an_idindex_of_the_same_rows(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("batchrun.runfile.idprefix._MOVED_MIN", 16)  # past 16 rows out of order (of 250): an IdIndex
    ids = _ids(300)
    jobs = _jobs(ids)
    sequence = _in_order(ids[:250], order)
    prefix, plain = IdPrefix(jobs), IdIndex()
    for job_id in sequence:
        assert prefix.append(job_id) == plain.append(job_id)
    _same(prefix, plain, ids + ["not-a-hex-id", _ids(400)[350], "0" * 16])
    # In order, or nearly: no ids of its own; otherwise it became the index it stands for.
    assert (prefix._own is None) == (order in ("in order", "neighbours swapped"))


@pytest.mark.parametrize("order", ORDERS)
def test_row_or_append_finds_or_adds_the_row_row_of_then_append_would(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("batchrun.runfile.idprefix._MOVED_MIN", 16)
    ids = _ids(300)
    jobs = _jobs(ids)
    sequence = _in_order(ids[:250], order)
    # Each id asked for twice, the second time at once or a little later: found, not added again.
    asked = [job_id for i, job_id in enumerate(sequence) for job_id in ([job_id, job_id] if i % 3 == 0 else [job_id, sequence[i // 2]])]
    prefix, plain, twice = IdPrefix(jobs), IdIndex(), IdIndex()
    for job_id in asked:
        expected = (row, False) if (row := plain.row_of(job_id)) >= 0 else (plain.append(job_id), True)
        assert prefix.row_or_append(job_id) == expected, job_id
        assert twice.row_or_append(job_id) == expected, job_id
    _same(prefix, plain, ids + ["not-a-hex-id", _ids(400)[350], "0" * 16])
    assert list(twice.texts()) == list(plain.texts())
    assert (prefix._own is None) == (order in ("in order", "neighbours swapped", "a job twice"))


def test_a_job_table_changed_under_it_leaves_its_rows_as_they_were() -> None:
    ids = _ids(50)
    jobs = _jobs(ids)
    prefix = IdPrefix(jobs)
    for job_id in ids[:30]:
        prefix.append(job_id)
    jobs.truncate(10)  # a followed runfile that lost lines: the job table's ids change
    jobs.append(_ids(60)[55])
    assert list(prefix.texts()) == ids[:30]
    assert prefix.row_of(ids[25]) == 25 and prefix.row_of(_ids(60)[55]) == -1
    assert prefix.append(ids[40]) == 30 and prefix.row_of(ids[40]) == 30


def test_follow_takes_rows_that_are_the_jobs_nearly_in_order_and_no_others() -> None:
    ids = _ids(100)
    jobs = _jobs(ids)
    swapped = ids[:40]
    swapped[5], swapped[6] = swapped[6], swapped[5]
    prefix = IdPrefix.follow(_jobs(swapped), jobs, True)
    assert prefix is not None and list(prefix.texts()) == swapped and prefix.row_of(ids[5]) == 6
    assert IdPrefix.follow(_jobs(swapped), jobs, False) is None  # a job table whose ids repeat
    assert IdPrefix.follow(_jobs(ids[:40] + [ids[3]]), jobs, True) is None  # a job's second row
    assert IdPrefix.follow(_jobs([*ids[:10], _ids(200)[150]]), jobs, True) is None  # a record of no job
    assert IdPrefix.follow(_jobs(ids + ids[:1]), jobs, True) is None  # more rows than jobs


def test_a_record_table_that_follows_its_jobs_replays_as_one_that_does_not() -> None:
    ids = _ids(40)
    jobs, _ = parse_commands("".join(f"job {i}\n" for i in range(40)).encode())
    order = ids[:30]
    order[3], order[4] = order[4], order[3]
    tables = [RecordTable(), RecordTable()]
    assert tables[0].follow(jobs)
    for table in tables:
        for n, job_id in enumerate(order):
            table.start(job_id, 1, 100.0 + n, 0, "host")
            table.end(job_id, 1, n % 3, 100.0 + n, 101.0 + n)
        del table[order[7]]
        table.start(order[7], 2, 200.0, 0, "host")  # a deleted record's job starts again: a new row
    keys = tables[0].keys_index
    assert isinstance(keys, IdPrefix) and keys._own is not None  # a job's second row: an IdIndex of its own now
    fields = [[(k, rec.job_id, rec.status, rec.state, rec.attempts, rec.start) for k, rec in table.items()] for table in tables]
    assert fields[0] == fields[1] and len(fields[0]) == 30


class _ChangingJobs(IdIndex):
    """A job table that changes (as a followed runfile's does) in the middle of a look-up."""

    __slots__ = ("change",)

    def row_of_digest(self, digest: int) -> int:
        row = super().row_of_digest(digest)
        change, self.change = getattr(self, "change", None), None
        if change is not None:
            change()
        return row


def _changing(ids: list[str]) -> tuple[_ChangingJobs, IdPrefix]:
    """A job table of `ids` that can change mid-search, and rows of its jobs 1, 0, 2 following it."""
    jobs = _ChangingJobs()
    for job_id in ids:
        jobs.append(job_id)
    prefix = IdPrefix.follow(_jobs([ids[1], ids[0], ids[2]]), jobs, True)
    assert prefix is not None
    return jobs, prefix


def test_a_job_table_changed_during_a_look_up_gives_the_rows_own_answer() -> None:
    ids = _ids(6)
    jobs, prefix = _changing(ids)
    assert prefix.row_of(ids[0]) == 1
    jobs.change = lambda: (jobs.truncate(0), [jobs.append(job_id) for job_id in reversed(ids)])
    assert prefix.row_of(ids[0]) == 1 and prefix.row_of(ids[1]) == 0 and prefix.row_of(ids[4]) == -1
    assert prefix.append(ids[4]) == 3 and list(prefix.texts()) == [ids[1], ids[0], ids[2], ids[4]]


def test_a_job_table_changed_during_row_or_append_gives_the_rows_own_answer() -> None:
    ids = _ids(6)
    jobs, prefix = _changing(ids)
    # The search answers for the job table as it was (ids[0] is its job 0, held by row 1); the rows'
    # own index, made once the change is seen, answers instead.
    jobs.change = lambda: (jobs.truncate(0), [jobs.append(job_id) for job_id in reversed(ids)])
    assert prefix.row_or_append(ids[0]) == (1, False)
    jobs.change = lambda: (jobs.truncate(0), [jobs.append(job_id) for job_id in ids])
    assert prefix.row_or_append(ids[5]) == (3, True)
    assert prefix.row_or_append(ids[5]) == (3, False) and list(prefix.texts()) == [ids[1], ids[0], ids[2], ids[5]]


def test_rows_out_of_order_are_written_to_the_snapshot_a_block_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PatchedIds, "_BLOCK", 7)  # moved rows in several blocks, and at their edges
    ids = _ids(50)
    order = ids[:45]
    for i in (0, 6, 13, 20, 43):
        order[i], order[i + 1] = order[i + 1], order[i]
    prefix = IdPrefix(_jobs(ids))
    for job_id in order:
        prefix.append(job_id)
    sections, side = prefix.dump()
    assert isinstance(sections["ids"], PatchedIds)
    assert write_sections(tmp_path, "token", {"before": array("B", b"xyz"), "keys.ids": sections["ids"], "after": array("q", [5, -6])}, side)
    read = read_sections(tmp_path, "token")
    assert read is not None
    assert [f"{digest:016x}" for digest in read[0]["keys.ids"]] == order
    assert read[0]["before"].tobytes() == b"xyz" and list(read[0]["after"]) == [5, -6]
    assert list(IdIndex.restore({"ids": read[0]["keys.ids"]}, read[1]).texts()) == order


@pytest.mark.parametrize("far", [False, True], ids=["near", "some-far"])
def test_rows_a_few_places_out_of_order_cost_no_dict_entries(far: bool) -> None:
    # At -j 8 a tenth of the rows hold a neighbour's job (workers race to their start lines): each is a byte
    # per row and per job, not two dict entries, and never turns the prefix into an index of its own.
    # Jobs further than a byte reaches (a retry, an adopted job) take dict entries, and still read the same.
    ids = _ids(3000)
    jobs = _jobs(ids)
    rng = random.Random(3)
    sequence = list(ids[:2800])
    for i in range(0, 2790, 3):
        j = i + rng.randrange(8)
        sequence[i], sequence[j] = sequence[j], sequence[i]
    if far:
        sequence.insert(2500, sequence.pop(10))  # job 10's row is the 2,500th
        sequence.insert(5, sequence.pop(1500))  # job 1,500's row is the 6th
        sequence.append(ids[2990])  # a job beyond the rows, far from its row
    prefix, plain = IdPrefix(jobs), IdIndex()
    for job_id in sequence:
        assert prefix.append(job_id) == plain.append(job_id)
    assert prefix._own is None and len(prefix._job_of) == (3 if far else 0)
    assert sum(a != b for a, b in zip(sequence, ids, strict=False)) > len(sequence) // 3
    probes = ids + ["0" * 16]
    _same(prefix, plain, probes)
    follows = IdPrefix.follow(plain, jobs, True)
    assert follows is not None and len(follows._job_of) == (3 if far else 0)
    _same(follows, plain, probes)
