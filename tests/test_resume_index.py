"""Unit tests of batchrun.store.resume_index: a round trip, and any damage reads as "no index"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from batchrun.launch.launch import _tally
from batchrun.runfile.file import Runfile, load_runfile, parse_runfile_text
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State
from batchrun.store.resume_index import INDEX_NAME, ResumeIndex, index_of, journal_digest, read_index, remove_index, runfile_digest, write_index


def _index(runfile: Runfile, records: Mapping[str, JobRecord], journal: Journal) -> ResumeIndex | None:
    """The index a launch's `finish` writes for these records (its tally, then `index_of`)."""
    counts, failed = _tally(runfile.jobs, dict(records))
    return index_of(runfile, records, counts, failed, journal.path, journal.size, "metadata.json")


def _finished(tmp_path: Path, text: str = "true 1\nexit 3\ntrue 1\necho é\n") -> tuple[Path, ResumeIndex]:
    """A runs directory whose journal has the runfile's jobs ended (the second one failed)."""
    runfile_path = tmp_path / "exp.runfile"
    runfile_path.write_text(text, encoding="utf-8")
    runfile = load_runfile(runfile_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = Journal(runs)
    journal.open()
    for n, job in enumerate(runfile.jobs):
        journal.record_start(job.job_id, 1, 1.0, 0, "h")
        journal.record_end(job.job_id, 1, 3 if "exit" in job.command else 0, 1.0, 2.0 + n)
    journal.record_reset(["00000000000000aa"])  # a job no longer in the runfile
    journal.record_ignore([runfile.jobs[-1].job_id])
    journal.close()
    index = _index(runfile, journal.records, journal)
    assert index is not None
    return runs, index


def test_an_index_reads_back_equal(tmp_path: Path) -> None:
    runs, index = _finished(tmp_path)
    write_index(runs, index)
    assert read_index(runs) == index
    assert index.jobs == 3 and index.removed == 1 and index.records == 4
    assert index.counts[State.SUCCEEDED] == 2 and index.counts[State.FAILED] == 1
    assert index.ignored[State.SUCCEEDED] == 1
    assert index.duplicates == (("true 1", 1, 3),)
    [(job, rec)] = index.failed_jobs()
    assert (job.command, job.lineno, rec.state, rec.status) == ("exit 3", 2, State.FAILED, 3)
    assert list(index.counts) == list(State.ALL)


def test_the_index_names_the_journal_and_runfile_it_was_made_of(tmp_path: Path) -> None:
    runs, index = _finished(tmp_path)
    assert journal_digest(runs / "jobs.journal")[:1] == (index.journal_size,)  # type: ignore[index]
    assert runfile_digest(tmp_path / "exp.runfile") == load_runfile(tmp_path / "exp.runfile").digest == index.runfile_digest


def test_the_runfile_digest_is_the_parsers_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.runfile"
    path.write_bytes("\ufefftrue 1\r\ntrue 2\n".encode())
    assert runfile_digest(path) == load_runfile(path).digest
    path.write_bytes(b"\xff\xfe")
    assert runfile_digest(path) is None
    assert runfile_digest(tmp_path / "missing") is None


def test_the_runfile_digest_reads_in_blocks_across_a_split_character(tmp_path: Path) -> None:
    path = tmp_path / "big.runfile"
    # "é" is two bytes: one line puts it across the 1 MiB block boundary.
    path.write_bytes(b"\xef\xbb\xbf" + b"x" * ((1 << 20) - 4) + "é\n".encode() + b"echo 2\n" * 200_000)
    assert runfile_digest(path) == load_runfile(path).digest
    path.write_bytes(b"x" * ((1 << 20) - 1) + b"\xc3")  # a character cut short at the end
    assert runfile_digest(path) is None


def test_a_torn_or_empty_journal_has_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "jobs.journal"
    path.write_bytes(b"")
    assert journal_digest(path) is None
    path.write_bytes(b"R 0123456789abcdef\nR 01")
    assert journal_digest(path) is None
    assert journal_digest(tmp_path / "missing") is None


def test_no_index_while_a_job_runs_or_past_the_listed_failures(tmp_path: Path) -> None:
    runfile = parse_runfile_text("".join(f"exit {n}\n" for n in range(1, 1003)), tmp_path / "x.runfile")
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = Journal(runs)
    journal.open()
    for job in runfile.jobs:
        journal.record_end(job.job_id, 1, 1, 1.0, 2.0)
    journal.close()
    assert _index(runfile, journal.records, journal) is None  # 1002 failed
    running = {"a": JobRecord("a")}
    running["a"].state = State.RUNNING
    assert _index(runfile, running, journal) is None
    empty = parse_runfile_text("# nothing\n", tmp_path / "e.runfile")
    assert _index(empty, {}, journal) is None


def test_a_journal_another_writer_appended_to_gives_no_index(tmp_path: Path) -> None:
    runs, _ = _finished(tmp_path)
    runfile = load_runfile(tmp_path / "exp.runfile")
    journal = Journal(runs)
    journal.load()
    with open(journal.path, "a") as f:
        f.write("R 0123456789abcdef\n")
    assert _index(runfile, journal.records, journal) is None


def test_write_none_removes_the_index(tmp_path: Path) -> None:
    runs, index = _finished(tmp_path)
    write_index(runs, index)
    remove_index(runs)
    assert not (runs / INDEX_NAME).exists()
    assert read_index(runs) is None
    remove_index(runs)  # twice is fine


def test_every_truncation_reads_as_no_index(tmp_path: Path) -> None:
    runs, index = _finished(tmp_path)
    data = index.render().encode()
    for size in range(len(data)):
        (runs / INDEX_NAME).write_bytes(data[:size])
        assert read_index(runs) is None, size


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.replace(b"batchrun-resume-index 1", b"batchrun-resume-index 2"),
        lambda d: d.replace(b'"jobs":3', b'"jobs":4'),  # the body no longer has its digest
        lambda d: d + b"more\n",
        lambda d: b"\0" * len(d),
        lambda d: bytes(range(256)) * 4,
        lambda d: d[:30] + b"\xff" + d[31:],
        lambda d: b"\n\n",
        lambda d: b"x" * (17 * 1024 * 1024),
    ],
    ids=["version", "edited-body", "extra-line", "nul-bytes", "garbage", "bad-byte", "blank", "huge"],
)
def test_a_damaged_index_reads_as_none(tmp_path: Path, damage: object) -> None:
    runs, index = _finished(tmp_path)
    (runs / INDEX_NAME).write_bytes(damage(index.render().encode()))  # type: ignore[operator]
    assert read_index(runs) is None


