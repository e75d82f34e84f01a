"""Unit tests of the doit side of a launch: job actions, windows of tasks, titles."""

from __future__ import annotations

from pathlib import Path

import pytest
from doit.exceptions import TaskError
from doit.task import Task

from batchrun._doit import runner as doit_runner
from batchrun._doit.backend import RunsDirJobs
from batchrun.errors import BatchrunError, MetadataError
from batchrun.runfile.file import Job
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State
from batchrun.store.rundir import RunsDir


class _Runner:
    def __init__(self, record: JobRecord | None, fatal: BatchrunError | None = None) -> None:
        self.record = record
        self.fatal = fatal
        self.ran: list[str] = []

    def run_job(self, job: Job) -> JobRecord | None:
        self.ran.append(job.job_id)
        return self.record


def _record(state: str) -> JobRecord:
    rec = JobRecord("a" * 16)
    rec.state = state
    return rec


def test_a_job_that_ended_is_a_doit_success_even_after_a_fatal_error() -> None:
    # A doit failure would make doit forget the task (remove_success).
    job = Job("echo a", "a" * 16, 1)
    fatal = MetadataError("disk full")
    assert doit_runner.JobAction(_Runner(_record(State.FAILED), fatal), job).execute() is None
    assert isinstance(doit_runner.JobAction(_Runner(None, fatal), job).execute(), TaskError)
    assert isinstance(doit_runner.JobAction(_Runner(_record(State.INTERRUPTED), fatal), job).execute(), TaskError)
    assert doit_runner.JobAction(_Runner(None), job).execute() is None


def test_the_loader_hands_out_windows_of_jobs_not_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = RunsDir(tmp_path)
    journal = Journal(tmp_path)
    journal.open()
    jobs = [Job(f"echo {i}", f"{i:016x}", i + 1) for i in range(7)]
    journal.record_end(jobs[0].job_id, 1, 0, 1.0, 2.0)
    journal.record_end(jobs[1].job_id, 1, 3, 1.0, 2.0)
    source = RunsDirJobs(runs, {job.job_id for job in jobs}, "retry_failed", journal)
    monkeypatch.setattr(doit_runner, "WINDOW", 3)
    loader = doit_runner.JobTaskLoader(_Runner(None), source, jobs, lambda: False)
    first, second, third = loader.next_window(), loader.next_window(), loader.next_window()
    journal.close()
    assert [t.name for t in first or []] == [jobs[1].job_id, jobs[2].job_id, jobs[3].job_id]
    assert [t.name for t in second or []] == [job.job_id for job in jobs[4:7]]
    assert third is None


def test_the_first_window_doit_keeps_all_run_is_the_small_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # doit's command holds the task list it loaded first until the run ends.
    runs = RunsDir(tmp_path)
    journal = Journal(tmp_path)
    journal.open()
    jobs = [Job(f"echo {i}", f"{i:016x}", i + 1) for i in range(9)]
    source = RunsDirJobs(runs, {job.job_id for job in jobs}, "retry_failed", journal)
    monkeypatch.setattr(doit_runner, "WINDOW", 5)
    monkeypatch.setattr(doit_runner, "FIRST_WINDOW", 2)
    loader = doit_runner.JobTaskLoader(_Runner(None), source, jobs, lambda: False)
    first, second = loader.load_tasks(None, None), loader.next_window()
    journal.close()
    assert [t.name for t in first] == [job.job_id for job in jobs[:2]]
    assert [t.name for t in second or []] == [job.job_id for job in jobs[2:7]]


def test_a_job_task_title_is_its_name_and_command() -> None:
    assert doit_runner.job_title(Task("exp:abc", ["true"], doc="python3 train.py")) == "exp:abc: python3 train.py"
    assert doit_runner.job_title(Task("other", ["true"])) == "other"


class _GrowingQueue:
    """A job source that says "nothing yet" twice between jobs, then "no more"."""

    def __init__(self, jobs: list[Job]) -> None:
        self.answers: list[list[Job] | None] = []
        for job in jobs:
            self.answers += [[], [], [job]]
        self.answers.append(None)
        self.asked: list[str] = []

    def next_jobs(self, limit: int, is_done: object) -> list[Job] | None:
        answer = self.answers.pop(0) if self.answers else None
        self.asked.append("none" if answer is None else str(len(answer)))
        return answer


class _Launch:
    def __init__(self, tmp_path: Path) -> None:
        self.runs_dir = RunsDir(tmp_path)
        self.journal = Journal(tmp_path)
        self.options = type("Options", (), {"mode": "resume"})()
        self.runner = type("Runner", (), {"spare_workers": 0})()
        self.fatal = None
        self.ran: list[str] = []

    def should_stop_dispatch(self) -> bool:
        return False

    def is_running(self, job_id: str) -> bool:
        return False

    def run_job(self, job: Job) -> JobRecord | None:
        self.ran.append(job.command)
        return self.journal.record_end(job.job_id, 1, 0, 1.0, 2.0)


@pytest.mark.parametrize("n_jobs", [1, 3])
def test_a_job_queue_that_says_nothing_yet_keeps_the_run_going_until_it_says_no_more(tmp_path: Path, n_jobs: int) -> None:
    launch = _Launch(tmp_path)
    launch.journal.open()
    jobs = [Job(f"echo {i}", f"{i:016x}", i + 1) for i in range(3)]
    queue = _GrowingQueue(jobs)
    try:
        assert doit_runner.run_job_tasks(launch, queue, n_jobs) == 0
    finally:
        launch.journal.close()
    assert sorted(launch.ran) == ["echo 0", "echo 1", "echo 2"]
    assert queue.asked.count("0") == 6 and "none" in queue.asked
