"""Unit tests of the metadata sync: what the fingerprint vouches for, the first build, the flushes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from batchrun.runfile.file import Job, job_id_of, load_runfile
from batchrun.runfile.idprefix import IdPrefix
from batchrun.store.fingerprint import FINGERPRINT_NAME, Fingerprint, read_fingerprint, write_fingerprint
from batchrun.store.journal import Journal
from batchrun.store.metasync import MetadataSync, _entries
from batchrun.store.rundir import RunsDir
from batchrun.store.viewwrite import Unrendered


def _leave_fingerprint(sync: MetadataSync) -> None:
    """What a finishing launch leaves (`launch._leave_fingerprint`, without a summary); a launch's journal exists."""
    sync.journal.path.touch()
    fingerprint = Fingerprint.take(sync.runs_dir.path, sync.journal.path, sync.runs_dir.metadata_name, sync.runfile.digest)
    assert fingerprint is not None
    write_fingerprint(sync.runs_dir.path, fingerprint)


def _sync(tmp_path: Path) -> MetadataSync:
    runfile = tmp_path / "exp.runfile"
    runfile.write_text("echo a\necho b\n")
    runs_dir = RunsDir.for_runfile(runfile, tmp_path / "acct")
    runs_dir.create()
    return MetadataSync(runs_dir, load_runfile(runfile), Journal(runs_dir.path), threading.RLock(), lambda err: None)


def test_the_fingerprint_says_whether_metadata_json_is_up_to_date(tmp_path: Path) -> None:
    sync = _sync(tmp_path)
    assert not sync.unchanged()
    sync.build()
    assert sync.write_final() is None
    _leave_fingerprint(sync)
    assert sync.unchanged()
    sync.journal.open()
    sync.journal.record_start(sync.runfile.jobs[0].job_id, 1, 1.0, 0, "h")
    sync.journal.close()
    assert not sync.unchanged(), "the journal grew: the view is stale"


def test_changes_are_rendered_at_the_flush(tmp_path: Path) -> None:
    sync = _sync(tmp_path)
    sync.build()
    # The first build wrote the runfile's jobs in order: the view holds the job table's ids, not a copy.
    assert sync.view.file.keys.digests is sync.runfile.jobs.keys.digests
    sync.flush()
    job = sync.runfile.jobs[1]
    sync.journal.open()
    rec = sync.journal.record_end(job.job_id, 1, 0, 1.0, 2.0)
    sync.journal.close()
    sync.update(job, rec)
    sync.flush()
    entries = json.loads(sync.runs_dir.metadata.read_text())
    assert entries[job.job_id]["state"] == "succeeded" and entries[sync.runfile.jobs[0].job_id]["state"] == "pending"


def _launch_like(runs_dir: RunsDir, runfile: Path, drop_mark: bool = False) -> tuple[MetadataSync, bytes]:
    """What a relaunch does to metadata.json: read the old view, build, write, leave a fingerprint."""
    if drop_mark:
        (runs_dir.path / FINGERPRINT_NAME).unlink(missing_ok=True)
    journal = Journal(runs_dir.path)
    journal.load()
    sync = MetadataSync(runs_dir, load_runfile(runfile), journal, threading.RLock(), lambda err: None)
    sync.read_old()
    kept = sync._kept is not None
    journal.open()
    sync.import_legacy()
    sync.build()
    assert sync.write_final() is None
    journal.close()
    _leave_fingerprint(sync)
    return sync, (b"kept " if kept else b"full ") + runs_dir.metadata.read_bytes()


