"""The `batchrun` doit backend: doit's contract for any task, and job tasks over the journal."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from doit.dependency import DatabaseException, Dependency, JSONCodec
from doit.exceptions import InvalidDodoFile
from doit.task import Task

from batchrun._doit.backend import JobDone, JournalDB, RunsDirJobs, job_values, register_jobs, unregister_jobs
from batchrun.errors import LockedError
from batchrun.store.journal import Journal
from batchrun.store.records import State
from batchrun.store.rundir import RunsDir, acquire_lock

A, B = "a" * 16, "b" * 16


def _dep(tmp_path: Path) -> Dependency:
    return Dependency(JournalDB, str(tmp_path / ".doit.journal"))


def _task(name: str, file_dep: list[str] | None = None) -> Task:
    return Task(name, ["true"], file_dep=file_dep or [])


def test_values_of_any_task_survive_a_reopen(tmp_path: Path) -> None:
    dep_file = tmp_path / "in.txt"
    dep_file.write_text("x")
    dep = _dep(tmp_path)
    task = _task("build", [str(dep_file)])
    task.values = {"answer": 42, "name": "sp ace \u00e9"}
    dep.save_success(task)
    dep.close()
    again = _dep(tmp_path)
    assert again.get_values("build") == {"answer": 42, "name": "sp ace \u00e9"}
    assert again._in("build")
    assert again.get_status(_task("build", [str(dep_file)]), {}).status == "up-to-date"


def test_values_survive_a_sigkill_right_after_save_success(tmp_path: Path) -> None:
    # No close, no dump: the process dies the instant save_success returns.
    script = textwrap.dedent(
        f"""
        import os, signal
        from doit.dependency import Dependency
        from doit.task import Task
        from batchrun._doit.backend import JournalDB
        dep = Dependency(JournalDB, {str(tmp_path / ".doit.journal")!r})
        task = Task("t", ["true"])
        task.values = {{"v": 1}}
        dep.save_success(task)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert _dep(tmp_path).get_values("t") == {"v": 1}


def test_remove_and_remove_all_forget_and_ignore_sticks(tmp_path: Path) -> None:
    dep = _dep(tmp_path)
    for name in ("one", "two", "three"):
        dep.save_success(_task(name))
    dep.remove("one")
    dep.ignore(_task("two"))
    dep.close()
    again = _dep(tmp_path)
    assert not again._in("one")
    assert again.status_is_ignore(_task("two"))
    assert again._in("three")
    again.remove_all()
    again.close()
    last = _dep(tmp_path)
    assert not last._in("two") and not last._in("three")
    assert not last.status_is_ignore(_task("two"))


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    dep = _dep(tmp_path)
    dep.save_success(_task("kept"))
    dep.close()
    path = tmp_path / ".doit.journal"
    with open(path, "ab") as f:
        f.write(b'V "torn" "_values_:" {"a"')
    again = _dep(tmp_path)
    assert again._in("kept") and not again._in("torn")
    again.save_success(_task("next"))
    again.close()
    assert b"torn" not in path.read_bytes()
    assert _dep(tmp_path)._in("next")


