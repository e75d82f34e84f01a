"""The best metric value so far, for the live display of a launch and for `batchrun status`'s metric columns.

A launch's display calls `BestSoFar.update` as each job ends (from its
worker threads): one read of that job's metrics file, so the cost is per
job, never per redraw. The metric is the gridspec's `metric.name` when it
has one, else the first metric any job reported; lower is better unless the
gridspec's goal is `maximize`.

`metric_columns` gives `batchrun status` the last value of a few metrics per
listed job; it reads each listed job's metrics file, so it stays out of
listings longer than `STATUS_METRICS_LIMIT` jobs (`batchrun results` is the
place for those).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from batchrun.metrics.file import METRICS_NAME, RunMetrics, Skipped, read_metrics_file
from batchrun.status.view import JobStatus, RunsStatus

__all__ = ["STATUS_METRICS_LIMIT", "STATUS_METRICS_SHOWN", "BestSoFar", "metric_cells", "metric_columns", "metric_lookup"]

# Above this many listed jobs, `status` shows no metric columns: reading every job's file would cost seconds.
STATUS_METRICS_LIMIT = 5000
# At most this many metric columns in `status` (the gridspec's metric first); the rest are in `batchrun results`.
STATUS_METRICS_SHOWN = 4


class BestSoFar:
    """The best value of one metric among the jobs that ended so far, as `best loss 0.123, line 17`."""

    def __init__(self, logs: Path, metric: str | None = None, goal: str = "min") -> None:
        self.logs = logs
        self.metric = metric
        self.goal = goal
        self.value: float | None = None
        self.line: int | None = None
        self._lock = threading.Lock()

    def update(self, job_id: str, line: int | None) -> None:
        """Read the metrics of a job that just ended; never raises (the display must go on)."""
        try:
            metrics = read_metrics_file(str(self.logs / job_id / METRICS_NAME), Skipped())
        except Exception:  # noqa: BLE001 - a display helper never stops a launch
            return
        if metrics is None:
            return
        with self._lock:
            if self.metric is None:
                self.metric = next(iter(metrics.names()), None)
                if self.metric is None:
                    return
            value = metrics.value(self.metric)
            if value is None:
                return
            if self.value is None or (value < self.value if self.goal == "min" else value > self.value):
                self.value, self.line = value, line

    def text(self) -> str | None:
        """`best loss 0.123, line 17`, or None before any job reported the metric."""
        with self._lock:
            if self.value is None:
                return None
            where = f", line {self.line}" if self.line is not None else ""
            return f"best {self.metric} {self.value:.6g}{where}"


def metric_columns(status: RunsStatus, jobs: Sequence[JobStatus], first: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header names and text columns of the last value of up to `STATUS_METRICS_SHOWN` metrics of `jobs`."""
    started = [job.job_id for job in jobs if job.record is not None]
    if not started or len(started) > STATUS_METRICS_LIMIT:
        return [], []
    ordered, found = metric_lookup(status.runs_dir.logs, started, first)
    return ordered, metric_cells(ordered, found, jobs)


def metric_lookup(logs: Path, started: Iterable[str], first: str | None = None) -> tuple[list[str], dict[str, RunMetrics]]:
    """The metrics shown (up to `STATUS_METRICS_SHOWN`, `first` first) and each job's metrics, of the jobs that started (at most `STATUS_METRICS_LIMIT`).

    `metric_cells` makes their columns for any window of the jobs listed.
    """
    skipped = Skipped()
    found: dict[str, RunMetrics] = {}
    names: dict[str, None] = {}
    for job_id in started:
        metrics = read_metrics_file(str(logs / job_id / METRICS_NAME), skipped)
        if metrics is not None:
            found[job_id] = metrics
            names.update(dict.fromkeys(metrics.names()))
    if not names:
        return [], {}
    ordered = [first] if first in names else []
    ordered += [name for name in names if name != first][: STATUS_METRICS_SHOWN - len(ordered)]
    return ordered, found


def metric_cells(ordered: list[str], found: dict[str, RunMetrics], jobs: Sequence[JobStatus]) -> list[list[str]]:
    """The text columns of these metrics (`metric_lookup`) for these jobs: the last value, blank for none."""
    empty = RunMetrics()
    columns = []
    for name in ordered:
        column = []
        for job in jobs:
            value = found.get(job.job_id, empty).value(name)
            column.append("" if value is None or not math.isfinite(value) else f"{value:.6g}")
        columns.append(column)
    return columns
