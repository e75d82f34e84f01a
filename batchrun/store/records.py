"""A job's record: its fields, its states, and the state a job is counted under.

How journal lines replay into records is the record table's (`recordtable`);
the line format is the journal's (see `journal`). This module knows nothing
of files, processes or doit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["FIELDS", "IGNORED", "NOT_SUCCEEDED", "REMOVED", "STATES", "Field", "JobRecord", "State", "canonical_time", "category_of", "category_of_state", "known_state"]


class State(str, enum.Enum):
    """The states a job can be in; stored lower-case in JSON and the journal.

    A `str` enum: members compare, hash and serialise as their values, so
    records replayed from text and metadata.json stay byte-identical.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    # Stopped on purpose while its launch went on: by `batchrun kill`
    # (counts as a failure; `--retry-failed` reruns it), or ended early by
    # an adaptive sweep (counts as done, not failed). Neither has an exit
    # status, and a plain relaunch runs neither again (`ENDED`).
    KILLED = "killed"
    STOPPED = "stopped"

    # Not members: set below, once the members exist.
    FINISHED: ClassVar[frozenset[State]]
    ENDED: ClassVar[frozenset[State]]
    ALL: ClassVar[tuple[State, ...]]

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        # Python 3.11 formats mixed-in enums as `State.X`; the journal's f-strings need the value.
        return str.__format__(str.__str__(self), spec)


# Ran to its end, with an exit status.
State.FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.TIMEOUT})
# Will not run again on a plain relaunch: finished, killed or stopped.
State.ENDED = State.FINISHED | {State.KILLED, State.STOPPED}
State.ALL = tuple(State)

# The pseudo-state of a job whose line is no longer in the runfile.
REMOVED = "removed"
# The pseudo-state of a job `doit ignore` set aside: no launch runs it until `doit forget`.
IGNORED = "ignored"
# Every state jobs are counted and filtered under (`category_of`), in the order they are listed.
STATES = (State.SUCCEEDED, State.FAILED, State.TIMEOUT, State.INTERRUPTED, State.KILLED, State.STOPPED, State.RUNNING, State.PENDING, IGNORED, REMOVED)
# The states of jobs that ended without succeeding: they make a launch exit 1.
NOT_SUCCEEDED = frozenset({State.FAILED, State.TIMEOUT, State.KILLED})


def category_of(rec: JobRecord | None, removed: bool = False) -> str:
    """The one state a job is counted, listed and filtered under, everywhere.

    `removed` wins (its line left the runfile), then `ignored` (set aside by
    `doit ignore`; a running job stays running), then the job's own state,
    `pending` when it has no record.
    """
    if removed:
        return REMOVED
    if rec is None:
        return State.PENDING
    return category_of_state(rec.state, rec.ignored)


def category_of_state(state: str, ignored: bool) -> str:
    """`category_of` a record in this state, ignored or not."""
    if ignored and state != State.RUNNING:
        return IGNORED
    return state


@dataclass(frozen=True)
class Field:
    """One field of a job's record: its name, and how the record table stores it (`recordtable`).

    Kinds: `state` (one of `State`), `int` and `float` (or None), `name` (a
    text of few distinct values, such as a host: kept once), `live` (a value
    only a running job has, such as its pid: dropped when the job stops
    running), `codes` (a list of exit statuses, one per attempt), `flag` (a bool).
    """

    name: str
    kind: str
    default: object = None


# A record's fields: the one place that says what a record holds. `JobRecord`,
# the record table's columns and its snapshot on disk all follow this list, so
# a new field (say, peak memory per attempt) is a line here and its kind.
FIELDS = (
    Field("state", "state", State.PENDING),
    Field("status", "int"),
    Field("start", "float"),
    Field("end", "float"),
    Field("attempts", "int", 0),
    # Where and how it runs: meaningful only while it runs.
    Field("slot", "live"),
    Field("host", "name"),
    # What it holds beside its slot, as its start record says (`gpu=0,1;cpus=8`): None for nothing.
    Field("holds", "live"),
    # The executor's reference to the running job: a pid, a SLURM job id...
    Field("ref", "live"),
    # Exit status of each attempt, in order (None: stopped unfinished).
    Field("exit_codes", "codes", ()),
    # Set by `doit ignore` (an X line): skipped until forgotten (R).
    Field("ignored", "flag", False),
)


class JobRecord:
    """What the journal knows of one job (its fields: `FIELDS`).

    A record standing alone is an ordinary mutable object; the records of a
    journal are rows of a `recordtable.RecordTable`, read and written
    through a `RecordView` of the same type.
    """

    __slots__ = ("job_id", *(field.name for field in FIELDS))

    job_id: str
    state: str
    status: int | None
    start: float | None
    end: float | None
    attempts: int
    slot: int | None
    host: str | None
    holds: str | None
    ref: str | None
    exit_codes: list[int | None]
    ignored: bool

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.state = State.PENDING
        self.status = self.start = self.end = self.slot = self.host = self.holds = self.ref = None
        self.attempts = 0
        self.exit_codes = []
        self.ignored = False

    @property
    def runtime(self) -> float | None:
        """Seconds the last attempt ran, once it has ended."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def finished(self) -> bool:
        """True when the job ran to its end, whatever its exit status."""
        return self.state in State.FINISHED

    def __repr__(self) -> str:
        return f"JobRecord({self.job_id}, {self.state}, status={self.status}, attempts={self.attempts})"


def known_state(text: str) -> str:
    """A state read back from a line; anything else is a corrupt line, not a
    new state that later code would fail on."""
    if text not in _KNOWN_STATES:
        raise ValueError(text)
    return text


# A set: checked once per replayed end line (100,000 on a big no-op relaunch).
_KNOWN_STATES = frozenset(str(state) for state in State.ALL)


def canonical_time(seconds: float) -> float:
    """A time as the journal's text gives it back (microseconds), so a record
    in memory equals the same record replayed, and metadata built from either
    is the same."""
    return float(f"{seconds:.6f}")
