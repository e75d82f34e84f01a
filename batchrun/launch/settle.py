"""How an attempt's end is recorded, and what becomes of the jobs a killed launch left `running`.

One rule says how a job's attempt ended (`ended_from_files`, `watched_end`):
its supervisor's exit record if it wrote one (a plain record is a job that
ended on its own: a clean exit wins over a stop that came after it; a record
naming a stop's state is that stop), else the stop note its attempt was
given before a stop's first signal (a stop outlives the launch that made it:
`stopped` stays stopped, `killed` stays killed, after a kill -9 too), else
what the launch watching it saw. `record_end` writes the answer to the
journal. The launch's runner, its adoption of a killed launch's jobs and
settlement all go through it.

Settlement (`settle_in_flight`): a launch writes its decisions to the journal
(`journal_decisions`), the read-only commands apply them to the records they
read (`apply_decisions`), so both tell the same story.

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
from batchrun.launch.attempt import shell_status
from batchrun.launch.options import ValueEnum
from batchrun.store.journal import Journal
from batchrun.store.records import AttemptEnd, JobRecord, State

__all__ = [
    "AttemptEnd",
    "Decision",
    "Outcome",
    "apply_decisions",
    "carried_stops",
    "ended_from_files",
    "journal_decisions",
    "record_end",
    "settle_in_flight",
    "settle_one",
    "watched_end",
]


def ended_from_files(log_dir: Path | str, attempt: int) -> AttemptEnd | None:
    """How the attempt ended, from its log directory alone (exit record, else stop note); None when they say nothing.

    Ask only once the job's lock was found free (see the module docstring),
    or once a launch saw its shell end.
    """
    record = jobfiles.read_exit_record(log_dir, attempt)
    if record is not None:
        return AttemptEnd.from_record(*record)
    stop = jobfiles.stop_state(log_dir, attempt)
    return AttemptEnd.stopped_as(stop) if stop is not None else None


def watched_end(log_dir: Path | str, attempt: int, returncode: int, noted: str | None, interrupted: bool) -> AttemptEnd:
    """How an attempt a launch watched ended, once its executor's `wait` returned `returncode`.

    `noted`: the state of the stop this launch noted for this attempt, if it
    stopped it. Only then can its files say more than the returncode (a
    launch that noted no stop left no note, so the record is plain), and
    are read: a plain record means it ended before the stop reached it.
    """
    if noted is not None:
        found = ended_from_files(log_dir, attempt)
        if found is not None:
            return found
        # No record and no note on disk (the note could not be written): what this launch did.
        return AttemptEnd.stopped_as(noted, None if returncode in tuple(jobfiles.Unrecorded) else shell_status(returncode))
    if returncode == jobfiles.Unrecorded.LOST:
        return AttemptEnd(State.INTERRUPTED)  # nobody saw it end: never a failure, it runs again
    if returncode == jobfiles.Unrecorded.TIMED_OUT:
        return AttemptEnd.stopped_as(State.TIMEOUT)  # its cluster's time limit stopped it; its status is unknown
    if interrupted and returncode != 0:
        return AttemptEnd(State.INTERRUPTED)  # stopped by us (or it chose to fail as we stopped it)
    return AttemptEnd.exited(shell_status(returncode))


def record_end(journal: Journal, job_id: str, attempt: int, start: float, end: float, how: AttemptEnd) -> JobRecord:
    """Journal an attempt's end: an `E` line for a job that ran to its end (a timeout with its status too), else an `I` line."""
    if how.status is not None and how.state in State.FINISHED:
        return journal.record_end(job_id, attempt, how.status, start, end, how.state if how.state == State.TIMEOUT else None)
    return journal.record_unfinished(job_id, attempt, start, end, how.state)


# -- settlement -----------------------------------------------------------------


class Outcome(ValueEnum):
    """What became of a job left running."""

    COLLECTED = "collected"  # it ended: its exit record (or stop note) says how
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
    status: int | None = None  # exit status, when collected and known
    how: AttemptEnd | None = None  # how it ended, when collected
    usage: tuple[int, float, float] | None = None  # what it used (`jobfiles.read_usage`), when collected
    stopping: str | None = None  # adopted: the state of a stop under way (its note), which the launch carries on


def settle_one(rec: JobRecord, log_dir: Path, still_running: Callable[[JobRecord, Path], bool], now: float) -> Decision:
    """Settle one job the journal shows running and no launch watches.

    `still_running` is the executor's liveness probe (the job's lock for a
    local job); it is asked before the exit record is read (see the module
    docstring for why the order matters). A stop note alone settles only a
    job that no longer runs.
    """
    running = still_running(rec, log_dir)
    how = ended_from_files(log_dir, rec.attempts)
    if how is not None and (how.recorded or not running):
        end = how.end if how.end is not None else now
        usage = jobfiles.read_usage(log_dir, rec.attempts)
        return Decision(rec.job_id, Outcome.COLLECTED, rec.attempts, rec.start or end, end, how.status, how, usage=usage)
    if running:
        return Decision(rec.job_id, Outcome.ADOPTED, rec.attempts, rec.start or now, stopping=how.state if how is not None else None)
    return Decision(rec.job_id, Outcome.RERUN, rec.attempts, rec.start or now, now)


def settle_in_flight(
    records: Mapping[str, JobRecord], log_dir_of: Callable[[str], Path], still_running: Callable[[JobRecord, Path], bool], now: float
) -> list[Decision]:
    """Settle every job `records` show running; one decision each, in record order."""
    return [settle_one(rec, log_dir_of(rec.job_id), still_running, now) for rec in list(records.values()) if rec.state == State.RUNNING]


# The stops a relaunch carries on for a job it adopts: those that decided the job's state.
_CARRIED_STOPS = frozenset({State.KILLED, State.STOPPED, State.TIMEOUT})


def carried_stops(decisions: Iterable[Decision]) -> dict[str, str]:
    """Job -> the state of the stop an earlier launch began on it, for adopted jobs whose stop the relaunch carries on.

    An interruption is not carried on: the job would only run again.
    """
    return {d.job_id: d.stopping for d in decisions if d.outcome == Outcome.ADOPTED and d.stopping in _CARRIED_STOPS}


def journal_decisions(journal: Journal, decisions: Iterable[Decision]) -> None:
    """Write a launch's settlement to its journal (adopted jobs stay running)."""
    for decision in decisions:
        if decision.outcome == Outcome.COLLECTED:
            assert decision.how is not None and decision.end is not None
            journal.record_usage(decision.job_id, decision.attempt, decision.usage)
            record_end(journal, decision.job_id, decision.attempt, decision.start, decision.end, decision.how)
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
        if decision.outcome == Outcome.COLLECTED:
            assert decision.how is not None
            if decision.usage is not None:
                rec.max_rss_kb, rec.user_cpu_s, rec.sys_cpu_s = decision.usage
            rec.start, rec.end = decision.start, decision.end
            if decision.how.status is not None and decision.how.state in State.FINISHED:
                rec.state = decision.how.state
                rec.status = decision.how.status
                # A new list, assigned (as `ended_unfinished` does): a row of the journal's
                # table (`RecordView`) keeps no appended list, and a cached record may share the old one.
                rec.exit_codes = [*rec.exit_codes, rec.status]
                rec.requeues = 0
            else:
                rec.ended_unfinished(decision.how.state)  # requeued (exit 75), or stopped unfinished
        elif decision.outcome == Outcome.RERUN:
            rec.end = None
            rec.ended_unfinished(State.INTERRUPTED)