def _with_body(runs: Path, index: ResumeIndex, edit: object) -> None:
    """An index whose body is edited and then signed again: only the field checks stand."""
    import hashlib

    body = json.loads(index.render().split("\n")[1])
    edit(body)  # type: ignore[operator]
    text = json.dumps(body, separators=(",", ":"))
    (runs / INDEX_NAME).write_text(f"batchrun-resume-index 1 {hashlib.sha256(text.encode()).hexdigest()}\n{text}\n")


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.update(jobs=-1),
        lambda b: b.update(jobs=True),
        lambda b: b.update(jobs=99),  # counts no longer add up
        lambda b: b.update(journal_size="12"),
        lambda b: b.update(metadata_name=None),
        lambda b: b["counts"].pop("stopped"),
        lambda b: b["counts"].update(bogus=0),
        lambda b: b["ignored"].update(failed=-2),
        lambda b: b.update(failed=[["id", 2, "exploded", 3, "x"]]),
        lambda b: b.update(failed=[["id", 2, "failed", "3", "x"]]),
        lambda b: b.update(failed=[["id", 2, "failed"]]),
        lambda b: b.update(duplicates=[["x", 1]]),
        lambda b: b.update(duplicates=[[1, 1, 2]]),
        lambda b: b.pop("removed"),
        lambda b: b.clear(),
    ],
)
def test_a_well_signed_index_with_bad_fields_reads_as_none(tmp_path: Path, edit: object) -> None:
    runs, index = _finished(tmp_path)
    _with_body(runs, index, edit)
    assert read_index(runs) is None


def test_a_well_signed_list_reads_as_none(tmp_path: Path) -> None:
    runs, index = _finished(tmp_path)
    _with_body(runs, index, lambda b: None)
    assert read_index(runs) == index  # the signing helper itself gives a valid index
    text = "[1, 2]"
    import hashlib

    (runs / INDEX_NAME).write_text(f"batchrun-resume-index 1 {hashlib.sha256(text.encode()).hexdigest()}\n{text}\n")
    assert read_index(runs) is None


def test_compaction_drops_forgotten_records_as_a_replay_would(tmp_path: Path) -> None:
    """The index is made of records in memory: after compaction they must equal the file's replay."""
    journal = Journal(tmp_path)
    journal.open()
    for attempt in range(1, 16):
        for n in range(50):
            journal.record_start(f"{n:016x}", attempt, 1.0, 0, "h")
            journal.record_end(f"{n:016x}", attempt, 0, 1.0, 2.0)
    journal.record_reset([f"{n:016x}" for n in range(10)])
    journal.close()
    assert journal.needs_compaction()
    journal.compact()
    assert not journal.needs_compaction()
    again = Journal(tmp_path)
    again.load()
    assert set(journal.records) == set(again.records)
    assert journal.size == (tmp_path / "jobs.journal").stat().st_size
    assert journal.needs_compaction() == again.needs_compaction()
