"""batchrun inside your own dodo.py: the public task API.

The tasks are built in `batchrun._doit.dodo`, the one folder that imports doit;
this module is the stable name users import (`from batchrun.dodo import ...`).
"""

from batchrun._doit.dodo import DOIT_CONFIG, results_task, runfile_tasks, sweep_task, sweep_tasks

__all__ = ["DOIT_CONFIG", "results_task", "runfile_tasks", "sweep_task", "sweep_tasks"]
