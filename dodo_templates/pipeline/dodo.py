"""A pipeline: prepare data -> sweep train.py over grid.yml -> gather the results.

    doit -n 4          # prepare, sweep, run every point, then write results.csv and report.html
    doit -n 4          # again: no point runs (the results are gathered again); edit grid.yml and only new points run
    batchrun results grid.yml --sort loss   # the same table, by hand

The sweep's runs land in runs/grid/ exactly as with `batchrun launch grid.yml`.
Each run logs its loss (train.py: `batchrun.log`); `results_task` gathers
every run's parameters and metrics once the whole sweep has succeeded.
"""

from batchrun.dodo import DOIT_CONFIG, results_task, sweep_tasks  # noqa: F401 (doit reads DOIT_CONFIG)


def task_prepare():
    """Write the data every run reads (a real project would download or clean it)."""
    return {
        "actions": ["python3 -c \"import json; json.dump(list(range(100)), open('data.json', 'w'))\""],
        # Written once; delete data.json to prepare it again.
        "targets": ["data.json"],
        "uptodate": [True],
    }


# Every point of the grid waits for the data.
task_grid_sweep, task_grid = sweep_tasks("grid.yml", task_dep=["prepare"])


def task_results():
    # Once every point has succeeded: results.csv (one row per run), report.html (with the
    # report extra: pip install 'batchrun[report]'), and the table printed, best loss first.
    return results_task("grid.yml", after="grid")
