"""batchrun inside your own dodo.py: the public task API.

    from batchrun.dodo import DOIT_CONFIG, runfile_tasks, sweep_tasks

    def task_exp():
        yield from runfile_tasks("exp.runfile")

    task_grid_sweep, task_grid = sweep_tasks("grid.yml")

Run with plain `doit -n 4`: the jobs, their runs directory, logs,
metadata.json, job ids and resume rules are those of `batchrun launch`.
Jobs run in doit's thread mode (`par_type: thread`): one launch of a runs
directory cannot span the processes doit's default process mode forks, and
threads are what waiting on subprocesses needs. Import `DOIT_CONFIG` (or merge
it into yours).
"""

from typing import Any

from batchrun.dodo_results import results_task
from batchrun.doit_tasks import runfile_tasks, sweep_task, sweep_tasks

__all__ = ["DOIT_CONFIG", "results_task", "runfile_tasks", "sweep_task", "sweep_tasks"]

# What doit needs to run batchrun tasks: thread mode, and doit's default
# verbosity, which leaves job output in the job's log files.
DOIT_CONFIG: dict[str, Any] = {"par_type": "thread"}
