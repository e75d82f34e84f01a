"""Where jobs run: the registry of executors, by name and by the references they make (the interface is in `base`).

The launch drives every executor the same way, one job per worker slot:
`start` returns a reference (a pid, a SLURM job id, a Dask key) that the
journal keeps; `wait` blocks until the job ends and returns its status;
`signal`/`alive` let the launch stop jobs; `still_running` and
`wait_adopted` let a later launch take over jobs an earlier one left behind.
Every executor runs each job under the one supervisor (`supervisor`), which
writes its exit status into the job's log directory (read through
`jobfiles`), so results never depend on the executor's own bookkeeping.

Code outside this folder never asks what kind of reference a journal holds:
`executor_of_ref` says which executor made it, and `unwatched_alive` asks
each executor about its own jobs that no launch watches (`status`, `wait`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchrun.errors import UsageError
from batchrun.executors.base import Executor, ExecutorName, ExecutorOptions, Unwatched
from batchrun.liveness import LockTable

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorName",
    "ExecutorOptions",
    "Unwatched",
    "executor_class",
    "executor_of_ref",
    "make_executor",
    "unwatched_alive",
]


def _local() -> type[Executor]:
    from batchrun.executors.local.executor import LocalExecutor

    return LocalExecutor


def _slurm() -> type[Executor]:
    from batchrun.executors.slurm.executor import SlurmExecutor

    return SlurmExecutor


def _dask() -> type[Executor]:
    from batchrun.executors.dask.executor import DaskExecutor

    return DaskExecutor


# Imported lazily: each is needed only when used (and Dask's runs only with its extra).
EXECUTORS: dict[ExecutorName, Callable[[], type[Executor]]] = {
    ExecutorName.LOCAL: _local,
    ExecutorName.SLURM: _slurm,
    ExecutorName.DASK: _dask,
}


def executor_class(name: str) -> type[Executor]:
    """The executor class called `name` (an `ExecutorName` or its value).

    Raises:
        UsageError: no executor has that name.
    """
    try:
        factory = EXECUTORS[ExecutorName(name)]
    except ValueError:
        raise UsageError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}") from None
    return factory()


def make_executor(name: str, options: ExecutorOptions, **settings: Any) -> Executor:
    """The executor called `name`, ready to open.

    `settings` are the launch's executor options by name (`sbatch_args`,
    `scheduler`, ...): the executor keeps those of its own settings class.
    """
    cls = executor_class(name)
    return cls(options, cls.settings_from(settings))


def executor_of_ref(ref: str | None) -> type[Executor] | None:
    """The executor whose `start` makes references like `ref`; None for no reference or one no executor makes."""
    if ref is None:
        return None
    for factory in EXECUTORS.values():
        cls = factory()
        if cls.made(ref):
            return cls
    return None


def unwatched_alive(jobs: Unwatched, locks: LockTable | None = None, ask_cluster: bool = False) -> dict[str, bool | None]:
    """For jobs no launch watches (job id -> (reference, log dir)): whether each still queues or runs; None where it cannot be told now.

    Each executor answers for the jobs it made (one cluster query for all of
    a cluster's, when `ask_cluster`); a job with no reference, or one no
    executor claims, is answered by its lock, which every supervisor holds.
    """
    groups: dict[type[Executor] | None, dict[str, tuple[str | None, Any]]] = {}
    for job_id, (ref, log_dir) in jobs.items():
        groups.setdefault(executor_of_ref(ref), {})[job_id] = (ref, log_dir)
    answers: dict[str, bool | None] = {}
    for cls, group in groups.items():
        answers.update((cls or Executor).unwatched_alive(group, locks, ask_cluster))
    return answers


