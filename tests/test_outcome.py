"""Unit tests of batchrun.outcome: exit codes from records, squeue, wait's loop."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from batchrun import outcome
from batchrun.errors import UsageError
from batchrun.journal import JobRecord, State
from batchrun.metadata import RunsDir
from batchrun.outcome import outcome_of, slurm_active, wait_for
from batchrun.status import JobStatus, RunsStatus, resolve_target


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


class FakeSqueue:
    def __init__(self, code: int, out: str = "", err: str = "") -> None:
        self.answer = subprocess.CompletedProcess([], code, out, err)
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return self.answer


def test_slurm_active_asks_once_for_every_array() -> None:
    fake = FakeSqueue(0, "12_0 RUNNING\n12_1 COMPLETED\n9_3 PENDING\n12_2 CANCELLED\n")
    assert slurm_active(["12_0", "12_1", "9_3", "12_2", "4242"], run=fake) == {"12_0", "9_3"}
    assert fake.calls == [["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", "9,12"]]
    assert slurm_active(["12_0"], run=FakeSqueue(1, err="slurm_load_jobs error: Invalid job id specified")) == set()
    assert slurm_active(["12_0"], run=FakeSqueue(1, err="Unable to contact slurm controller")) is None
    assert slurm_active([], run=FakeSqueue(1)) == set()


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
