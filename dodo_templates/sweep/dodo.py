"""Sweep train.py over the grid in grid.yml, with doit.

    doit -n 4                   # write grid.runfile if grid.yml changed, then run new points
    batchrun status grid.yml    # what ran, what failed, parameters as columns
    batchrun results grid.yml   # each run's parameters and the loss it logged (train.py: batchrun.log)

`sweep_tasks` gives two task creators: `grid_sweep` turns grid.yml into
grid.runfile (a file_dep/target task: it reruns only when the spec changes)
and `grid`, one task per point, created after the sweep has run. Runs go to
runs/grid/, as with `batchrun launch grid.yml`.
"""

from batchrun.dodo import DOIT_CONFIG, sweep_tasks  # noqa: F401 (doit reads DOIT_CONFIG)

task_grid_sweep, task_grid = sweep_tasks("grid.yml")
