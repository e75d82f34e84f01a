"""The `Executor` interface every executor implements, and the options a launch gives it.

Kept apart from the registry in `batchrun.executors` so that the executors
import their interface without importing the registry that imports them.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = ["Executor", "ExecutorName", "ExecutorOptions"]


class ExecutorName(str, enum.Enum):
    """Where jobs run: the `--executor` choices. The value is what journals and messages say."""

    LOCAL = "local"
    SLURM = "slurm"
    DASK = "dask"

    def __str__(self) -> str:
        return self.value


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

    # An ExecutorName member (a str, so plain comparisons with "local" hold).
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

    def left_no_metrics(self, ref: str) -> bool:
        """Once `wait` returned: True when the executor saw the job end with no metrics file (the launch then skips reading it)."""
        return False

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
