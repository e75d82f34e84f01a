"""Where `launch.py` and `cli.py` find the doit side (kept for them).

The doit side is split by job: `doit_runner` (running a launch's jobs as
doit tasks), `doit_db` (the `batchrun` dependency backend), `doit_sweep`
(a gridspec's runfile as a doit task) and `batchrun.dodo` (the dodo.py API).
Once `launch.py` and `cli.py` import those directly this module can go.
"""

from batchrun.doit_runner import run_job_tasks
from batchrun.doit_sweep import run_sweep_task

__all__ = ["run_job_tasks", "run_sweep_task"]
