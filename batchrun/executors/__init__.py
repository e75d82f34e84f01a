"""Where jobs run: the registry of executors, by name (the interface is in `base`).

The launch drives every executor the same way, one job per worker slot:
`start` returns a reference (a pid, a SLURM job id, a Dask key) that the
journal keeps; `wait` blocks until the job ends and returns its wrapper's
exit status; `signal`/`alive` let the launch stop jobs; `still_running` and
`wait_adopted` let a later launch take over jobs an earlier one left behind.
Every executor has a process beside the job that writes its exit status into
the job's log directory (the local executor's per-slot helper, the shell
wrapper elsewhere), so results never depend on the executor's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

from batchrun.errors import UsageError
from batchrun.executors.base import Executor, ExecutorName, ExecutorOptions

__all__ = ["EXECUTORS", "Executor", "ExecutorName", "ExecutorOptions", "make_executor"]


def _local() -> type[Executor]:
    from batchrun.executors.local.executor import LocalExecutor

    return LocalExecutor


def _slurm() -> type[Executor]:
    from batchrun.executors.slurm.executor import SlurmExecutor

    return SlurmExecutor


def _dask() -> type[Executor]:
    from batchrun.executors.dask.executor import DaskExecutor

    return DaskExecutor


# Imported lazily: the dask executor needs an optional extra.
EXECUTORS: dict[ExecutorName, Callable[[], type[Executor]]] = {
    ExecutorName.LOCAL: _local,
    ExecutorName.SLURM: _slurm,
    ExecutorName.DASK: _dask,
}


def make_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor called `name` (an `ExecutorName` or its value), ready to open."""
    try:
        factory = EXECUTORS[ExecutorName(name)]
    except ValueError:
        raise UsageError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}") from None
    return factory()(options)
