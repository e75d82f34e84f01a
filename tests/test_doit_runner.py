"""Unit tests of the doit side of a launch: job actions, windows of tasks, titles."""

from __future__ import annotations

from pathlib import Path

import pytest
from doit.exceptions import TaskError
from doit.task import Task

from batchrun import doit_runner
from batchrun.doit_db import RunsDirJobs
from batchrun.errors import BatchrunError, MetadataError
from batchrun.journal import JobRecord, Journal, State
from batchrun.metadata import RunsDir
from batchrun.runfile import Job


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


def test_a_job_task_title_is_its_name_and_command() -> None:
    assert doit_runner.job_title(Task("exp:abc", ["true"], doc="python3 train.py")) == "exp:abc: python3 train.py"
    assert doit_runner.job_title(Task("other", ["true"])) == "other"
