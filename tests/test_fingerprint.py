"""Unit tests of batchrun.store.fingerprint: a round trip, what it vouches for, and any damage reads as "no fingerprint"."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from batchrun.atomic import write_atomic
from batchrun.launch.launch import _tally
from batchrun.runfile.file import Runfile, load_runfile, parse_runfile_text, runfile_digest
from batchrun.store.fingerprint import (
    FINGERPRINT_NAME,
    MAX_LISTED,
    Fingerprint,
    Summary,
    journal_digest,
    journal_mark,
    journal_prefix,
    metadata_id,
    metadata_unchanged,
    read_fingerprint,
    summary_of,
    write_fingerprint,
)
from batchrun.store.journal import Journal
from batchrun.store.records import IGNORED, STATES, JobRecord, State


def _summary(runfile: Runfile, records: Mapping[str, JobRecord], journal: Journal) -> Summary | None:
    """The summary a launch's `finish` writes for these records (its tally, then `summary_of`)."""
    counts, failed = _tally(runfile.jobs, dict(records))
    return summary_of(runfile, records, counts, failed, journal.path, journal.size)


def _fingerprint(runs: Path, runfile: Runfile, summary: Summary | None, name: str = "metadata.json", interrupted: bool = False) -> Fingerprint:
    mark = journal_mark(runs / "jobs.journal")
    assert mark is not None
    return Fingerprint(
        metadata_name=name, metadata_id=metadata_id(runs / name), runfile_digest=runfile.digest,
        journal_size=mark[0], journal_tail=mark[1], interrupted=interrupted, summary=summary,
    )


def _finished(tmp_path: Path, text: str = "true 1\nexit 3\ntrue 1\necho é\n") -> tuple[Path, Fingerprint]:
    """A runs directory whose journal has the runfile's jobs ended (the second one failed, the last one ignored)."""
    runfile_path = tmp_path / "exp.runfile"
    runfile_path.write_text(text, encoding="utf-8")
    runfile = load_runfile(runfile_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "metadata.json").write_text("{}\n")
    journal = Journal(runs)
    journal.open()
    for n, job in enumerate(runfile.jobs):
        journal.record_start(job.job_id, 1, 1.0, 0, "h")
        journal.record_end(job.job_id, 1, 3 if "exit" in job.command else 0, 1.0, 2.0 + n)
    journal.record_reset(["00000000000000aa"])  # a job no longer in the runfile
    journal.record_ignore([runfile.jobs[-1].job_id])
    journal.close()
    summary = _summary(runfile, journal.records, journal)
    assert summary is not None
    return runs, _fingerprint(runs, runfile, summary)