@pytest.mark.parametrize("garbage", [b"\xff\xfe junk\n", b"Q what\n", b'V "t" "k" {bad json\n'])
def test_a_corrupt_line_is_one_error_naming_file_and_line(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / ".doit.journal"
    path.write_bytes(b'V "t" "k" 1\n' + garbage)
    with pytest.raises(InvalidDodoFile, match=r"\.doit\.journal:2: corrupt line"):
        _dep(tmp_path)


def test_the_values_file_is_compacted_when_it_grew_much_longer(tmp_path: Path) -> None:
    for _ in range(60):
        dep = _dep(tmp_path)
        dep.save_success(_task("t"))
        dep.close()
    lines = (tmp_path / ".doit.journal").read_text().splitlines()
    assert len(lines) < 150
    assert _dep(tmp_path)._in("t")


def _journal(tmp_path: Path, lines: str) -> RunsDir:
    runs = RunsDir(tmp_path / "runs" / "exp")
    runs.create()
    (runs.path / "jobs.journal").write_text(lines)
    return runs


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[RunsDirJobs]:
    runs = _journal(tmp_path, f"E {A} 1 0 1.0 2.0\nE {B} 1 3 1.0 2.0\n")
    source = RunsDirJobs(runs, {A, B, "c" * 16}, "resume")
    register_jobs("exp:", source)
    yield source
    source.close()
    unregister_jobs("exp:")


def test_a_job_task_holds_its_journal_record_as_values(tmp_path: Path, jobs: RunsDirJobs) -> None:
    dep = _dep(tmp_path)
    assert dep.get_values(f"exp:{A}")["state"] == State.SUCCEEDED
    assert dep.get_values(f"exp:{B}") == {"state": "failed", "status": 3, "attempts": 1, "start": 1.0, "end": 2.0, "host": None}
    assert dep.get_values("exp:" + "c" * 16) == {}
    assert not dep._in("exp:" + "c" * 16)
    # Not a job of the runfile: an ordinary task, kept in the values file.
    assert not dep._in("exp:summary")


def test_job_done_answers_from_the_values_doit_hands_it(tmp_path: Path, jobs: RunsDirJobs) -> None:
    dep = _dep(tmp_path)
    task = Task(f"exp:{B}", ["true"], uptodate=[JobDone(jobs, B)])
    assert dep.get_status(task, {}).status == "up-to-date"
    assert len(task.value_savers) == 1 and task.value_savers[0]() == job_values(jobs.records[B])
    jobs.mode = "retry_failed"
    assert dep.get_status(task, {}).status == "run"
    assert jobs.done(A) and not jobs.done(B)


def test_forget_and_ignore_write_r_and_x_lines_under_the_lock(tmp_path: Path, jobs: RunsDirJobs) -> None:
    dep = _dep(tmp_path)
    dep.remove(f"exp:{A}")
    dep.ignore(_task("exp:" + "c" * 16))
    # The runs directory stays locked until doit closes the database.
    with pytest.raises(LockedError):
        acquire_lock(jobs.runs_dir).release()
    dep.close()
    text = (jobs.runs_dir.path / "jobs.journal").read_text()
    assert text.endswith(f"R {A}\nX {'c' * 16}\n")
    fresh = Journal(jobs.runs_dir.path)
    fresh.load()
    assert fresh.records[A].state == State.PENDING and fresh.records[A].attempts == 1
    assert fresh.records["c" * 16].ignored
    # Forgetting an ignored job clears it (R), as doit's forget does.
    dep = _dep(tmp_path)
    assert dep.status_is_ignore(_task("exp:" + "c" * 16))
    dep.remove("exp:" + "c" * 16)
    dep.close()
    fresh = Journal(jobs.runs_dir.path)
    fresh.load()
    assert not fresh.records["c" * 16].ignored


def test_forgetting_a_job_left_running_is_refused(tmp_path: Path) -> None:
    runs = _journal(tmp_path, f"S {A} 1 1.0 0 host\n")
    source = RunsDirJobs(runs, {A}, "resume")
    register_jobs("exp:", source)
    try:
        with pytest.raises(Exception, match="recorded as running"):
            _dep(tmp_path).remove(f"exp:{A}")
    finally:
        unregister_jobs("exp:")


def test_remove_all_forgets_every_finished_job(tmp_path: Path, jobs: RunsDirJobs) -> None:
    dep = _dep(tmp_path)
    dep.save_success(_task("other"))
    dep.remove_all()
    dep.close()
    fresh = Journal(jobs.runs_dir.path)
    fresh.load()
    assert {rec.state for rec in fresh.records.values()} == {State.PENDING}
    assert not _dep(tmp_path)._in("other")
    assert not os.path.exists(tmp_path / ".doit.db")


def test_the_journal_codec_is_doits(tmp_path: Path) -> None:
    db = JournalDB(str(tmp_path / "x.journal"), codec=JSONCodec())
    assert db.values_path == tmp_path / "x.journal"
    assert JournalDB(str(tmp_path / ".doit.db")).values_path == tmp_path / ".doit.db.journal"


def test_a_failed_job_task_in_a_run_never_unrecords_its_job(tmp_path: Path) -> None:
    # doit calls remove_success after a task failure: under a launch (a live
    # journal) that must write nothing, even for a job still recorded running.
    runs = _journal(tmp_path, f"E {A} 1 0 1.0 2.0\nS {B} 1 1.0 0 host\n")
    journal = Journal(runs.path)
    journal.load()
    journal.open()
    source = RunsDirJobs(runs, {A, B}, "resume", journal)
    register_jobs("", source)
    try:
        dep = _dep(tmp_path)
        dep.remove_success(_task(A))
        dep.remove_success(_task(B))
        dep.close()
    finally:
        unregister_jobs("")
        journal.close()
    assert (runs.path / "jobs.journal").read_text() == f"E {A} 1 0 1.0 2.0\nS {B} 1 1.0 0 host\n"


# doit's own test suite (tests/test_dependency.py) writes this into a backend's file and expects DatabaseException.
@pytest.mark.parametrize("garbage", [b'{"x": y}', b"garbage with no newline", b"\x00\x01", b'V "t" "k" 1\n{"x": y}'])
def test_a_corrupt_file_raises_doits_database_exception_as_doits_backends_do(tmp_path: Path, garbage: bytes) -> None:
    (tmp_path / ".doit.journal").write_bytes(garbage)
    with pytest.raises(DatabaseException):
        _dep(tmp_path)
    # ...which doit's command line prints in one line (an InvalidDodoFile), as before.
    with pytest.raises(InvalidDodoFile, match=r"\.doit\.journal:\d: corrupt line"):
        _dep(tmp_path)


@pytest.mark.parametrize("torn", [b"V", b'V "', b'V "t" "k', b'R "t', b"C"])
def test_only_a_record_cut_short_is_taken_for_a_torn_write(tmp_path: Path, torn: bytes) -> None:
    (tmp_path / ".doit.journal").write_bytes(b'V "kept" "k" 1\n' + torn)
    assert _dep(tmp_path)._get("kept", "k") == 1
