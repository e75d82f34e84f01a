"""The `Executor` interface every executor implements, and the options a launch gives every executor.

Kept apart from the registry in `batchrun.executors` so that the executors
import their interface without importing the registry that imports them.
What only one executor needs (SLURM's sbatch arguments, Dask's scheduler) is
in that executor's own settings class (`Executor.Settings`), in its folder.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import batchrun.executors.exitlog as exitlog
from batchrun.executors.jobfiles import job_alive
from batchrun.liveness import LockTable
from batchrun.resources import Request

__all__ = ["Executor", "ExecutorName", "ExecutorOptions", "NoSettings", "Unwatched"]

# job id -> (the journal's reference for it, or None; its log directory): jobs no launch watches.
Unwatched = Mapping[str, "tuple[str | None, Path]"]


class ExecutorName(str, enum.Enum):
    """Where jobs run: the `--executor` choices. The value is what journals and messages say."""

    LOCAL = "local"
    SLURM = "slurm"
    DASK = "dask"

    def __str__(self) -> str:
        return self.value


@dataclass
class ExecutorOptions:
    """What every executor needs from the launch's options."""

    n_jobs: int = 1
    cwd: str = "."
    runs_dir: str = "."
    # The runs directory's journal, when the executor may append jobs' start lines to it itself (`start_noted`).
    journal: str | None = None


@dataclass(frozen=True)
class NoSettings:
    """The settings of an executor that has none of its own."""


class Executor(abc.ABC):
    """Runs jobs somewhere; one instance per launch."""

    # An ExecutorName member (a str, so plain comparisons with "local" hold).
    name: ClassVar[str]
    # This executor's own settings (a dataclass built by keyword from the launch's
    # options of the same names, `settings_from`), kept as `self.settings`.
    Settings: ClassVar[type[Any]] = NoSettings
    # The cluster `unwatched_alive` asks when allowed to (`wait` names it, and
    # the command it asks with, while it waits): None for executors that need none.
    cluster: ClassVar[str | None] = None
    cluster_query: ClassVar[str] = ""
    # True when the cluster itself enforces each job's time limit (from the job's
    # start, not its submission) and sends its checkpoint signal, as SLURM's
    # --time and --signal do: the launch then sets no deadline of its own.
    enforces_time_limit: ClassVar[bool] = False

    def __init__(self, options: ExecutorOptions, settings: Any = None) -> None:
        self.options = options
        self.settings = self.Settings() if settings is None else settings
        # The name of this launch's exit log (`exitlog`), which its jobs' supervisors append to.
        self.launch = exitlog.launch_name()

    @classmethod
    def settings_from(cls, values: Mapping[str, Any]) -> Any:
        """This executor's settings from the launch's executor options (those of other executors are left out)."""
        fields = getattr(cls.Settings, "__dataclass_fields__", {})
        return cls.Settings(**{name: value for name, value in values.items() if name in fields})

    # -- what is known without a launch: references and liveness -------------

    @classmethod
    @abc.abstractmethod
    def made(cls, ref: str) -> bool:
        """Whether a journal reference is of the kind this executor returns from `start`."""

    @classmethod
    def unwatched_alive(cls, jobs: Unwatched, locks: LockTable | None, ask_cluster: bool) -> dict[str, bool | None]:
        """For jobs this executor started and no launch watches: whether each still queues or runs (None: cannot tell now).

        Asked without a connection (`status`, `wait`). By default the job's
        lock answers: every supervisor holds out.log's flock while its job
        lives. `ask_cluster` allows one query of a cluster for all of them.
        """
        return {job_id: job_alive(log_dir, locks) for job_id, (_, log_dir) in jobs.items()}

    def open(self) -> None:  # noqa: B027 - an optional hook; most executors need none
        """Connect or check the environment before the first job (may raise ExecutorError)."""

    def warm(self, slots: int) -> None:  # noqa: B027 - an optional hook
        """Get ready to start jobs in this many slots at once, while the launch still sets up (the local executor starts its slot helpers)."""

    @abc.abstractmethod
    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str], request: Request | None = None) -> str:
        """Start a job; return a reference for the journal (no spaces).

        `request` is what the job asks for (`batchrun.resources`): a cluster
        executor asks its cluster for it; locally the launch's scheduler has
        placed the job already.
        """

    # True when `start_noted` is offered: the executor appends each job's start
    # line to the journal itself, right before the job starts, so that a job
    # can wait behind a slot's running one and be nothing in any record until
    # it starts (the local executor's slot helpers).
    notes_starts: bool = False
    # A job may wait behind a slot's job that started less than this long ago (seconds; 0: never).
    queue_young: float = 0.0

    def start_noted(
        self, job_id: str, command: str, log_dir: str, env: dict[str, str], slot: int, line: tuple[str, str], give_up: Callable[[], bool]
    ) -> tuple[str, str | None] | None:
        """Start a job and append its start line (`line`: the text before and after its start time) to the journal right before; its reference and that start time's text (None: unknown, its helper died before it said).

        The slot's last job may still run: the job then waits behind it for a
        short while, and None says it was given back without starting (or
        withdrawn once `give_up` said so).
        """
        raise NotImplementedError

    def start_many(self, jobs: Sequence[tuple[str, str, str, dict[str, str]]], requests: Sequence[Request | None] | None = None) -> list[str]:
        """Start many jobs at once (--detach), each (job_id, command, log_dir, env) asking for its `requests` entry; their references, in order.

        Executors that can submit in bulk (SLURM job arrays) override this.
        """
        asks = list(requests) if requests is not None else [None] * len(jobs)
        return [self.start(*job, request) for job, request in zip(jobs, asks, strict=True)]

    @abc.abstractmethod
    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        """Block until the job ends; its shell's status (-N: killed by signal N), None on timeout."""

    def ended_usage(self, ref: str) -> tuple[int, float, float] | None:
        """Once `wait` returned: what the job used, (max_rss_kb, user_cpu_s, sys_cpu_s), if the executor was told; None: its record says (`jobfiles.read_usage`)."""
        return None

    def left_no_metrics(self, ref: str) -> bool:
        """Once `wait` returned: True when the executor saw the job end with no metrics file (the launch then skips reading it)."""
        return False

    @abc.abstractmethod
    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        """Send a signal to every process of a job; False when nothing was left to signal."""

    @abc.abstractmethod
    def alive(self, job_id: str, ref: str | None) -> bool:
        """True while any process of the job is alive (or it is still queued)."""

    def adopts(self, ref: str | None) -> bool:
        """Whether this executor can tell if a job an earlier launch left (reference `ref`) still runs, and follow and stop it.

        By default only jobs it made (or whose reference the journal missed).
        """
        return ref is None or self.made(ref)

    @abc.abstractmethod
    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        """Whether a job an earlier launch started (and did not see end) is still queued or running."""

    @abc.abstractmethod
    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool], attempt: int | None = None) -> None:
        """Block until an adopted job is gone (or `should_stop` says to give up)."""

    def cancel_queued(self) -> None:  # noqa: B027 - an optional hook
        """The launch is stopping: keep jobs started but not yet running from ever running."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release connections; called once at the end of the launch."""
