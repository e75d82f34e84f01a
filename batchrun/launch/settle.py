"""Settle the jobs a killed launch left `running`: collected, adopted or to run again.

One function decides (`settle_in_flight`); a launch writes its decisions to
the journal (`journal_decisions`), the read-only commands apply them to the
records they read (`apply_decisions`), so both tell the same story.

The order of the two reads is what keeps a job from running twice. A job's
supervisor writes its exit record before it lets go of the job's liveness
lock (`executors.supervisor`), so the lock is probed first and the exit record read second:
"no exit record" is only believed of a job whose processes were already all
gone when it was read, and no process of it can come back, because only the
launch that holds the runs directory starts jobs there. Read the other way
round, a job ending between the two reads would look dead with no record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from batchrun.executors import jobfiles
from batchrun.launch.options import ValueEnum
from batchrun.store.journal import Journal
from batchrun.store.records import REQUEUE_STATUS, JobRecord, State

__all__ = ["Decision", "Outcome", "apply_decisions", "journal_decisions", "settle_in_flight", "settle_one"]


class Outcome(ValueEnum):
    """What became of a job left running."""

    COLLECTED = "collected"  # it ended: its exit record says how (75: requeued, it runs again)
    ADOPTED = "adopted"  # still running: wait for it
    RERUN = "rerun"  # gone with no exit record: it runs again


@dataclass(frozen=True)
class Decision:
    """The settlement of one job's attempt."""

    job_id: str
    outcome: Outcome
    attempt: int
    start: float
    end: float | None = None  # when it ended (collected) or was found gone (rerun)
    status: int | None = None  # exit status, when collected
    usage: tuple[int, float, float] | None = None  # what it used (`jobfiles.read_usage`), when collected


def settle_one(rec: JobRecord, log_dir: Path, still_running: Callable[[JobRecord, Path], bool], now: float) -> Decision:
    """Settle one job the journal shows running and no launch watches.

    `still_running` is the executor's liveness probe (the job's lock for a
    local job); it is asked before the exit record is read (see the module
    docstring for why the order matters).
    """
    running = still_running(rec, log_dir)
    exit_record = jobfiles.read_exit_record(log_dir, rec.attempts)
    if exit_record is not None:
        status, end = exit_record
        return Decision(rec.job_id, Outcome.COLLECTED, rec.attempts, rec.start or end, end, status, jobfiles.read_usage(log_dir, rec.attempts))
    if running:
        return Decision(rec.job_id, Outcome.ADOPTED, rec.attempts, rec.start or now)
    return Decision(rec.job_id, Outcome.RERUN, rec.attempts, rec.start or now, now)


def settle_in_flight(
    records: Mapping[str, JobRecord], log_dir_of: Callable[[str], Path], still_running: Callable[[JobRecord, Path], bool], now: float
) -> list[Decision]:
    """Settle every job `records` show running; one decision each, in record order."""
    return [settle_one(rec, log_dir_of(rec.job_id), still_running, now) for rec in list(records.values()) if rec.state == State.RUNNING]


def journal_decisions(journal: Journal, decisions: Iterable[Decision]) -> None:
    """Write a launch's settlement to its journal (adopted jobs stay running)."""
    for decision in decisions:
        if decision.outcome == Outcome.COLLECTED:
            journal.record_usage(decision.job_id, decision.attempt, decision.usage)
        if decision.outcome == Outcome.COLLECTED and decision.status == REQUEUE_STATUS:
            assert decision.end is not None
            journal.record_unfinished(decision.job_id, decision.attempt, decision.start, decision.end, State.REQUEUED)
        elif decision.outcome == Outcome.COLLECTED:
            assert decision.status is not None and decision.end is not None
            journal.record_end(decision.job_id, decision.attempt, decision.status, decision.start, decision.end)
        elif decision.outcome == Outcome.RERUN:
            assert decision.end is not None
            journal.record_unfinished(decision.job_id, decision.attempt, decision.start, decision.end)


def apply_decisions(records: Mapping[str, JobRecord], decisions: Iterable[Decision]) -> None:
    """Apply a settlement to records in memory, as the journal would replay it.

    For the read-only commands, which must not write: the record a launch's
    `journal_decisions` would leave is the record they show.
    """
    for decision in decisions:
        rec = records[decision.job_id]
        # A copy of the list: the record may share it with a cache.
        rec.exit_codes = list(rec.exit_codes)
        if decision.usage is not None:
            rec.max_rss_kb, rec.user_cpu_s, rec.sys_cpu_s = decision.usage
        if decision.outcome == Outcome.COLLECTED and decision.status == REQUEUE_STATUS:
            rec.start, rec.end = decision.start, decision.end
            rec.ended_unfinished(State.REQUEUED)
        elif decision.outcome == Outcome.COLLECTED:
            assert decision.status is not None
            rec.state = State.SUCCEEDED if decision.status == 0 else State.FAILED
            rec.status = decision.status
            rec.start, rec.end = decision.start, decision.end
            rec.exit_codes.append(decision.status)
            rec.requeues = 0
        elif decision.outcome == Outcome.RERUN:
            rec.end = None
            rec.ended_unfinished(State.INTERRUPTED)
