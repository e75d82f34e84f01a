"""Where jobs run: the `Executor` interface and the registry of executors.

The launch drives every executor the same way, one job per worker slot:
`start` returns a reference (a pid, a SLURM job id, a Dask key) that the
journal keeps; `wait` blocks until the job ends and returns its wrapper's
exit status; `signal`/`alive` let the launch stop jobs; `still_running` and
`wait_adopted` let a later launch take over jobs an earlier one left behind.
Every executor runs a job under the same shell wrapper, which writes the exit
status into the job's log directory, so results never depend on the
executor's own bookkeeping.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from batchrun.errors import UsageError

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "make_executor"]


@dataclass
class ExecutorOptions:
    """What executors may need from the launch's options."""

    n_jobs: int = 1
    cwd: str = "."
    runs_dir: str = "."
    sbatch_args: list[str] = field(default_factory=list)
    scheduler: str | None = None


class Executor(abc.ABC):
    """Runs jobs somewhere; one instance per launch."""

    name: ClassVar[str]

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    def open(self) -> None:  # noqa: B027 - an optional hook; most executors need none
        """Connect or check the environment before the first job (may raise ExecutorError)."""

    @abc.abstractmethod
    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> str:
        """Start a job; return a reference for the journal (no spaces)."""

    def start_many(self, jobs: Sequence[tuple[str, str, str, dict[str, str]]]) -> list[str]:
        """Start many jobs at once (--detach), each (job_id, command, log_dir, env); their references, in order.

        Executors that can submit in bulk (SLURM job arrays) override this.
        """
        return [self.start(*job) for job in jobs]

    @abc.abstractmethod
    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        """Block until the job ends; its wrapper's status (-N: killed by signal N), None on timeout."""

    @abc.abstractmethod
    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        """Send a signal to every process of a job; False when nothing was left to signal."""

    @abc.abstractmethod
    def alive(self, job_id: str, ref: str | None) -> bool:
        """True while any process of the job is alive (or it is still queued)."""

    @abc.abstractmethod
    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        """Whether a job an earlier launch started (and did not see end) is still queued or running."""

    @abc.abstractmethod
    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool]) -> None:
        """Block until an adopted job is gone (or `should_stop` says to give up)."""

    def cancel_queued(self) -> None:  # noqa: B027 - an optional hook
        """The launch is stopping: keep jobs started but not yet running from ever running."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release connections; called once at the end of the launch."""


def _local() -> type[Executor]:
    from batchrun.executors.local import LocalExecutor

    return LocalExecutor


def _slurm() -> type[Executor]:
    from batchrun.executors.slurm import SlurmExecutor

    return SlurmExecutor


def _dask() -> type[Executor]:
    from batchrun.executors.dask import DaskExecutor

    return DaskExecutor


# Imported lazily: the dask executor needs an optional extra.
EXECUTORS: dict[str, Callable[[], type[Executor]]] = {"local": _local, "slurm": _slurm, "dask": _dask}


def make_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor called `name`, ready to open."""
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise UsageError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}") from None
    return factory()(options)
