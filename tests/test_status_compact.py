"""Unit tests of `status.compact` (the jobs held by column) and of the journal read in blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.errors import MetadataError
from batchrun.liveness import LockTable
from batchrun.runfile.file import load_runfile
from batchrun.status.compact import read_compact, read_jobs, usable_for
from batchrun.status.lookup import short_id_length
from batchrun.status.view import load_status
from batchrun.store import journal as journal_module
from batchrun.store.journal import Journal
from batchrun.store.records import FIELDS, State
from batchrun.store.recordtable import RecordTable
from batchrun.store.rundir import RunsDir
from batchrun.store.target import resolve_target


def _runs(workdir: Path, count: int = 50) -> Path:
    path = workdir / "exp.runfile"
    path.write_text("".join(f"echo {n}\n" for n in range(count)) + "echo gone\n")
    runfile = load_runfile(path)
    journal = Journal(RunsDir(workdir / "runs" / "exp").path)
    (workdir / "runs" / "exp").mkdir(parents=True)
    journal.open()
    for n, job in enumerate(runfile.jobs):
        if n % 5 == 4:
            continue
        journal.record_start(job.job_id, 1, 1000.0 + n, 0, "host")
        journal.record_end(job.job_id, 1, n % 3, 1000.0 + n, 1001.0 + n, State.TIMEOUT if n % 7 == 0 else None)
    journal.record_ignore([runfile.jobs[1].job_id])
    journal.close()
    path.write_text("".join(f"echo {n}\n" for n in range(count)))
    return path


def test_compact_status_counts_and_lists_as_the_held_status(workdir: Path) -> None:
    _runs(workdir)
    target = resolve_target(Path("exp.runfile"), None, "metadata.json")
    assert usable_for(target)
    held, compact = load_status(target), read_compact(target)
    assert compact.counts() == held.counts()
    assert len(compact) == len(held.jobs)
    listed = [job for window in compact.windows(size=7) for job in window]
    assert [(job.job_id, job.line, job.command, job.category, job.removed) for job in listed] == [
        (job.job_id, job.line, job.command, job.category, job.removed) for job in held.jobs
    ]
    assert [job.record.state if job.record else None for job in listed] == [job.record.state if job.record else None for job in held.jobs]
    assert compact.id_length() == short_id_length(held.jobs)
    for states in (["failed"], ["ignored", "removed"], ["pending", "timeout"]):
        chosen = [job for window in compact.windows(compact.indices(states), compact.select_removed(states), size=3) for job in window]
        assert [job.job_id for job in chosen] == [job.job_id for job in held.select(states)], states
    assert compact.indices(None) is None
    assert compact.running_count() == 0 and compact.running_jobs() == []


def test_read_jobs_takes_the_runfile_and_records_of_a_full_read_without_a_snapshot(workdir: Path) -> None:
    path = _runs(workdir, 20)
    pid, runfile, records, ledger = read_jobs(RunsDir(workdir / "runs" / "exp"), path, LockTable())
    assert pid is None
    assert list(runfile.jobs) == list(load_runfile(path).jobs)
    assert len(records) == 17 and len(ledger.removed_ids()) == 1


def _plain(records: RecordTable) -> dict[str, dict[str, object]]:
    return {job_id: {field.name: getattr(rec, field.name) for field in FIELDS} for job_id, rec in records.items()}


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_the_journal_read_in_blocks_replays_as_a_read_at_once(workdir: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    _runs(workdir, 30)
    runs = workdir / "runs" / "exp"
    whole = Journal(runs)
    whole.load()
    with open(runs / "jobs.journal", "ab") as f:
        f.write(b"E 0123456789abcdef 1 0 1")  # a torn last line, as a kill leaves it
    monkeypatch.setattr(journal_module, "_READ_BLOCK", block)
    blocks = Journal(runs)
    blocks.load()
    assert _plain(blocks.records) == _plain(whole.records) and len(whole.records) == 25
    assert blocks.size == whole.size == (runs / "jobs.journal").stat().st_size - 24
    assert blocks._lines == whole._lines


def test_a_corrupt_line_is_named_by_its_number_across_blocks(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _runs(workdir, 10)
    runs = workdir / "runs" / "exp"
    lines = (runs / "jobs.journal").read_bytes().split(b"\n")
    lines.insert(9, b"Q nonsense")
    (runs / "jobs.journal").write_bytes(b"\n".join(lines))
    monkeypatch.setattr(journal_module, "_READ_BLOCK", 16)
    with pytest.raises(MetadataError, match=r"jobs.journal:10: corrupt job journal line"):
        Journal(runs).load()
