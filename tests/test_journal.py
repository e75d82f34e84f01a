"""Unit tests of the append-only journal: replay, torn lines, corruption, compaction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchrun.errors import MetadataError
from batchrun.store.journal import Journal
from batchrun.store.records import FIELDS, JobRecord, State
from batchrun.store.recordtable import RecordTable


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    j.record_start("a" * 16, 1, 10.0, 0, "host")
    j.record_ref("a" * 16, 1, "123")
    j.record_end("a" * 16, 1, 0, 10.0, 12.5)
    j.record_start("b" * 16, 1, 11.0, 1, "host")
    j.record_end("b" * 16, 1, 3, 11.0, 11.5)
    j.record_start("c" * 16, 1, 11.0, 1, "host")
    j.close()
    again = Journal(tmp_path)
    again.load()
    assert again.records["a" * 16].state == State.SUCCEEDED
    assert again.records["a" * 16].runtime == pytest.approx(2.5)
    assert again.records["b" * 16].state == State.FAILED
    assert again.records["b" * 16].status == 3
    assert again.records["c" * 16].state == State.RUNNING


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "jobs.journal").write_text("E aaaaaaaaaaaaaaaa 1 0 1.0 2.0\nE bbbbbbbbbbbbbbbb 1 0 1.")
    j = Journal(tmp_path)
    j.load()
    assert set(j.records) == {"a" * 16}


def test_a_corrupt_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.journal").write_text("E aaaaaaaaaaaaaaaa 1 0 1.0 2.0\ngarbage here\nE bbbbbbbbbbbbbbbb 1 0 1.0 2.0\n")
    with pytest.raises(MetadataError, match=r"jobs.journal:2: corrupt job journal line"):
        Journal(tmp_path).load()


def test_reset_forgets_and_compaction_keeps_the_latest_state(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    for _ in range(3):
        j.record_start("a" * 16, 1, 1.0, 0, "h")
        j.record_end("a" * 16, 1, 0, 1.0, 2.0)
    j.record_reset(["a" * 16])
    j.record_start("b" * 16, 1, 1.0, 0, "h")
    j.record_unfinished("b" * 16, 1, 1.0, 2.0)
    j.close()
    j._lines = 10_000  # pretend it grew long
    j.compact()
    again = Journal(tmp_path)
    again.load()
    assert again.records["b" * 16].state == State.INTERRUPTED
    assert "a" * 16 not in again.records or again.records["a" * 16].state == State.PENDING
    assert len((tmp_path / "jobs.journal").read_text().splitlines()) == 1


def test_compaction_keeps_the_host_and_times_round_trip(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    rec = j.record_start("a" * 16, 1, 10.123456789, 0, "node7")
    assert rec.start == 10.123457  # as the journal's text gives it back
    j.record_end("a" * 16, 1, 0, 10.123456789, 12.5)
    j.close()
    j._lines = 10_000
    j.compact()
    again = Journal(tmp_path)
    again.load()
    assert again.records["a" * 16].host == "node7"
    assert again.records["a" * 16].start == rec.start


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe\x00garbage\n", b"E aaaaaaaaaaaaaaaa 1 0 1.0 2.0 bogus-state\n", b"S bbbbbbbbbbbbbbbb\n", b"\xc3\x28 not utf-8\n"],
)
def test_garbage_in_the_middle_is_one_error_line_naming_file_and_line(tmp_path: Path, garbage: bytes) -> None:
    (tmp_path / "jobs.journal").write_bytes(b"E aaaaaaaaaaaaaaaa 1 0 1.0 2.0\n" + garbage + b"E cccccccccccccccc 1 0 1.0 2.0\n")
    j = Journal(tmp_path)
    with pytest.raises(MetadataError) as err:
        j.load()
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'jobs.journal'}:2: corrupt job journal line ")
    assert "\n" not in message and message.isascii()


def test_a_garbage_tail_after_a_crash_is_recovered_and_cut_off(tmp_path: Path) -> None:
    # A power loss can leave zeros or half a line of any bytes after the last newline.
    (tmp_path / "jobs.journal").write_bytes(b"E aaaaaaaaaaaaaaaa 1 0 1.0 2.0\n\n" + b"\x00" * 64 + b"\xc3\x28 torn")
    j = Journal(tmp_path)
    j.load()
    assert set(j.records) == {"a" * 16}
    j.open()
    j.record_ignore(["b" * 16])
    j.close()
    assert (tmp_path / "jobs.journal").read_bytes() == b"E aaaaaaaaaaaaaaaa 1 0 1.0 2.0\n\nX bbbbbbbbbbbbbbbb\n"


def test_ignored_jobs_replay_compact_and_are_cleared_by_a_reset(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    j.record_end("a" * 16, 1, 0, 1.0, 2.0)
    j.record_ignore(["a" * 16, "b" * 16])
    for _ in range(1200):
        j.record_ref("c" * 16, 1, "1")  # grow the journal past compaction's threshold
    j.close()
    j.compact()
    assert (tmp_path / "jobs.journal").read_text().count("X ") == 2
    again = Journal(tmp_path)
    again.load()
    assert again.records["a" * 16].ignored and again.records["a" * 16].state == State.SUCCEEDED
    assert again.records["b" * 16].ignored and again.records["b" * 16].state == State.PENDING
    again.open()
    again.record_reset(["a" * 16])
    again.close()
    last = Journal(tmp_path)
    last.load()
    assert not last.records["a" * 16].ignored and last.records["b" * 16].ignored


@pytest.mark.parametrize("command", ["launch", "status", "plan"])
def test_the_cli_reports_a_corrupt_journal_in_one_line_with_exit_2(command: str, workdir: Path, run_cli: Callable[..., tuple[int, str, str]]) -> None:
    (workdir / "exp.runfile").write_text("echo a\n")
    assert run_cli("launch", "exp.runfile", "-q")[0] == 0
    journal = workdir / "runs" / "exp" / "jobs.journal"
    bad = journal.read_bytes().count(b"\n") + 1  # the line after the launch's
    with open(journal, "ab") as f:
        f.write(b"\xff\xfe\x00 garbage\nE aaaaaaaaaaaaaaaa 1 0 1.0 2.0\n")
    code, _, err = run_cli(command, "exp.runfile")
    assert code == 2
    assert err == f"batchrun: error: {journal}:{bad}: corrupt job journal line '\\xff\\xfe\\x00 garbage'; remove that line (jobs it recorded will run again)\n"


def test_killed_and_stopped_jobs_replay_and_survive_compaction(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    for job_id, state in (("k" * 16, State.KILLED), ("s" * 16, State.STOPPED)):
        j.record_start(job_id, 1, 10.0, 0, "host")
        j.record_unfinished(job_id, 1, 10.0, 11.0, state)
    j.close()
    for _ in range(2):
        again = Journal(tmp_path)
        again.load()
        assert (again.records["k" * 16].state, again.records["s" * 16].state) == (State.KILLED, State.STOPPED)
        assert again.records["k" * 16].exit_codes == [None]
        assert not again.records["k" * 16].finished and State.KILLED in State.ENDED
        again._lines = 10_000  # long enough to be compacted
        again.compact()


def _fields(rec: JobRecord) -> dict[str, object]:
    """Every field of a record the journal keeps past a job's run (what only a running job has aside)."""
    return {field.name: getattr(rec, field.name) for field in FIELDS if field.kind != "live"}


