"""A pipeline: prepare data -> sweep train.py over grid.yml -> aggregate a results table.

    doit -n 4          # prepare, sweep, run every point, then write results.csv and results.md
    doit -n 4          # again: nothing to do; edit grid.yml and only new points run

The sweep's runs land in runs/grid/ exactly as with `batchrun launch grid.yml`.
"""

import csv
import json
from pathlib import Path

from batchrun.dodo import DOIT_CONFIG, sweep_tasks  # noqa: F401 (doit reads DOIT_CONFIG)


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


def aggregate():
    metadata = json.loads(Path("runs/grid/metadata.json").read_text())
    rows = []
    for entry in metadata.values():
        result = Path(entry["log_dir"]) / "result.json"
        if entry["state"] == "succeeded" and result.exists():
            rows.append(json.loads(result.read_text()))
    rows.sort(key=lambda row: row["loss"])
    columns = sorted({key for row in rows for key in row})
    with open("results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    Path("results.md").write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} runs -> results.csv, results.md (best loss first)")


def task_aggregate():
    """Gather every run's result.json into results.csv and results.md."""
    return {
        "actions": [aggregate],
        "task_dep": ["grid"],  # the whole sweep: runs once every point succeeded
        "targets": ["results.csv", "results.md"],
        "uptodate": [False],
        "verbosity": 2,
    }
