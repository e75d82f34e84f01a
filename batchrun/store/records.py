"""A job's record, its states, and how journal lines replay into records.

The line format is the journal's (see `journal`); this module reads it and
knows nothing of files, processes or doit.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from batchrun.errors import MetadataError

__all__ = ["IGNORED", "NOT_SUCCEEDED", "REMOVED", "REQUEUE_STATUS", "STATES", "USAGE_FIELDS", "AttemptEnd", "JobRecord", "State", "canonical_time", "category_of", "replay", "start_extras"]


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
    if rec.ignored and rec.state != State.RUNNING:
        return IGNORED
    return rec.state


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
    """What the journal knows of one job; mutable, one per job id."""

    __slots__ = (
        "attempts", "code", "end", "exit_codes", "holds", "host", "ignored", "job_id", "max_gpu_mem_mb", "max_rss_kb", "ref", "requeues", "slot", "start",
        "state", "status", "sys_cpu_s", "user_cpu_s",
    )

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.state: str = State.PENDING
        self.status: int | None = None
        self.start: float | None = None
        self.end: float | None = None
        self.attempts = 0
        self.slot: int | None = None
        self.host: str | None = None
        # What a running job holds beside its slot, as its start record says (`gpu=0,1;cpus=8`): None for nothing.
        self.holds: str | None = None
        # The executor's reference to the running job: a pid, a SLURM job id...
        self.ref: str | None = None
        # Exit status of each attempt, in order (None: stopped unfinished; a requeued one's is 75).
        self.exit_codes: list[int | None] = []
        # Attempts requeued since the job last ran to its end (BATCHRUN_REQUEUES of the next one).
        self.requeues = 0
        # The code version the last attempt ran under (`store.codeversion`), when its launch was in a git repository.
        self.code: str | None = None
        # What the last attempt used (its supervisor's wait4): peak resident memory, CPU seconds.
        self.max_rss_kb: int | None = None
        self.user_cpu_s: float | None = None
        self.sys_cpu_s: float | None = None
        # Its peak GPU memory (MiB), where nvidia-smi could tell (`launch.gpumem`).
        self.max_gpu_mem_mb: int | None = None
        # Set by `doit ignore` (an X line): skipped until forgotten (R).
        self.ignored = False

    @property
    def runtime(self) -> float | None:
        """Seconds the last attempt ran, once it has ended."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def ended_unfinished(self, state: str) -> None:
        """The last attempt stopped before its end, as `state` (an `I` line): it runs again."""
        self.state = state
        self.status = None
        if state == State.REQUEUED:
            self.requeues += 1
            self.exit_codes.append(REQUEUE_STATUS)
        else:
            self.exit_codes.append(None)

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


def replay(records: dict[str, JobRecord], lines: Iterable[str | bytes], path: Path) -> None:
    """Apply journal lines, in order, to `records` (the format is in the module docstring).

    Raises:
        MetadataError: a line that is not a journal line, named by its number in `path`.
    """
    for lineno, raw in enumerate(lines, start=1):
        if not raw:
            continue
        try:
            parts = (raw if isinstance(raw, str) else raw.decode("ascii")).split(" ")
            kind = parts[0]
            job_id = parts[1]
            rec = records.get(job_id)
            if rec is None:
                rec = records[job_id] = JobRecord(job_id)
            if kind == "E":
                rec.attempts = int(parts[2])
                rec.status = int(parts[3])
                rec.start = float(parts[4])
                rec.end = float(parts[5])
                rec.state = State.SUCCEEDED if rec.status == 0 else State.FAILED
                if len(parts) > 6:
                    rec.state = _known_state(parts[6])
                if len(parts) > 7:
                    rec.host = parts[7]  # written by compaction, which drops the S line
                if len(parts) > 8:
                    rec.code = parts[8]  # likewise
                rec.exit_codes.append(rec.status)
                rec.requeues = 0
            elif kind == "S":
                rec.attempts = int(parts[2])
                rec.start = float(parts[3])
                rec.slot = int(parts[4])
                rec.host = parts[5]
                rec.holds = rec.code = None
                for extra in parts[6:]:
                    if extra.startswith(_CODE_PREFIX):
                        rec.code = extra[len(_CODE_PREFIX) :]
                    else:
                        rec.holds = extra
                rec.state = State.RUNNING
                rec.status = rec.end = rec.ref = None
                rec.max_rss_kb = rec.user_cpu_s = rec.sys_cpu_s = rec.max_gpu_mem_mb = None
            elif kind == "U":
                rec.max_rss_kb, rec.user_cpu_s, rec.sys_cpu_s = int(parts[3]), float(parts[4]), float(parts[5])
                rec.max_gpu_mem_mb = int(parts[6]) if len(parts) > 6 else None
            elif kind == "P":
                rec.ref = parts[3]
            elif kind == "I":
                rec.attempts = int(parts[2])
                rec.start = float(parts[3])
                rec.end = float(parts[4])
                rec.ended_unfinished(_known_state(parts[5]))
                if len(parts) > 6:
                    rec.code = parts[6]  # written by compaction, which drops the S line
            elif kind == "R":
                fresh = records[job_id] = JobRecord(job_id)
                fresh.attempts, fresh.exit_codes = rec.attempts, rec.exit_codes
            elif kind == "X":
                rec.ignored = True
            else:
                raise ValueError(kind)
        except (ValueError, IndexError, UnicodeDecodeError) as err:
            # ascii(): any byte shows as an escape, and the message stays one line.
            shown = raw[:60] if isinstance(raw, str) else raw[:60].decode("latin-1")
            raise MetadataError(
                f"{path}:{lineno}: corrupt job journal line {ascii(shown)}; "
                "remove that line (jobs it recorded will run again)"
            ) from err


def _known_state(text: str) -> str:
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
