"""Unit tests of batchrun.store.repair: what survives a lost journal or a damaged view."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from batchrun.runfile.file import Job
from batchrun.store.journal import Journal
from batchrun.store.metadata import build_entry, iter_metadata, render_entry
from batchrun.store.records import JobRecord, State
from batchrun.store.repair import iter_metadata_repairing, rebuild_lost_journal, remove_dead_temp_files, surviving_records
from batchrun.store.rundir import RunsDir

A, B, C, D, E = (ch * 16 for ch in "abcde")


def _runs(tmp_path: Path, entries: dict[str, dict[str, object]]) -> RunsDir:
    runs = RunsDir(tmp_path)
    runs.logs.mkdir()
    runs.metadata.write_text(json.dumps(entries))
    return runs


def _exit(runs: RunsDir, job_id: str, data: bytes) -> None:
    runs.log_dir(job_id).mkdir(exist_ok=True)
    (runs.log_dir(job_id) / "exit").write_bytes(data)


def test_surviving_records_follow_metadata_then_exit_records(tmp_path: Path) -> None:
    runs = _runs(
        tmp_path,
        {
            A: {"state": "succeeded", "status": 0, "start": 1.0, "end": 2.0, "attempts": 2},
            B: {"state": "timeout", "status": 143, "start": 1.0, "end": 5.0, "attempts": 1},
            C: {"state": "pending", "attempts": 0},  # never ran: its old exit record is not believed
            D: {"state": "running", "start": 3.0, "slot": 1, "host": "bad host", "job_ref": "123", "attempts": 1},
            "not-a-job-id": {"state": "succeeded", "status": 0, "start": 1.0, "end": 2.0},
        },
    )
    _exit(runs, C, b"0\n")
    _exit(runs, E, b"1\n")  # no entry at all: the exit record counts
    (runs.log_dir(E) / "out.1.log").write_text("")
    recs = {rec.job_id: rec for rec in surviving_records(runs)}
    assert set(recs) == {A, B, D, E}
    assert (recs[A].state, recs[A].attempts, recs[A].status) == (State.SUCCEEDED, 2, 0)
    assert (recs[B].state, recs[B].status) == (State.TIMEOUT, 143)
    assert (recs[D].state, recs[D].host, recs[D].ref, recs[D].slot) == (State.RUNNING, "unknown", "123", 1)
    assert (recs[E].state, recs[E].status, recs[E].attempts) == (State.FAILED, 1, 2)


def test_a_rebuilt_journal_replays_to_the_same_records(tmp_path: Path) -> None:
    runs = _runs(tmp_path, {A: {"state": "succeeded", "status": 0, "start": 1.0, "end": 2.0, "attempts": 1}, B: {"state": "timeout", "status": 143, "start": 1.0, "end": 5.0, "attempts": 3}})
    _exit(runs, C, b"garbage\n")
    notice = rebuild_lost_journal(runs)
    assert notice is not None and "2 finished jobs kept" in notice and "--rerun-all" in notice
    journal = Journal(runs.path)
    journal.load()
    assert {k: (r.state, r.status, r.attempts) for k, r in journal.records.items()} == {A: (State.SUCCEEDED, 0, 1), B: (State.TIMEOUT, 143, 3)}
    # The journal is there now: nothing more to rebuild.
    assert rebuild_lost_journal(runs) is None


def test_nothing_to_rebuild_in_a_new_runs_directory(tmp_path: Path) -> None:
    assert rebuild_lost_journal(RunsDir(tmp_path)) is None


def test_only_dead_writers_temp_files_are_removed(tmp_path: Path) -> None:
    live = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        names = [f".metadata.json.{live.pid}.tmp", f".metadata.json.{dead.pid}.tmp", f".meta data.json.{dead.pid}.tmp", f".metadata.json.{os.getpid()}.tmp", "jobs.journal.tmp", ".metadata.json.0.tmp", ".metadata.json.0012.tmp", ".exp.runfile.99999999.tmp", "metadata.json", "x.tmp"]
        for name in names:
            (tmp_path / name).write_text("x")
        removed = remove_dead_temp_files(tmp_path)
        assert sorted(p.name for p in removed) == sorted([f".metadata.json.{dead.pid}.tmp", f".meta data.json.{dead.pid}.tmp", "jobs.journal.tmp"])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - {p.name for p in removed})
    finally:
        live.kill()
        live.wait()


def test_a_damaged_view_is_moved_aside_and_salvaged(tmp_path: Path) -> None:
    runs = RunsDir(tmp_path)
    text = "{\n" + f'  "{A}": {{"command": "a"}},\n  "{B}": {{"comm'
    runs.metadata.write_text(text)
    notices: list[str] = []
    assert dict(iter_metadata_repairing(runs, notices)) == {A: {"command": "a"}}
    [notice] = notices
    assert "1 whole entries kept" in notice
    [aside] = tmp_path.glob("metadata.json.damaged-*")
    assert aside.read_text() == text and not runs.metadata.exists()


def test_a_readable_view_is_read_as_is(tmp_path: Path) -> None:
    runs = RunsDir(tmp_path)
    runs.metadata.write_text(json.dumps({A: {"command": "a"}}))
    notices: list[str] = []
    assert dict(iter_metadata_repairing(runs, notices)) == {A: {"command": "a"}}
    assert notices == [] and runs.metadata.exists()


def _batchrun_line(job_id: str, state: str, line: int) -> str:
    """An entry as batchrun renders it (`build_entry`): the one rendering `metascan` passes over undecoded."""
    rec = JobRecord(job_id)
    rec.state, rec.attempts = state, 0 if state == State.PENDING else 1
    if state != State.PENDING:
        rec.status, rec.start, rec.end, rec.exit_codes, rec.host = 0, 1.5, 2.5, [0], "node1"
    return render_entry(job_id, build_entry(Job(f"true {line}", job_id, line), rec, f"/r/logs/{job_id}")).decode()


def _view(runs: RunsDir, lines: list[str]) -> None:
    runs.metadata.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def test_wanted_decodes_only_the_batchrun_entries_asked_for_and_gives_every_other_as_before(tmp_path: Path) -> None:
    runs = RunsDir(tmp_path)
    runs.logs.mkdir()
    lines = [
        _batchrun_line(A, State.SUCCEEDED, 1),
        _batchrun_line(B, State.PENDING, 2),
        _batchrun_line(C, State.FAILED, 3),
        f'  "{D}": {{"command": "d", "status": 0}}',  # the original batchrun's: no state
        f'  "{E}": {{"command": "é", "state": "succeeded"}}',  # not batchrun's rendering: decoded
    ]
    _view(runs, lines)
    every = dict(iter_metadata_repairing(runs, []))
    assert every == dict(iter_metadata(runs.metadata)) and set(every) == {A, B, C, D, E}
    asked: list[str] = []
    wanted = dict(iter_metadata_repairing(runs, [], wanted=lambda job_id: asked.append(job_id) or job_id == C))
    assert asked == [A, B, C]  # only batchrun's own lines are asked about
    assert wanted == {C: every[C], D: every[D], E: every[E]}


def test_a_damaged_view_is_salvaged_whatever_is_wanted(tmp_path: Path) -> None:
    text = "{\n" + _batchrun_line(A, State.SUCCEEDED, 1) + ",\n" + _batchrun_line(B, State.FAILED, 2)[:-30] + "\n}\n"
    found = []
    for name, wanted in (("none", lambda job_id: False), ("all", lambda job_id: True)):
        where = tmp_path / name
        where.mkdir()
        runs = RunsDir(where)
        runs.metadata.write_text(text)
        notices: list[str] = []
        found.append((dict(iter_metadata_repairing(runs, notices, wanted)), [n.split(";")[0].replace(str(where), "") for n in notices]))
        assert not runs.metadata.exists() and len(list(where.glob("metadata.json.damaged-*"))) == 1
    assert found[0] == found[1] and list(found[0][0]) == [A] and len(found[0][1]) == 1