@pytest.mark.parametrize("change", ["new lines", "removed lines", "a record changed", "a line inserted on top", "moved", "legacy entry"])
def test_keeping_unchanged_lines_writes_what_a_full_rebuild_writes(tmp_path: Path, change: str) -> None:
    runfile = tmp_path / "exp.runfile"
    lines = [f"echo {i} --x={i}" for i in range(20)]
    runfile.write_text("\n".join(lines) + "\n")
    runs_dir = RunsDir.for_runfile(runfile, tmp_path / "acct")
    runs_dir.create()
    journal = Journal(runs_dir.path)
    journal.open()
    for i, job in enumerate(load_runfile(runfile).jobs[:15]):
        journal.record_start(job.job_id, 1, 10.0 + i, 0, "h")
        journal.record_end(job.job_id, 1, i % 3, 10.0 + i, 11.5 + i)
    journal.close()
    _launch_like(runs_dir, runfile)
    if change == "new lines":
        runfile.write_text("\n".join([*lines, "echo new 1", "echo new 2"]) + "\n")
    elif change == "removed lines":
        runfile.write_text("\n".join(lines[3:]) + "\n")
    elif change == "a record changed":
        journal = Journal(runs_dir.path)
        journal.load()
        journal.open()
        job = load_runfile(runfile).jobs[4]
        journal.record_reset([job.job_id])
        journal.record_start(job.job_id, 2, 50.0, 1, "h2")
        journal.record_end(job.job_id, 2, 7, 50.0, 52.0)
        journal.close()
    elif change == "a line inserted on top":
        runfile.write_text("\n".join(["# a comment", *lines]) + "\n")
    elif change == "moved":
        moved = tmp_path / "moved"
        runs_dir.path.rename(moved)
        runs_dir = RunsDir(moved)
    else:
        text = runs_dir.metadata.read_text()
        legacy = '  "00000000000000aa": {"command": "old tool", "status": 0, "start": 1.0, "runtime": 2.0}'
        runs_dir.metadata.write_text(text.replace("\n}\n", f",\n{legacy}\n}}\n"))
        # An edited metadata.json no longer matches the fingerprint: take it again as a launch would have.
        old = read_fingerprint(runs_dir.path)
        assert old is not None
        again = Fingerprint.take(runs_dir.path, runs_dir.path / "jobs.journal", runs_dir.metadata_name, old.runfile_digest)
        assert again is not None
        write_fingerprint(runs_dir.path, again)
    saved = {p.name: p.read_bytes() for p in runs_dir.path.iterdir() if p.is_file()}
    _, incremental = _launch_like(runs_dir, runfile)
    assert incremental.startswith(b"kept ")
    for name, data in saved.items():
        (runs_dir.path / name).write_bytes(data)
    _, full = _launch_like(runs_dir, runfile, drop_mark=True)
    assert full.startswith(b"full ")
    assert incremental[5:] == full[5:]
    if change == "legacy entry":
        assert b'"00000000000000aa"' in full and b'"old tool"' in full


def test_a_journal_rewritten_under_the_fingerprint_keeps_nothing(tmp_path: Path) -> None:
    # Same size as the fingerprint names, other bytes (a repair or compaction
    # by hand): the old lines are not trusted, the view is rebuilt.
    sync = _sync(tmp_path)
    sync.build()
    assert sync.write_final() is None
    sync.journal.open()
    sync.journal.record_start(sync.runfile.jobs[0].job_id, 1, 1.0, 0, "h")
    sync.journal.close()
    _leave_fingerprint(sync)
    data = sync.journal.path.read_bytes()
    sync.journal.path.write_bytes(data.replace(b" 1.000000 ", b" 2.000000 "))
    sync.read_old()
    assert sync._kept is None
    sync.journal.path.write_bytes(data)
    sync.read_old()
    assert sync._kept is not None, "the journal is the one the fingerprint names again"


def test_a_flush_of_many_changes_a_batch_at_a_time_writes_what_a_rebuild_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("batchrun.store.viewfile._RENDER_ROWS", 2)
    runfile = tmp_path / "exp.runfile"
    runfile.write_text("".join(f"echo {i}\n" for i in range(7)))
    runs_dir = RunsDir.for_runfile(runfile, tmp_path / "acct")
    runs_dir.create()
    sync = MetadataSync(runs_dir, load_runfile(runfile), Journal(runs_dir.path), threading.RLock(), lambda err: None)
    sync.build()
    sync.journal.open()
    for i, job in enumerate(list(sync.runfile.jobs)[:5]):
        sync.update(job, sync.journal.record_end(job.job_id, 1, i % 2, 1.0 + i, 2.0 + i))
    sync.flush()
    flushed = runs_dir.metadata.read_bytes()
    entries = json.loads(flushed)
    assert [entries[job.job_id]["state"] for job in sync.runfile.jobs] == ["succeeded", "failed"] * 2 + ["succeeded", "pending", "pending"]
    sync.build()  # every entry rendered again from the journal
    sync.journal.close()
    assert runs_dir.metadata.read_bytes() == flushed


