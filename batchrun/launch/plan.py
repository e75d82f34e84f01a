"""The one decision of what a launch does with each job: pure, no I/O.

`launch`, `launch --dry-run`, `plan` and `status` all call `make_plan` on
records that `settle` has settled (a launch on the journal, the read-only
commands in memory), so what they show is what a launch does. doit's
up-to-date check of a job task asks `done_for_mode`, the same question.

The plan is made over a `Ledger` (one byte a job: its state, and whether it
is ignored), its jobs to run kept as indices into the runfile's table
(`PendingJobs`): a million pending lines plan in a fraction of a second and
a few megabytes.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

from batchrun.launch.options import Mode, Order, ValueEnum
from batchrun.runfile.file import Job, JobTable
from batchrun.store.ledger import IGNORED_BIT, Ledger, key_table
from batchrun.store.records import JobRecord, State
from batchrun.store.recordtable import STATE_CODE

__all__ = ["Group", "PendingJobs", "Plan", "classify", "done_for_mode", "is_ignored", "make_plan", "state_done"]


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

    to_run: Sequence[Job]  # a `PendingJobs` (indices into the runfile's table), or a list
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


class PendingJobs(Sequence[Job]):
    """A plan's jobs to run: indices into the runfile's `JobTable`, a `Job` built when one is read.

    A million pending jobs are 8 MB of indices here, where a list of `Job`s
    was 230 MB; the launch hands them to doit a window at a time.
    """

    __slots__ = ("_indices", "_jobs")

    def __init__(self, jobs: JobTable, indices: array[int]) -> None:
        self._jobs = jobs
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, i: int) -> Job: ...

    @overload
    def __getitem__(self, i: slice) -> list[Job]: ...

    def __getitem__(self, i: int | slice) -> Job | list[Job]:
        if isinstance(i, slice):
            return list(self._jobs.jobs_at(self._indices[i]))
        return self._jobs[self._indices[i]]

    def __iter__(self) -> Iterator[Job]:
        return self._jobs.jobs_at(self._indices)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __radd__(self, other: list[Job]) -> list[Job]:
        # `plan.adopt + plan.to_run`, for callers that want one list (a small bayes plan).
        return [*other, *self]

    def __repr__(self) -> str:
        return f"PendingJobs({len(self)} jobs)"


def make_plan(
    jobs: Iterable[Job] | Ledger,
    records: Mapping[str, JobRecord] | None = None,
    mode: str = Mode.RESUME,
    order: str = Order.FILE,
    seed: int = 0,
    adopt_ids: Collection[str] = (),
    recovered: int = 0,
    removed_jobs: Iterable[Job] = (),
) -> Plan:
    """Plan a launch of `jobs` (runfile order) from settled records.

    Args:
        jobs: the runfile's jobs, or a `Ledger` of them and their records
            (then `records` is not given): a launch's own, whose rows it
            found already.
        records: every job's record, settled: RUNNING only for `adopt_ids`.
        adopt_ids: jobs a killed launch left running, to wait for.
        recovered: how many jobs settlement collected (reported, not re-decided).
        removed_jobs: jobs no longer in the runfile (their old commands), for
            those among `adopt_ids`: an adopted job still finishes.
    """
    ledger = jobs if isinstance(jobs, Ledger) else Ledger.of(jobs, records or {})
    table = ledger.jobs
    keys = bytearray(ledger.keys())
    # Adopted jobs are neither counted nor run: their key becomes one no group has.
    adopted_key = 255
    adopted = sorted(i for i in map(table.index_of, adopt_ids) if i >= 0)
    for i in adopted:
        keys[i] = adopted_key
    adopt = list(table.jobs_at(adopted))
    counts = dict.fromkeys(Group, 0)
    ignored = 0
    for state, group in _GROUP_OF_STATE.items():
        counts[group] += keys.count(STATE_CODE[state])
        ignored += keys.count(STATE_CODE[state] + IGNORED_BIT)
    # To run: not ignored, not adopted, not done for the mode.
    to_run_table = key_table((state, False) for state in State.ALL if not state_done(state, mode))
    indices = ledger.indices(to_run_table, bytes(keys))
    for job in removed_jobs:
        if job.job_id in adopt_ids and table.index_of(job.job_id) < 0:
            adopt.append(job)
    removed = len(ledger.removed_ids()) if len(ledger.records) else 0
    if order == Order.SHUFFLE:
        random.Random(seed).shuffle(indices)
    to_run = PendingJobs(table, indices)
    failed = counts[Group.FAILED]
    if mode == Mode.OVERWRITE:
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


def _record_in(state: str) -> JobRecord:
    rec = JobRecord("")
    rec.state = state
    return rec


# `classify` of a record in each state, not adopted: the groups `make_plan` counts by state code.
_GROUP_OF_STATE = {state: classify(_record_in(state)) for state in State.ALL}
