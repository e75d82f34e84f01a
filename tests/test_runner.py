"""Unit tests of the job runner's parts: slots, job environment, launch control."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import wait_for

from batchrun.errors import MetadataError, UsageError
from batchrun.executors import ExecutorOptions
from batchrun.executors.local.executor import LocalExecutor
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.oneattempt import job_env
from batchrun.launch.options import LaunchOptions
from batchrun.launch.runner import JobRunner, settle_unwatched
from batchrun.launch.scheduler import Grant, Scheduler
from batchrun.runfile.file import Job, job_id_of
from batchrun.store.journal import Journal
from batchrun.store.records import State


def _slot(pool: Scheduler) -> int:
    grant = pool.take("0123456789abcdef", None)
    assert grant is not None
    return grant.slot


def test_slots_are_taken_lowest_first_and_block_when_none_is_free() -> None:
    pool = Scheduler(3)
    assert [_slot(pool), _slot(pool), _slot(pool)] == [0, 1, 2]
    pool.give(Grant(2))
    pool.give(Grant(0))
    assert [_slot(pool), _slot(pool)] == [0, 2]
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(_slot(pool)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got
    pool.give(Grant(1))
    waiter.join(5)
    assert got == [1]


def _runner(tmp_path: Path, **options: object) -> JobRunner:
    control = LaunchControl()
    journal = Journal(tmp_path)
    return JobRunner(
        LaunchOptions(**options), journal, LocalExecutor(ExecutorOptions()), control, str(tmp_path / "logs"), "host",  # type: ignore[arg-type]
        {"BASE": "1"}, lambda job, rec: None, lambda: None,
    )


def test_the_job_environment(tmp_path: Path) -> None:
    runner = _runner(tmp_path, n_jobs=4, gpus=["6", "7"], jobs_per_gpu=2)
    job = Job("echo hi", job_id_of("echo hi"), 1)
    env = job_env(runner, job, Grant(3), "/logs/x", 2)
    assert env["BASE"] == "1" and env["BATCHRUN_JOB_ID"] == job.job_id
    assert (env["BATCHRUN_SLOT"], env["BATCHRUN_LOG_DIR"], env["BATCHRUN_ATTEMPT"]) == ("3", "/logs/x", "2")
    assert env["BATCHRUN_METRICS"] == "/logs/x/metrics.jsonl"
    assert [job_env(runner, job, Grant(slot), "/l", 1)["CUDA_VISIBLE_DEVICES"] for slot in range(4)] == ["6", "7", "6", "7"]
    assert "CUDA_VISIBLE_DEVICES" not in job_env(_runner(tmp_path), job, Grant(0), "/l", 1)
    assert (env["BATCHRUN_CPUS"], env["BATCHRUN_MEM"]) == ("1", "0")


def test_the_first_fatal_error_and_halt_reason_win() -> None:
    control = LaunchControl()
    control.fail(MetadataError("disk full"))
    control.fail(UsageError("later"))
    control.halt("fail-fast")
    control.halt("halt-now")
    assert str(control.fatal) == "disk full" and control.halted == "fail-fast" and control.stopping.is_set()


def test_adopted_jobs_count_as_running_from_the_start(tmp_path: Path) -> None:
    runner = _runner(tmp_path, n_jobs=1)
    runner.journal.open()
    jobs = [Job(f"sleep {i}", job_id_of(f"sleep {i}"), i) for i in range(3)]
    for job in jobs:
        runner.journal.record_start(job.job_id, 1, 1.0, 0, "host")
    events: list[str] = []
    runner.on_event = lambda event: events.append(f"{event.kind} {event.job.command}")
    runner.adopt_ids = {job.job_id for job in jobs}
    runner.adopt_all(jobs)
    assert runner.running_jobs() == 3, "-j 1 but three adopted jobs are running"
    assert events[:3] == ["adopt sleep 0", "adopt sleep 1", "adopt sleep 2"]
    assert [(j, watched) for j, _, watched in runner.stop_targets()] == [(job.job_id, False) for job in jobs]
    # Their processes are gone (never existed here): settling them leaves none running.
    settle_unwatched(runner)
    runner.journal.close()
    assert runner.running_jobs() == 0
    assert {rec.state for rec in runner.journal.records.values()} == {State.INTERRUPTED}
    assert events[3:] == ["end sleep 0", "end sleep 1", "end sleep 2"]


def test_a_job_stopped_on_purpose_is_recorded_in_the_given_state_without_retries_or_fail_fast(tmp_path: Path) -> None:
    runner = _runner(tmp_path, retries=2, fail_fast=True, grace=0.5)
    runner.journal.open()
    (tmp_path / "logs").mkdir()
    started = tmp_path / "started"
    command = f"touch {started}; sleep 60"
    job = Job(command, job_id_of(command), 1)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(runner.run_job(job)))
    try:
        assert runner.stop_jobs([job.job_id], State.STOPPED) == []  # not running yet
        worker.start()
        wait_for(started.exists, what="the job to start")
        assert runner.stop_jobs([job.job_id, job.job_id], State.STOPPED) == [job.job_id]
        assert runner.stop_jobs([job.job_id], State.KILLED) == []  # already being stopped
        worker.join(30)
    finally:
        runner.journal.close()
    rec = runner.journal.records[job.job_id]
    assert (rec.state, rec.attempts, rec.exit_codes) == (State.STOPPED, 1, [None])
    assert done == [rec] and runner.control.halted is None and not runner.control.stopping.is_set()
