"""Sweep pi.py over grid.yml, then gather the results into a table and a report, with doit.

    doit -n 2            # sweep, run every point (2 at a time), gather
    doit -n 2            # again: no point runs; the results are gathered again
    batchrun status grid.yml
    batchrun results grid.yml --over seed --sort abs_error

Runs land in runs/grid/ exactly as with `batchrun launch grid.yml`: the two
are interchangeable (start with one, finish with the other).
"""

from batchrun.dodo import DOIT_CONFIG, results_task, sweep_tasks  # noqa: F401 (DOIT_CONFIG: doit reads it)

# grid_sweep: grid.yml -> grid.runfile; grid: one task per point, created after it.
task_grid_sweep, task_grid = sweep_tasks("grid.yml")


def task_results():
    # Once every point has run: results.csv (every run), report.html, and the
    # table of abs_error averaged over the seeds.
    return results_task("grid.yml", after="grid", over=["seed"])