def test_a_changed_entry_waits_as_a_mark_and_is_rendered_from_the_record_as_written(tmp_path: Path) -> None:
    # Between two rewrites of a big file tens of thousands of entries change: each waits as a mark (no job, no
    # line held), rendered from the record as the write reaches it; a job adopted from a line no longer in the
    # runfile (not in the job table) is rendered from the job it ran as.
    sync = _sync(tmp_path)
    sync.build()
    first, gone = sync.runfile.jobs[0], Job("echo gone", job_id_of("echo gone"), 7)
    sync.journal.open()
    sync.update(first, sync.journal.record_start(first.job_id, 1, 1.0, 0, "h"))
    sync.update(gone, sync.journal.record_start(gone.job_id, 1, 1.0, 1, "h"))
    assert all(isinstance(value, Unrendered) for value in sync.view.file._changed.values())
    sync.journal.record_end(first.job_id, 1, 0, 1.0, 2.0)  # after the mark: the write renders the record as it is then
    sync.flush()
    sync.journal.close()
    entries = json.loads(sync.runs_dir.metadata.read_text())
    assert entries[first.job_id]["state"] == "succeeded"
    assert (entries[gone.job_id]["command"], entries[gone.job_id]["line"], entries[gone.job_id]["state"]) == ("echo gone", 7, "running")
    assert not sync.view.file._changed and sync.view.file.layout() is not None


def test_a_running_job_whose_line_left_the_runfile_keeps_its_entry(tmp_path: Path) -> None:
    # Whether a job is the runfile's is remembered from its start to its end (three look-ups a job), for the
    # job table as it was: once a followed runfile loses the job's line, its entry comes from the job it ran as.
    sync = _sync(tmp_path)
    sync.build()
    job = sync.runfile.jobs[1]
    sync.journal.open()
    sync.update(job, sync.journal.record_start(job.job_id, 1, 1.0, 0, "h"))
    sync.update(job, sync.journal.record_start(job.job_id, 1, 1.0, 0, "h"))  # remembered as the runfile's now
    sync.runfile.jobs.remove_ids([job.job_id])
    sync.update(job, sync.journal.record_end(job.job_id, 1, 0, 1.0, 2.0))
    sync.flush()
    sync.journal.close()
    entries = json.loads(sync.runs_dir.metadata.read_text())
    assert (entries[job.job_id]["command"], entries[job.job_id]["state"]) == ("echo b", "succeeded")


@pytest.mark.parametrize("lines", ["echo a\necho b\necho c\n", "echo a\necho b\necho a\n", ""])
def test_a_fresh_build_holding_the_job_tables_ids_writes_and_marks_as_one_gathering_its_own(tmp_path: Path, lines: str) -> None:
    # A fresh build of a runfile's jobs alone holds the job table's ids, no index of its own:
    # the same file as the general path (keys gathered, then found the job table's), the same positions.
    written = []
    for general in (False, True):
        where = tmp_path / ("general" if general else "held")
        where.mkdir()
        runfile = where / "exp.runfile"
        runfile.write_text(lines)
        runs_dir = RunsDir.for_runfile(runfile, where / "acct")
        runs_dir.create()
        sync = MetadataSync(runs_dir, load_runfile(runfile), Journal(runs_dir.path), threading.RLock(), lambda err: None)
        jobs = sync.runfile.jobs
        if general:
            sync.view.rebuild(_entries(sync))
            sync.view.file.share_keys(jobs.keys, not jobs.ids_repeat())
        else:
            sync.build()
            assert isinstance(sync.view.file.keys, IdPrefix)  # a repeated line is one job: the ids never repeat
        first = runs_dir.metadata.read_bytes()
        assert len(sync.view) == len(set(lines.splitlines()))
        sync.journal.open()
        for job in list(jobs)[1::2]:  # the others' lines are copied from the file as built
            sync.update(job, sync.journal.record_end(job.job_id, 1, 0, 1.0, 2.0))
        sync.journal.close()
        sync.flush()
        written.append((first.replace(bytes(where), b""), runs_dir.metadata.read_bytes().replace(bytes(where), b"")))
    assert written[0] == written[1]
    entries = json.loads(written[0][1])
    assert len(entries) == len(set(lines.splitlines()))
    assert [entry["state"] for entry in entries.values()] == ["pending", "succeeded", "pending"][: len(entries)]
