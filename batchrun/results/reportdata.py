"""What `batchrun report` puts in its page, read in one pass over the runs: exact counts and failures, bounded rows.

A page of a million runs is not useful and does not open: past `ROWS`
runs, the page's table and plots show a sample (every k-th run in runfile
order, and the best `BEST_KEPT` of each of its first metrics, so the best run
and the history curves are those of all runs), and the page says so. What
stays exact whatever the size: the counts by state (`status`' own), the
failed runs (the first `FAILED_SHOWN` and how many), the best run of the
metric, and what the runs used by parameter (summed a row at a time).

A runfile target with more lines than `ROWS` is read a window of jobs at a
time (`results.stream`), so the report's memory does not grow with the
runfile; any other target is read whole (`table.read_results`), as before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from batchrun.metrics.file import METRICS_NAME, RunMetrics, Series, Skipped, read_metrics_file
from batchrun.metrics.scrape import ScrapeRule, scrape_log
from batchrun.results.plots import default_metric
from batchrun.results.table import Results, Run, best_row, gridspec_metric, read_results
from batchrun.results.targets import sweep_target
from batchrun.results.usage import UsageRow, UsageTally
from batchrun.store.records import State
from batchrun.store.target import Target

__all__ = ["BEST_KEPT", "FAILED_SHOWN", "FAILED_STATES", "HISTORY_METRICS", "ROWS", "Failed", "ReportData", "long_runfile", "read_report_data", "report_data"]

# Rows a page holds at most (plotly's scattergl draws ~100,000 points per trace well; the page has a plot per parameter).
ROWS = 10_000
# The best runs of each metric always among the rows shown (history curves are of the best 30).
BEST_KEPT = 30
# Metrics with history curves, and failed runs listed.
HISTORY_METRICS = 8
FAILED_SHOWN = 50
# Stopped runs (hyperband) are not failures: they are judged by what they logged.
FAILED_STATES = frozenset({State.FAILED, State.TIMEOUT, State.KILLED, State.INTERRUPTED})


@dataclass(frozen=True)
class Failed:
    """A failed run as the page lists it."""

    line: int | None
    category: str
    status: int | None
    command: str
    log_dir: str


@dataclass
class ReportData:
    """The runs of a report: counts and failures of all, rows (with `start` and `end`) of at most `ROWS`."""

    target: Target
    parameter_names: list[str]
    metric_names: list[str]
    total: int
    counts: dict[str, int]
    # The rows shown, as their values in `columns` order: a tuple each weighs a fifth of a dict, beside a million jobs' read.
    columns: tuple[str, ...]
    values: list[tuple[Any, ...]]
    best: dict[str, Any] | None
    failed: list[Failed]
    failed_count: int
    usage: list[UsageRow]
    metric: str | None
    goal: str
    # Every how many runs one is shown (1: all of them).
    stride: int = 1
    skipped: Skipped = field(default_factory=Skipped)

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """The rows shown (`Run.row`s with the record's `start` and `end`), in runfile order."""
        columns = self.columns
        return [dict(zip(columns, values, strict=True)) for values in self.values]
    history: Callable[[str, str], Series | None] = field(default=lambda job_id, metric: None)


def read_report_data(
    target: Target, scrape: Sequence[ScrapeRule] = (), agg: str = "last", metric: str | None = None, goal: str | None = None, bound: int | None = None,
    usage: bool = True,
) -> ReportData:
    """Read the target for its report (see the module's docstring); `metric` defaults to the gridspec's, else the first.

    `usage=False`: a long runfile is read without what each run used (its `usage` table is then empty), for
    the dashboard, which shows none of it: at a million jobs, 25 MB less.

    Raises:
        UsageError: nothing was launched; `metric` is not one of the sweep's.
        InputError, MetadataError: as `status.view.load_status`.
    """
    bound = ROWS if bound is None else bound
    if long_runfile(target, bound):
        return _streamed(target, scrape, agg, metric, goal, bound, usage)
    return report_data(read_results(target, scrape, keep_history=True), agg, metric, goal, bound)


def report_data(results: Results, agg: str = "last", metric: str | None = None, goal: str | None = None, bound: int | None = None) -> ReportData:
    """`read_report_data` of runs already read whole (`read_results(keep_history=True)` for the history curves).

    Raises:
        UsageError: `metric` is not one of the sweep's.
    """
    target = results.target
    if target.gridspec is None and target.runfile is None:
        # A runs directory: the gridspec beside its runs/ gives the metric.
        beside = sweep_target(target.runs_dir.path)
        if beside.gridspec is not None and results.goal_metric is None:
            results.goal_metric, results.goal = gridspec_metric(beside.gridspec)
    metric, goal = _chosen(results, target, metric, goal)
    bound = ROWS if bound is None else bound
    runs = {run.job.job_id: run for run in results.runs}
    counts = {state: count for state, count in results.status.counts().items() if count}
    data = _collect(results, target, zip(results.runs, results.rows(agg), strict=True), len(results.runs), metric, goal, bound, counts)
    data.history = lambda job_id, name: runs[job_id].metrics.series.get(name) if job_id in runs else None
    return data


def long_runfile(target: Target, bound: int | None = None) -> bool:
    """Whether the target is a runfile (`compact.usable_for`) of more lines than `bound` (`ROWS`): an upper bound on
    its jobs, counted without parsing. Such a runfile is read a window at a time, and shown by a sample."""
    from batchrun.status.compact import usable_for

    if not usable_for(target):
        return False
    assert target.runfile is not None
    bound = ROWS if bound is None else bound
    lines = 0
    try:
        with open(target.runfile, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                if lines > bound:
                    return True
    except OSError:
        return False
    return False


def _chosen(results: Any, target: Target, metric: str | None, goal: str | None) -> tuple[str | None, str]:
    from batchrun.errors import UsageError

    if metric is None:
        if isinstance(results, Results):
            metric, default_goal = default_metric(results)
        else:  # a streamed read: the gridspec's metric, should it be of one, else the first
            named, default_goal = gridspec_metric(target.gridspec) if target.gridspec is not None else (None, "min")
            metric = named if named in results.metric_names else next(iter(results.metric_names), None)
            default_goal = default_goal if metric == named else "min"
        return metric, goal or default_goal
    if metric not in results.metric_names:
        raise UsageError(f"--metric {metric}: no such metric in {target.given} (metrics: {', '.join(results.metric_names) or 'none'})")
    return metric, goal or "min"


def _streamed(target: Target, scrape: Sequence[ScrapeRule], agg: str, metric: str | None, goal: str | None, bound: int, usage: bool) -> ReportData:
    from batchrun.results.stream import read_streamed

    streamed = read_streamed(target, scrape, usage=usage)
    metric, goal = _chosen(streamed, target, metric, goal)
    status = streamed.status
    pairs = (pair for window in streamed.runs(agg) for pair in window)
    data = _collect(streamed, target, pairs, len(status), metric, goal, bound, {state: count for state, count in status.counts().items() if count})
    logs, rules = str(status.runs_dir.logs), list(scrape)
    data.history = lambda job_id, name: _series(f"{logs}/{job_id}", rules, name)
    return data


def _series(log_dir: str, rules: list[ScrapeRule], name: str) -> Series | None:
    """One run's history of a metric, read again from its files (a streamed read keeps none)."""
    metrics = read_metrics_file(os.path.join(log_dir, METRICS_NAME), Skipped(), True) or RunMetrics()
    if rules:
        scrape_log(os.path.join(log_dir, "out.log"), rules, metrics, Skipped(), True)
    return metrics.series.get(name)


def _collect(
    results: Any, target: Target, pairs: Iterable[tuple[Run, dict[str, Any]]], total: int, metric: str | None, goal: str, bound: int, counts: dict[str, int],
) -> ReportData:
    """One pass over every run: the exact tallies, every `stride`-th row, and the best rows of each history metric."""
    stride = max(1, math.ceil(total / bound))
    tally = UsageTally(results.parameter_names)
    ranked = [(name, goal if name == metric else "min") for name in results.metric_names[:HISTORY_METRICS]]
    leaders: dict[str, list[tuple[Any, int, dict[str, Any]]]] = {name: [] for name, _ in ranked}
    shown: dict[int, tuple[Any, ...]] = {}
    columns: tuple[str, ...] = ()
    failed: list[Failed] = []
    failed_count = 0
    best = None
    for k, (run, row) in enumerate(pairs):
        rec = run.job.record
        row["start"] = rec.start if rec is not None else None
        row["end"] = rec.end if rec is not None else None
        tally.add(row)
        if run.job.category in FAILED_STATES:
            failed_count += 1
            if len(failed) < FAILED_SHOWN:
                failed.append(Failed(run.job.line, run.job.category, rec.status if rec is not None else None, run.job.command, run.log_dir))
        if metric is not None:
            best = best_row([row] if best is None else [best, row], metric, goal)
        if not columns:
            columns = tuple(row)  # every row has the same columns (`Run.row`, every parameter in each), not always in one order
        if stride == 1 or k % stride == 0:
            shown[k] = tuple(row.get(name) for name in columns)
        elif ranked:
            for name, name_goal in ranked:
                value = row.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
                    _keep_best(leaders[name], (-value if name_goal == "max" else value, k, row), BEST_KEPT)
    if stride > 1:
        for kept in leaders.values():
            _prune(kept, BEST_KEPT)
            for _, k, row in kept:
                shown[k] = tuple(row.get(name) for name in columns)
    values = [shown[k] for k in sorted(shown)]
    return ReportData(target, results.parameter_names, results.metric_names, total, counts, columns, values, best, failed, failed_count, tally.rows(), metric, goal, stride, results.skipped)


def _keep_best(kept: list[tuple[Any, int, dict[str, Any]]], item: tuple[Any, int, dict[str, Any]], count: int) -> None:
    """Keep the `count` lowest (value, position) items, pruning in batches (a sort per `count` additions)."""
    kept.append(item)
    if len(kept) >= 2 * count:
        _prune(kept, count)


def _prune(kept: list[tuple[Any, int, dict[str, Any]]], count: int) -> None:
    kept.sort(key=lambda entry: (entry[0], entry[1]))
    del kept[count:]
