"""The one decision of what a launch does with each job: pure, no I/O.

`launch`, `launch --dry-run`, `plan` and `status` all call `make_plan` on
records that `settle` has settled (a launch on the journal, the read-only
commands in memory), so what they show is what a launch does. doit's
up-to-date check of a job task asks `done_for_mode`, the same question.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from batchrun.launch.options import Mode, Order, ValueEnum
from batchrun.runfile.file import Job
from batchrun.store.records import JobRecord, State

__all__ = ["Group", "Plan", "classify", "done_for_mode", "is_ignored", "make_plan", "state_done"]


class Group(ValueEnum):
    """What a job is to the next launch, in the order `plan` lists them."""

    NEW = "new"
    INTERRUPTED = "interrupted"  # stopped unfinished (or crashed): runs again
    RUNNING = "running"  # left running by a killed launch: adopted
    FAILED = "failed"  # finished with a non-zero status, timed out, or killed by `batchrun kill`
    SUCCEEDED = "succeeded"
    STOPPED = "stopped"  # ended early on purpose (adaptive sweeps): done, not failed
    RECOVERED = "recovered"  # ended while no launch was watching (also in succeeded/failed)
    REMOVED = "removed"  # no longer in the runfile


@dataclass(kw_only=True)
class Plan:
    """What a launch will do, decided before anything runs."""

    to_run: list[Job]
    adopt: list[Job]
    new: int
    succeeded: int
    failed: int  # finished with a non-zero status
    failed_skipped: int
    rerun_unfinished: int  # interrupted or crashed, to run again
    recovered: int  # ended while no launch was watching, collected now
    removed: int  # records of jobs no longer in the runfile
    ignored: int = 0  # `doit ignore`d: skipped whatever the mode
    stopped: int = 0  # ended early on purpose: skipped unless --rerun-all

    @property
    def nothing_to_do(self) -> bool:
        return not self.to_run and not self.adopt


def is_ignored(rec: JobRecord | None) -> bool:
    """Whether `doit ignore` set this job aside (the journal's `X` line)."""
    return rec is not None and rec.ignored


def done_for_mode(rec: JobRecord | None, mode: str) -> bool:
    """Whether a job needs no run in a launch of this mode (doit's up-to-date answer): `state_done` of its record."""
    return rec is not None and state_done(rec.state, mode)


def state_done(state: str, mode: str) -> bool:
    """Whether a job in this state needs no run in a launch of this mode: the one rule.

    resume: it ended (finished whatever its status, killed or stopped);
    retry_failed: it succeeded or was stopped early (a decision, not a
    failure); overwrite: never. The planner, the quick answer from the
    fingerprint, doit's up-to-date check and the runner all ask this.
    """
    if mode == Mode.RESUME:
        return state in State.ENDED
    if mode == Mode.RETRY_FAILED:
        return state in _NOT_FAILED
    return False


# The ended states `--retry-failed` does not run again.
_NOT_FAILED = frozenset({State.SUCCEEDED, State.STOPPED})


def classify(rec: JobRecord | None, adopted: bool = False) -> Group:
    """Which group of `Group` a job of the runfile is in, its mode aside."""
    if adopted:
        return Group.RUNNING
    if rec is None or rec.state == State.PENDING:
        return Group.NEW
    if rec.state == State.SUCCEEDED:
        return Group.SUCCEEDED
    if rec.state == State.STOPPED:
        return Group.STOPPED
    if rec.state in State.ENDED:
        return Group.FAILED
    return Group.INTERRUPTED


def make_plan(
    jobs: Iterable[Job],
    records: Mapping[str, JobRecord],
    mode: str = Mode.RESUME,
    order: str = Order.FILE,
    seed: int = 0,
    adopt_ids: Collection[str] = (),
    recovered: int = 0,
    removed_jobs: Iterable[Job] = (),
) -> Plan:
    """Plan a launch of `jobs` (runfile order) from settled records.

    Args:
        records: every job's record, settled: RUNNING only for `adopt_ids`.
        adopt_ids: jobs a killed launch left running, to wait for.
        recovered: how many jobs settlement collected (reported, not re-decided).
        removed_jobs: jobs no longer in the runfile (their old commands), for
            those among `adopt_ids`: an adopted job still finishes.
    """
    overwrite = mode == Mode.OVERWRITE
    to_run: list[Job] = []
    adopt: list[Job] = []
    counts = dict.fromkeys(Group, 0)
    ignored = 0
    in_runfile: set[str] = set()
    for job in jobs:
        job_id = job.job_id
        in_runfile.add(job_id)
        rec = records.get(job_id)
        adopted = job_id in adopt_ids
        if not adopted and is_ignored(rec):
            ignored += 1
            continue
        group = classify(rec, adopted)
        if group == Group.RUNNING:
            adopt.append(job)
            continue
        counts[group] += 1
        if not done_for_mode(rec, mode):
            to_run.append(job)
    for job in removed_jobs:
        if job.job_id in adopt_ids and job.job_id not in in_runfile:
            adopt.append(job)
    removed = sum(1 for job_id in records if job_id not in in_runfile)
    if order == Order.SHUFFLE:
        random.Random(seed).shuffle(to_run)
    failed = counts[Group.FAILED]
    if overwrite:
        # --rerun-all forgets every record first: all count as new.
        return Plan(
            to_run=to_run, adopt=adopt, new=len(to_run), succeeded=0, failed=0, failed_skipped=0,
            rerun_unfinished=0, recovered=recovered, removed=removed, ignored=ignored,
        )
    return Plan(
        to_run=to_run,
        adopt=adopt,
        new=counts[Group.NEW],
        succeeded=counts[Group.SUCCEEDED],
        failed=failed,
        failed_skipped=failed if mode == Mode.RESUME else 0,
        rerun_unfinished=counts[Group.INTERRUPTED],
        recovered=recovered,
        removed=removed,
        ignored=ignored,
        stopped=counts[Group.STOPPED],
    )