def test_requeues_usage_and_code_version_are_the_same_written_replayed_compacted_and_restored(tmp_path: Path) -> None:
    """The record table carries every field of a record (issue 24's with issue 28's store): what the journal's
    methods leave in memory is what a replay, a replay of the compacted file and the resume snapshot's copy give."""
    j = Journal(tmp_path)
    j.open()
    a, b, c = "a" * 16, "b" * 16, "c" * 16
    # a: requeued twice, then ran to its end under another code version (its requeue count is spent).
    j.record_start(a, 1, 10.0, 0, "node1", "gpu=0;cpus=2", "v1")
    j.record_usage(a, 1, (2048, 0.1234, 0.5), 300)
    j.record_unfinished(a, 1, 10.0, 11.0, State.REQUEUED)
    j.record_start(a, 2, 12.0, 0, "node1", None, "v1")
    j.record_unfinished(a, 2, 12.0, 13.0, State.REQUEUED)
    assert (j.records[a].requeues, j.records[a].exit_codes, j.records[a].max_rss_kb) == (2, [75, 75], None)
    j.record_start(a, 3, 14.0, 1, "node2", None, "v2")
    j.record_usage(a, 3, (4096, 1.5, 0.25))
    j.record_end(a, 3, 0, 14.0, 15.0)
    # b: requeued, then left waiting to run again (its count stands).
    j.record_start(b, 1, 10.0, 1, "node1", None, "v1")
    j.record_usage(b, 1, (1000, 0.5, 0.125), 7)
    j.record_unfinished(b, 1, 10.0, 11.0, State.REQUEUED)
    # c: still running, holding a GPU.
    j.record_start(c, 1, 16.0, 2, "node1", "gpu=1", "v2")
    j.close()
    written = {job_id: _fields(rec) for job_id, rec in j.records.items()}
    assert written[a] == {**written[a], "state": State.SUCCEEDED, "requeues": 0, "code": "v2", "max_rss_kb": 4096, "user_cpu_s": 1.5, "max_gpu_mem_mb": None}
    assert written[a]["exit_codes"] == [75, 75, 0]
    assert written[b] == {**written[b], "state": State.REQUEUED, "requeues": 1, "code": "v1", "max_rss_kb": 1000, "sys_cpu_s": 0.125, "max_gpu_mem_mb": 7}
    assert (j.records[c].holds, j.records[c].code, j.records[c].max_rss_kb) == ("gpu=1", "v2", None)
    replayed = Journal(tmp_path)
    replayed.load()
    assert {job_id: _fields(rec) for job_id, rec in replayed.records.items()} == written
    replayed._lines = 10_000  # long enough to be compacted
    replayed.compact()
    compacted = Journal(tmp_path)
    compacted.load()
    kept = {job_id: _fields(rec) for job_id, rec in compacted.records.items()}
    # Compaction keeps the last attempt's times, and the host only of a job that ran to its end (an I line names none).
    assert kept == {**written, b: {**written[b], "host": None}}
    assert (compacted.records[c].holds, compacted.records[c].slot) == ("gpu=1", 2)
    restored = RecordTable.restore(*compacted.records.dump())
    assert {job_id: _fields(rec) for job_id, rec in restored.items()} == kept


def test_a_remembered_row_is_never_a_deleted_record_or_another_jobs() -> None:
    """`row_of` remembers the rows it found: a record deleted and made again answers with its new row, a deleted one with none."""
    table = RecordTable()
    ids = [f"{n:016x}" for n in range(3000)]  # more than it remembers: the memory is cleared on the way
    for n, job_id in enumerate(ids):
        table.start(job_id, 1, 1.0 + n, 0, "h")
    assert all(table.row_of(job_id) == n for n, job_id in enumerate(ids))
    first = ids[2999]
    assert table.row_of(first) == 2999  # remembered now
    del table[first]
    assert table.row_of(first) == -1 and first not in table
    table.start(first, 2, 5.0, 1, "h")  # a new record: a new row at the end
    assert table.row_of(first) == 3000 and table[first].attempts == 2
    assert table.row_of(ids[0]) == 0 and table[ids[0]].job_id == ids[0]
    table.clear()
    assert table.row_of(ids[0]) == -1 and len(table) == 0
