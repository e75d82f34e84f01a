"""Unit tests of batchrun.status.outcome: exit codes from records, wait's loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.errors import UsageError
from batchrun.status import outcome
from batchrun.status.outcome import outcome_of, wait_for
from batchrun.status.view import JobStatus, RunsStatus
from batchrun.store.fingerprint import Fingerprint, write_fingerprint
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State
from batchrun.store.rundir import RunsDir
from batchrun.store.target import resolve_target


def status_of(*states: str, removed: str | None = None) -> RunsStatus:
    jobs = []
    for i, state in enumerate(states):
        rec = None
        if state != State.PENDING:
            rec = JobRecord(f"{i:016x}")
            rec.state = state
        jobs.append(JobStatus(f"{i:016x}", f"echo {i}", i + 1, rec, None, False))
    if removed is not None:
        rec = JobRecord("f" * 16)
        rec.state = removed
        jobs.append(JobStatus("f" * 16, "echo gone", None, rec, None, True))
    return RunsStatus(RunsDir(Path("/nowhere")), None, jobs, False, None, 0.0)


@pytest.mark.parametrize(
    ("states", "code"),
    [
        ((State.SUCCEEDED, State.PENDING), 0),
        ((State.SUCCEEDED, State.FAILED), 1),
        ((State.TIMEOUT,), 1),
        ((State.FAILED, State.INTERRUPTED), 130),
        ((State.SUCCEEDED, State.INTERRUPTED), 130),
        ((State.SUCCEEDED, outcome.KILLED), 1),
        ((State.SUCCEEDED, outcome.STOPPED), 0),
        ((), 0),
    ],
)
def test_exit_code_from_the_records(states: tuple[str, ...], code: int) -> None:
    assert outcome_of(status_of(*states, removed=State.FAILED)).exit_code == code


def test_lost_cluster_jobs_count_as_interrupted() -> None:
    result = outcome_of(status_of(State.SUCCEEDED, State.RUNNING), lost=["0000000000000001"])
    assert result.exit_code == 130
    assert result.counts[State.RUNNING] == 0 and result.counts[State.INTERRUPTED] == 1


def test_wait_times_out_while_a_launch_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.runfile").write_text("echo a\n")
    target = resolve_target(Path("exp.runfile"))
    now = [0.0]
    told: list[str] = []
    monkeypatch.setattr(outcome, "launch_holder", lambda runs_dir: 4321)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert wait_for(target, 3.0, told.append, clock=lambda: now[0], sleep=sleep) is None
    assert told == ["waiting for the launch (pid 4321)"] and now[0] == pytest.approx(3.0)
    monkeypatch.setattr(outcome, "launch_holder", lambda runs_dir: None)
    with pytest.raises(UsageError):
        wait_for(target, 3.0, told.append, clock=lambda: now[0], sleep=sleep)


def test_an_interrupted_launch_with_no_job_left_interrupted_waits_out_130_until_the_journal_changes(tmp_path: Path) -> None:
    """Ctrl-C before any job started leaves only pending jobs: the fingerprint, not the records, says 130."""
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = Journal(runs)
    journal.open()
    journal.record_end("0" * 16, 1, 0, 1.0, 2.0)
    journal.close()
    status = status_of(State.SUCCEEDED, State.PENDING)
    status.runs_dir = RunsDir(runs)
    assert outcome_of(status).exit_code == 0
    fingerprint = Fingerprint.take(runs, runs / "jobs.journal", "metadata.json", "d", interrupted=True)
    assert fingerprint is not None
    write_fingerprint(runs, fingerprint)
    assert outcome_of(status).exit_code == 130
    with open(runs / "jobs.journal", "a") as f:
        f.write(f"R {'0' * 16}\n")  # a later launch (or doit forget) touched the records: they decide again
    assert outcome_of(status).exit_code == 0


def test_a_launch_halted_by_a_failure_waits_out_1_though_it_left_jobs_interrupted(tmp_path: Path) -> None:
    """--halt-now stops the running jobs (interrupted) after a failure: the launch exits 1, and so does wait."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "jobs.journal").write_text("")
    status = status_of(State.FAILED, State.INTERRUPTED, State.PENDING)
    status.runs_dir = RunsDir(runs)
    assert outcome_of(status).exit_code == 130  # the records alone: an interruption
    fingerprint = Fingerprint.take(runs, runs / "jobs.journal", "metadata.json", "d", halted=True)
    assert fingerprint is not None
    write_fingerprint(runs, fingerprint)
    assert outcome_of(status).exit_code == 1