def test_a_fingerprint_reads_back_equal(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    write_fingerprint(runs, fingerprint)
    assert read_fingerprint(runs) == fingerprint
    summary = fingerprint.summary
    assert summary is not None
    assert summary.jobs == 3 and summary.removed == 1 and summary.records == 4
    # The ignored job (it succeeded) counts as ignored, as `status` and the launch's summary count it.
    assert summary.counts[State.SUCCEEDED] == 1 and summary.counts[State.FAILED] == 1 and summary.counts[IGNORED] == 1
    assert summary.duplicates == (("true 1", 1, 3),)
    [(job, rec)] = summary.failed_jobs()
    assert (job.command, job.lineno, rec.state, rec.status) == ("exit 3", 2, State.FAILED, 3)
    assert list(summary.counts) == list(STATES)


@pytest.mark.parametrize("name", ["metadata.json", "my meta.json", "métadonnées.json"])
def test_it_vouches_for_the_metadata_json_it_names(tmp_path: Path, name: str) -> None:
    runs, fingerprint = _finished(tmp_path)
    (runs / name).write_text("{}\n")
    fingerprint = _fingerprint(runs, load_runfile(tmp_path / "exp.runfile"), fingerprint.summary, name)
    write_fingerprint(runs, fingerprint)
    assert read_fingerprint(runs) == fingerprint
    assert metadata_unchanged(runs, name)
    (runs / name).write_text('{"x": {}}\n')  # edited: no longer the file the launch left
    assert not metadata_unchanged(runs, name)


def test_it_matches_only_the_journal_size_and_runfile_it_was_made_with(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    journal = runs / "jobs.journal"
    digest = load_runfile(tmp_path / "exp.runfile").digest
    assert fingerprint.matches(runs, journal, "metadata.json", digest)
    assert not fingerprint.matches(runs, journal, "metadata.json", "other")
    assert not fingerprint.matches(runs, journal, "other.json", digest)
    with open(journal, "a") as f:
        f.write("R 0123456789abcdef\n")
    assert not fingerprint.matches(runs, journal, "metadata.json", digest), "the journal grew: the view is stale"


def test_without_a_journal_or_metadata_the_ids_are_empty(tmp_path: Path) -> None:
    assert metadata_id(tmp_path / "metadata.json") == "none"
    assert journal_mark(tmp_path / "jobs.journal") is None
    (tmp_path / "jobs.journal").write_text("")
    assert journal_mark(tmp_path / "jobs.journal") == (0, hashlib.blake2b(b"", digest_size=16).hexdigest())


def test_the_mark_covers_the_journal_up_to_its_size(tmp_path: Path) -> None:
    path = tmp_path / "jobs.journal"
    path.write_bytes(b"x" * 10_000)
    size, digest = journal_mark(path)  # type: ignore[misc]
    with open(path, "ab") as f:
        f.write(b"more")
    assert journal_mark(path, size) == (size, digest)
    assert journal_mark(path) != (size, digest)
    assert journal_mark(path, 20_000) is None  # shorter than the mark


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


def test_the_summary_names_the_journal_and_runfile_it_was_made_of(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    assert fingerprint.summary is not None
    assert journal_digest(runs / "jobs.journal") == (fingerprint.journal_size, fingerprint.summary.journal_sha256, fingerprint.summary.journal_lines)
    assert runfile_digest(tmp_path / "exp.runfile") == load_runfile(tmp_path / "exp.runfile").digest == fingerprint.runfile_digest


def test_a_torn_or_empty_journal_has_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "jobs.journal"
    path.write_bytes(b"")
    assert journal_digest(path) is None
    path.write_bytes(b"R 0123456789abcdef\nR 01")
    assert journal_digest(path) is None
    assert journal_digest(tmp_path / "missing") is None


def test_the_journal_digest_goes_on_from_a_prefix_hashed_before_only_in_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.journal"
    path.write_bytes(b"R 0123456789abcdef\n" * 3)
    assert journal_prefix(path, 19 * 3 + 1) is None  # longer than the file
    assert journal_prefix(path, 10) is None  # not a whole line
    prefix = journal_prefix(path, 19 * 2)
    assert prefix is not None and prefix.lines == 2
    with open(path, "ab") as f:
        f.write(b"X 0123456789abcdef\n")
    assert journal_digest(path, prefix) == journal_digest(path)
    # Its first bytes changed in place: the digest is of the bytes hashed before, which no longer match the file.
    path.write_bytes(b"R fedcba9876543210\n" + path.read_bytes()[19:])
    went_on = journal_digest(path, prefix)
    assert went_on is not None and went_on != journal_digest(path)
    # Another file renamed over it (a compaction writes one): hashed whole.
    write_atomic(path, b"R fedcba9876543210\n" * 4)
    assert journal_digest(path, prefix) == journal_digest(path)
    path.write_bytes(b"R 01")  # shorter than the prefix, torn
    assert journal_digest(path, prefix) is None


def test_no_summary_while_a_job_runs_and_the_first_failures_past_the_listed_ones(tmp_path: Path) -> None:
    runfile = parse_runfile_text("".join(f"exit {n}\n" for n in range(1, 1003)), tmp_path / "x.runfile")
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = Journal(runs)
    journal.open()
    for job in runfile.jobs:
        journal.record_end(job.job_id, 1, 1, 1.0, 2.0)
    journal.close()
    summary = _summary(runfile, journal.records, journal)  # 1002 failed: the first MAX_LISTED listed, all counted
    assert summary is not None and summary.failed_count == 1002 and not summary.lists_every_failure
    assert [command for *_, command in summary.failed] == [f"exit {n}" for n in range(1, MAX_LISTED + 1)]
    running = {"a": JobRecord("a")}
    running["a"].state = State.RUNNING
    assert _summary(runfile, running, journal) is None
    empty = parse_runfile_text("# nothing\n", tmp_path / "e.runfile")
    assert _summary(empty, {}, journal) is None


def test_a_journal_another_writer_appended_to_gives_no_summary(tmp_path: Path) -> None:
    runs, _ = _finished(tmp_path)
    runfile = load_runfile(tmp_path / "exp.runfile")
    journal = Journal(runs)
    journal.load()
    with open(journal.path, "a") as f:
        f.write("R 0123456789abcdef\n")
    assert _summary(runfile, journal.records, journal) is None


def test_writing_it_removes_the_three_files_it_replaces(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    for name in (".metadata.stamp", ".metadata.journal-mark", ".resume.index"):
        (runs / name).write_text("1 old\n")
    write_fingerprint(runs, fingerprint)
    assert sorted(p.name for p in runs.iterdir() if p.name.startswith(".")) == [FINGERPRINT_NAME, ".journal.reserve"]


def test_a_fingerprint_that_is_a_directory_is_no_error(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    (runs / FINGERPRINT_NAME).mkdir()
    assert read_fingerprint(runs) is None
    write_fingerprint(runs, fingerprint)  # only an optimisation: no exception
    assert read_fingerprint(runs) is None


def test_every_truncation_reads_as_no_fingerprint(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    data = fingerprint.render().encode()
    for size in range(len(data)):
        (runs / FINGERPRINT_NAME).write_bytes(data[:size])
        assert read_fingerprint(runs) is None, size


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.replace(b"batchrun-fingerprint 1", b"batchrun-fingerprint 2"),
        lambda d: d.replace(b'"jobs":3', b'"jobs":4'),  # the body no longer has its digest
        lambda d: d + b"more\n",
        lambda d: b"\0" * len(d),
        lambda d: bytes(range(256)) * 4,
        lambda d: d[:30] + b"\xff" + d[31:],
        lambda d: b"\n\n",
        lambda d: b"",
        lambda d: d.replace(b" ", b"  ", 1),
        lambda d: b"x" * (17 * 1024 * 1024),
    ],
    ids=["version", "edited-body", "extra-line", "nul-bytes", "garbage", "bad-byte", "blank", "empty", "extra-space", "huge"],
)
def test_a_damaged_fingerprint_reads_as_none(tmp_path: Path, damage: object) -> None:
    runs, fingerprint = _finished(tmp_path)
    (runs / FINGERPRINT_NAME).write_bytes(damage(fingerprint.render().encode()))  # type: ignore[operator]
    assert read_fingerprint(runs) is None
    assert not metadata_unchanged(runs, "metadata.json")


def _with_body(runs: Path, fingerprint: Fingerprint, edit: object) -> None:
    """A fingerprint whose body is edited and then signed again: only the field checks stand."""
    body = json.loads(fingerprint.render().split("\n")[1])
    edit(body)  # type: ignore[operator]
    text = json.dumps(body, separators=(",", ":"))
    (runs / FINGERPRINT_NAME).write_text(f"batchrun-fingerprint 1 {hashlib.sha256(text.encode()).hexdigest()}\n{text}\n")


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["summary"].update(jobs=-1),
        lambda b: b["summary"].update(jobs=True),
        lambda b: b["summary"].update(jobs=99),  # counts no longer add up
        lambda b: b.update(journal_size="12"),
        lambda b: b.update(journal_size=-1),
        lambda b: b.update(metadata_name=None),
        lambda b: b.update(interrupted=0),
        lambda b: b.update(halted="yes"),
        lambda b: b.pop("halted"),
        lambda b: b["summary"]["counts"].pop("stopped"),
        lambda b: b["summary"]["counts"].update(bogus=0),
        lambda b: b["summary"]["counts"].update(failed=-2),
        lambda b: b["summary"].update(failed=[["id", 2, "exploded", 3, "x"]]),
        lambda b: b["summary"].update(failed=[["id", 2, "failed", "3", "x"]]),
        lambda b: b["summary"].update(failed=[["id", 2, "failed"]]),
        lambda b: b["summary"].update(duplicates=[["x", 1]]),
        lambda b: b["summary"].update(duplicates=[[1, 1, 2]]),
        lambda b: b["summary"].pop("removed"),
        lambda b: b["summary"].update(failed_count=0),  # fewer than it lists
        lambda b: b["summary"].update(failed_count=5),  # more than it lists, yet it lists fewer than MAX_LISTED
        lambda b: b["summary"].update(failed_count=True),
        lambda b: b.update(summary=[]),
        lambda b: b.pop("journal_tail"),
        lambda b: b.clear(),
    ],
)
def test_a_well_signed_fingerprint_with_bad_fields_reads_as_none(tmp_path: Path, edit: object) -> None:
    runs, fingerprint = _finished(tmp_path)
    _with_body(runs, fingerprint, edit)
    assert read_fingerprint(runs) is None


def test_a_summary_of_the_first_failures_is_version_2_and_only_version_2(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    assert fingerprint.summary is not None and fingerprint.summary.lists_every_failure
    listed = (fingerprint.summary.failed * MAX_LISTED)[:MAX_LISTED]
    some = dataclasses.replace(fingerprint, summary=dataclasses.replace(fingerprint.summary, failed=listed, failed_count=MAX_LISTED + 7))
    data = some.render().encode()
    assert data.startswith(b"batchrun-fingerprint 2 ")
    (runs / FINGERPRINT_NAME).write_bytes(data)
    read = read_fingerprint(runs)
    assert read == some and read.summary is not None and read.summary.failed_count == MAX_LISTED + 7
    # Signed as version 1, an earlier release would take the listed failures for all: refused.
    _with_body(runs, some, lambda b: None)
    assert read_fingerprint(runs) is None


def test_a_well_signed_list_reads_as_none(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    _with_body(runs, fingerprint, lambda b: None)
    assert read_fingerprint(runs) == fingerprint  # the signing helper itself gives a valid fingerprint
    text = "[1, 2]"
    (runs / FINGERPRINT_NAME).write_text(f"batchrun-fingerprint 1 {hashlib.sha256(text.encode()).hexdigest()}\n{text}\n")
    assert read_fingerprint(runs) is None


def test_a_fingerprint_without_a_summary_still_vouches_for_the_view(tmp_path: Path) -> None:
    runs, fingerprint = _finished(tmp_path)
    bare = _fingerprint(runs, load_runfile(tmp_path / "exp.runfile"), None, interrupted=True)
    write_fingerprint(runs, bare)
    assert read_fingerprint(runs) == bare and metadata_unchanged(runs, "metadata.json")


def test_compaction_drops_forgotten_records_as_a_replay_would(tmp_path: Path) -> None:
    """The summary is made of records in memory: after compaction they must equal the file's replay."""
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
