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


def test_resources_percentiles_of_sorted_chunks_are_those_of_one_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """`status --resources` sorts a measure's values a chunk at a time and merges them: the same p50, p95 and max as one sort."""
    import random

    from batchrun.status import resources

    monkeypatch.setattr(resources, "_CHUNK", 7)
    rng = random.Random(28)
    for n in (1, 2, 7, 8, 50, 333):
        values = [rng.choice([0.5, 1.25, 3.0]) if n % 2 else rng.uniform(0, 100) for _ in range(n)]
        kept = resources._Sorted()
        for value in values:
            kept.add(value)
        ordered = sorted(values)
        assert kept.three() == (resources.percentile(ordered, 50), resources.percentile(ordered, 95), ordered[-1])


@pytest.mark.parametrize("layout", ["in order", "shuffled", "a job twice", "indented"])
def test_entries_read_a_window_at_a_time_are_the_held_ones(workdir: Path, layout: str) -> None:
    """`read_compact(entries=True)` gives each job the metadata.json entry `load_status(need_entries=True)` does, in any layout."""
    import json
    import random

    from batchrun.store.metadata import MetadataView, render_entry

    path = _runs(workdir, 60)
    runs = RunsDir(workdir / "runs" / "exp")
    runfile = load_runfile(path)
    entries = [(job.job_id, {"command": job.command, "line": job.lineno, "n": n}) for n, job in enumerate(runfile.jobs) if n % 9 != 3]
    entries.append(("f" * 16, {"command": "echo gone", "line": 61}))  # a line removed from the runfile, between the others
    entries.insert(10, entries.pop())
    if layout == "shuffled":
        random.Random(28).shuffle(entries)
    if layout == "a job twice":
        entries.append((entries[5][0], {**entries[5][1], "n": "again"}))
    if layout == "indented":
        runs.metadata.write_text(json.dumps(dict(entries), indent=2))
    else:
        MetadataView(runs.metadata).rebuild((job_id, render_entry(job_id, entry)) for job_id, entry in entries)
    target = resolve_target(path, None, "metadata.json")
    held = load_status(target, need_entries=True)
    compact = read_compact(target, entries=True)
    index = compact.entries
    assert index is not None and (index.held is not None, index.in_order) == {"in order": (False, True), "indented": (True, True)}.get(layout, (False, False))
    streamed = [job for window in compact.windows(size=7) for job in window]
    assert [(job.job_id, job.entry) for job in streamed] == [(job.job_id, job.entry) for job in held.jobs]
    assert [(job.job_id, job.entry) for job in streamed] == [(job.job_id, job.entry) for window in compact.windows(size=5) for job in window]


def test_find_job_in_a_compact_status_finds_what_the_held_one_does(workdir: Path) -> None:
    from batchrun.errors import UsageError
    from batchrun.status.lookup import find_job

    _runs(workdir)
    target = resolve_target(Path("exp.runfile"), None, "metadata.json")
    held, compact = load_status(target), read_compact(target, usage=False)
    some = held.jobs[7].job_id
    for text in ("1", "8", "50", some[:6], some.upper(), "echo 17", "gone", "51", "echo", "nothing-like-it", "0"):
        answers = []
        for status in (held, compact):
            try:
                job = find_job(status, text)
                answers.append((job.job_id, job.line, job.command, job.category, job.removed))
            except UsageError as err:
                answers.append(str(err))
        assert answers[0] == answers[1], text
