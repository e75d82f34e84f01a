"""Sweep pi.py over grid.yml and gather the results into a table, with doit.

    doit -n 2            # sweep, run every point (2 at a time), aggregate
    doit -n 2            # again: nothing to do
    batchrun status grid.yml

Runs land in runs/grid/ exactly as with `batchrun launch grid.yml`: the two
are interchangeable (start with one, finish with the other).
"""

import csv
import json
from pathlib import Path

from batchrun.dodo import DOIT_CONFIG, sweep_tasks  # noqa: F401 (DOIT_CONFIG: doit reads it)

# grid_sweep: grid.yml -> grid.runfile; grid: one task per point, created after it.
task_grid_sweep, task_grid = sweep_tasks("grid.yml")

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
COLUMNS = ["method", "samples", "seed", "estimate", "abs_error", "seconds"]


def aggregate(targets):
    """Read every run's result.json (in its log directory) into one table."""
    metadata = json.loads(Path("runs/grid/metadata.json").read_text())
    rows = []
    for entry in metadata.values():
        result = Path(entry["log_dir"]) / "result.json"
        if entry["state"] == "succeeded" and result.exists():
            rows.append(json.loads(result.read_text()))
    rows.sort(key=lambda r: (r["method"], r["samples"], r["seed"]))
    with open(RESULTS_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) + " |")
    Path(RESULTS_MD).write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} runs -> {RESULTS_CSV}, {RESULTS_MD}")


def task_aggregate():
    """Gather every run's result.json into results.csv and results.md."""
    return {
        "actions": [aggregate],
        # Runs once every point of the grid has succeeded.
        "task_dep": ["grid"],
        "targets": [RESULTS_CSV, RESULTS_MD],
        "uptodate": [False],
        "verbosity": 2,
    }
