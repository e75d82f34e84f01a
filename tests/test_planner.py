"""Unit tests of the planner: the one decision of what a launch does with each job."""

from __future__ import annotations

import pytest

from batchrun.launch.options import Mode, Order
from batchrun.launch.plan import Group, classify, done_for_mode, make_plan
from batchrun.runfile.file import Job, job_id_of
from batchrun.store.records import JobRecord, State


def job(command: str, line: int = 1) -> Job:
    return Job(command, job_id_of(command), line)


def record(command: str, state: State, status: int | None = None) -> JobRecord:
    rec = JobRecord(job_id_of(command))
    rec.state, rec.status, rec.attempts = state, status, 1
    return rec


@pytest.mark.parametrize(
    ("state", "resume", "retry_failed", "overwrite"),
    [
        (None, False, False, False),
        (State.PENDING, False, False, False),
        (State.RUNNING, False, False, False),
        (State.SUCCEEDED, True, True, False),
        (State.FAILED, True, False, False),
        (State.TIMEOUT, True, False, False),
        (State.INTERRUPTED, False, False, False),
        # `batchrun kill`: not rerun by a plain relaunch, rerun by --retry-failed.
        (State.KILLED, True, False, False),
        # Ended early by an adaptive sweep: done, and not a failure.
        (State.STOPPED, True, True, False),
    ],
)
def test_done_for_mode(state: State | None, resume: bool, retry_failed: bool, overwrite: bool) -> None:
    rec = None if state is None else record("x", state)
    assert [done_for_mode(rec, mode) for mode in Mode] == [resume, retry_failed, overwrite]
    assert done_for_mode(rec, "resume") == resume, "plain strings name modes too"


def test_classify() -> None:
    assert classify(None) == Group.NEW
    assert classify(record("a", State.SUCCEEDED)) == Group.SUCCEEDED
    assert classify(record("a", State.TIMEOUT)) == Group.FAILED
    assert classify(record("a", State.INTERRUPTED)) == Group.INTERRUPTED
    assert classify(record("a", State.KILLED)) == Group.FAILED
    assert classify(record("a", State.STOPPED)) == Group.STOPPED
    assert classify(record("a", State.SUCCEEDED), adopted=True) == Group.RUNNING


def _mix() -> tuple[list[Job], dict[str, JobRecord]]:
    jobs = [job(c, i) for i, c in enumerate(["new", "ok", "bad", "late", "stopped", "running"], start=1)]
    records = {
        rec.job_id: rec
        for rec in [
            record("ok", State.SUCCEEDED, 0), record("bad", State.FAILED, 3), record("late", State.TIMEOUT, 143),
            record("stopped", State.INTERRUPTED), record("running", State.RUNNING), record("gone", State.FAILED, 1),
        ]
    }
    return jobs, records


@pytest.mark.parametrize(
    ("mode", "to_run", "counts"),
    [
        (Mode.RESUME, ["new", "stopped"], (1, 1, 2, 2, 1)),
        (Mode.RETRY_FAILED, ["new", "bad", "late", "stopped"], (1, 1, 2, 0, 1)),
        (Mode.OVERWRITE, ["new", "ok", "bad", "late", "stopped"], (5, 0, 0, 0, 0)),
    ],
)
def test_make_plan_in_each_mode(mode: Mode, to_run: list[str], counts: tuple[int, ...]) -> None:
    jobs, records = _mix()
    gone = job("gone")
    plan = make_plan(jobs, records, mode, adopt_ids={job_id_of("running"), gone.job_id}, recovered=4, removed_jobs=[gone])
    assert [j.command for j in plan.to_run] == to_run
    assert [j.command for j in plan.adopt] == ["running", "gone"], "an adopted job still finishes when its line went"
    assert (plan.new, plan.succeeded, plan.failed, plan.failed_skipped, plan.rerun_unfinished) == counts
    assert (plan.recovered, plan.removed, plan.ignored) == (4, 1, 0)
    assert not plan.nothing_to_do


def test_shuffle_is_seeded_and_file_order_is_kept() -> None:
    jobs = [job(f"echo {i}", i) for i in range(20)]
    file_order = make_plan(jobs, {}, Mode.RESUME, Order.FILE)
    one = make_plan(jobs, {}, Mode.RESUME, Order.SHUFFLE, seed=3)
    two = make_plan(jobs, {}, Mode.RESUME, "shuffle", seed=3)
    assert file_order.to_run == jobs
    assert one.to_run == two.to_run != jobs and sorted(one.to_run, key=lambda j: j.lineno) == jobs


class _IgnorableRecord(JobRecord):
    """A record with the `ignored` flag the journal learns from `doit ignore`."""

    __slots__ = ("ignored",)


def test_ignored_jobs_are_skipped_and_counted_in_every_mode() -> None:
    rec = _IgnorableRecord(job_id_of("skip me"))
    rec.ignored = True
    for mode in Mode:
        plan = make_plan([job("skip me"), job("run me", 2)], {rec.job_id: rec}, mode)
        assert ([j.command for j in plan.to_run], plan.ignored) == (["run me"], 1)


def test_nothing_to_do() -> None:
    jobs, records = _mix()
    done = {job_id: rec for job_id, rec in records.items() if rec.state == State.SUCCEEDED}
    assert make_plan([job("ok")], done).nothing_to_do
