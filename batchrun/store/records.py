"""A job's record: its fields, its states, and the state a job is counted under.

How journal lines replay into records is the record table's (`recordtable`);
the line format is the journal's (see `journal`). This module knows nothing
of files, processes or doit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "FIELDS", "IGNORED", "NOT_SUCCEEDED", "REMOVED", "REQUEUE_STATUS", "STATES", "USAGE_FIELDS", "AttemptEnd", "Field", "JobRecord", "State", "canonical_time",
    "category_of", "category_of_state", "known_state", "start_extras", "start_fields",
]


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
    # Exited with `REQUEUE_STATUS` (75, EX_TEMPFAIL: "try again", a job that
    # saved its state when warned or preempted): not a failure, not counted
    # against --retries; it runs again, in the same launch up to --max-requeues.
    REQUEUED = "requeued"
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

# What each attempt used, as JobRecord, metadata.json, status and results name it.
USAGE_FIELDS = ("max_rss_kb", "user_cpu_s", "sys_cpu_s", "max_gpu_mem_mb")

# The exit status of a job that asks to run again (sysexits.h's EX_TEMPFAIL): `State.REQUEUED`.
REQUEUE_STATUS = 75

# The pseudo-state of a job whose line is no longer in the runfile.
REMOVED = "removed"
# The pseudo-state of a job `doit ignore` set aside: no launch runs it until `doit forget`.
IGNORED = "ignored"
# Every state jobs are counted and filtered under (`category_of`), in the order they are listed.
STATES = (State.SUCCEEDED, State.FAILED, State.TIMEOUT, State.INTERRUPTED, State.REQUEUED, State.KILLED, State.STOPPED, State.RUNNING, State.PENDING, IGNORED, REMOVED)
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

    Kinds: `state` (one of `State`), `int` and `float` (or None), `millis` (a
    float the journal gives to the millisecond, or None), `name` (a
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
    # Exit status of each attempt, in order (None: stopped unfinished; a requeued one's is 75).
    Field("exit_codes", "codes", ()),
    # Attempts requeued since the job last ran to its end (BATCHRUN_REQUEUES of the next one).
    Field("requeues", "int", 0),
    # The code version the last attempt ran under (`store.codeversion`), when its launch was in a git repository.
    Field("code", "name"),
    # What the last attempt used (its supervisor's wait4): peak resident memory, CPU seconds.
    Field("max_rss_kb", "int"),
    Field("user_cpu_s", "millis"),
    Field("sys_cpu_s", "millis"),
    # Its peak GPU memory (MiB), where nvidia-smi could tell (`launch.gpumem`).
    Field("max_gpu_mem_mb", "int"),
    # Set by `doit ignore` (an X line): skipped until forgotten (R).
    Field("ignored", "flag", False),
)


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt ended, as the journal records it."""

    state: str  # the state to record
    status: int | None = None  # the exit status (with a finished state or a timeout's), else None
    end: float | None = None  # when, if a file says so
    recorded: bool = False  # read from the supervisor's exit record

    @classmethod
    def exited(cls, status: int, end: float | None = None, recorded: bool = False) -> AttemptEnd:
        """The job ran to its end on its own, with this status (75: it asked to run again, requeued)."""
        if status == REQUEUE_STATUS:
            return cls(State.REQUEUED, status, end, recorded)
        return cls(State.SUCCEEDED if status == 0 else State.FAILED, status, end, recorded)

    @classmethod
    def from_record(cls, status: int, end: float, stop: str | None) -> AttemptEnd:
        """From a supervisor's exit record: its status, end time and the stop's state it names, if any."""
        return cls.exited(status, end, True) if stop is None else cls.stopped_as(stop, status, end, True)

    @classmethod
    def stopped_as(cls, state: str, status: int | None = None, end: float | None = None, recorded: bool = False) -> AttemptEnd:
        """A stop recorded as `state` ended it (a timeout keeps the shell's status, the others none)."""
        return cls(state, status if state == State.TIMEOUT else None, end, recorded)


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
    requeues: int
    code: str | None
    max_rss_kb: int | None
    user_cpu_s: float | None
    sys_cpu_s: float | None
    max_gpu_mem_mb: int | None
    ignored: bool

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.state = State.PENDING
        self.status = self.start = self.end = self.slot = self.host = self.holds = self.ref = None
        self.attempts = 0
        self.exit_codes = []
        self.requeues = 0
        self.code = self.max_rss_kb = self.user_cpu_s = self.sys_cpu_s = self.max_gpu_mem_mb = None
        self.ignored = False

    @property
    def runtime(self) -> float | None:
        """Seconds the last attempt ran, once it has ended."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def ended_unfinished(self, state: str) -> None:
        """The last attempt stopped before its end, as `state` (an `I` line): it runs again.

        As the record table's `stop` does to a row; the list is assigned, not
        appended to, so that it holds for a `RecordView` too.
        """
        self.state = state
        self.status = None
        if state == State.REQUEUED:
            self.requeues += 1
        self.exit_codes = [*self.exit_codes, REQUEUE_STATUS if state == State.REQUEUED else None]

    @property
    def finished(self) -> bool:
        """True when the job ran to its end, whatever its exit status."""
        return self.state in State.FINISHED

    def __repr__(self) -> str:
        return f"JobRecord({self.job_id}, {self.state}, status={self.status}, attempts={self.attempts})"


# An S line's optional fields after its host: what the job holds (`gpu=0,1;cpus=8`), then `code=<version>`.
_CODE_PREFIX = "code="


def start_extras(holds: str | None, code: str | None) -> str:
    """The optional end of an S line: what the job holds beside its slot, and the code version it runs under."""
    return (f" {holds}" if holds else "") + ("" if code is None else f" {_CODE_PREFIX}{code}")


def start_fields(extras: list[str]) -> tuple[str | None, str | None]:
    """`start_extras` read back from an S line's fields after its host: (holds, code)."""
    holds = code = None
    for extra in extras:
        if extra.startswith(_CODE_PREFIX):
            code = extra[len(_CODE_PREFIX) :]
        else:
            holds = extra
    return holds, code


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
