"""What each run found: one row per job with its parameters and metrics, and the views built on them.

`read_results` reads a target (runfile, gridspec or runs directory) the way
`batchrun status` does, without the launch's lock, so it answers while a
launch runs; then each started job's `metrics.jsonl` (see `metrics.file`;
for a table, through `metrics.cache`, which the launch fills as jobs end)
and, with scrape rules, its out.log. `load` gives plain dict rows for a dodo.py or
a notebook (`pandas.DataFrame(batchrun.results.load("grid.yml"))`).

Parameters of a gridspec's jobs are the gridspec's own values, with their
types (`Gridspec.iter_points`): `"007"` stays text, `0.1` is a float, a
value placed with `${name}` is there too. The one change: a text YAML 1.1
keeps only for want of a point, such as `1e-3`, is the float it spells (as
YAML 1.2 and the program read it). A line that is not one of the gridspec's
(edited by hand, or the gridspec changed since) and every job of a plain
runfile take their parameters from the command's `--key=value` flags (for a
gridspec, only its parameters, in its order), a value that reads as a number
or a boolean being one (`--lr=0.001` is 0.001, `--seed=3` is 3, `--flag` is
True). Metrics are numbers; a metric whose name is taken by a parameter or a
column is left out and counted in `skipped`.

Pure: no printing; `cli/results` and `report` render what this returns.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.metrics.cache import MetricsCache
from batchrun.metrics.file import METRICS_NAME, RunMetrics, Skipped, read_metrics_file
from batchrun.metrics.scrape import ScrapeRule, scrape_log
from batchrun.results.tables import typed_value
from batchrun.runfile.file import parse_parameters
from batchrun.status.lookup import job_parameters
from batchrun.status.view import JobStatus, RunsStatus, load_status
from batchrun.store.records import USAGE_FIELDS, State
from batchrun.store.target import Target

__all__ = ["COLUMNS", "PointValues", "Results", "Run", "add_summary", "best_row", "gridspec_metric", "group_key", "group_over", "note_names", "read_results", "sort_rows", "sortable", "without_gc"]

# The columns every row has, besides parameters and metrics; they win any clash of names.
COLUMNS = ("line", "job_id", "state", "runtime", *USAGE_FIELDS, "code", "command", "log_dir")
_NUMBER_CHARS = "0123456789+-.eE"


@dataclass
class Run:
    """One job: its status, parameters and metrics."""

    job: JobStatus
    log_dir: str
    parameters: dict[str, Any]
    metrics: RunMetrics
    runtime: float | None

    def row(self, metric_names: Sequence[str], agg: str = "last") -> dict[str, Any]:
        """A plain dict: line, job_id, state, parameters, metrics, runtime, what it used (`USAGE_FIELDS`), command, log_dir."""
        job = self.job
        row: dict[str, Any] = {"line": job.line, "job_id": job.job_id, "state": job.category}
        row.update(self.parameters)
        value = self.metrics.value
        for name in metric_names:
            row[name] = value(name, agg)
        row["runtime"] = self.runtime
        rec = job.record
        for name in USAGE_FIELDS:
            row[name] = getattr(rec, name) if rec is not None else None
        row["code"] = rec.code if rec is not None else None
        row["command"] = job.command
        row["log_dir"] = self.log_dir
        return row


@dataclass
class Results:
    """Every run of a target, with the names of its parameters and metrics and what reading skipped."""

    target: Target
    status: RunsStatus
    runs: list[Run]
    parameter_names: list[str]
    metric_names: list[str]
    skipped: Skipped = field(default_factory=Skipped)
    # The gridspec's `metric: {name, goal}`, when it has one.
    goal_metric: str | None = None
    goal: str = "min"

    def rows(self, agg: str = "last") -> list[dict[str, Any]]:
        """One row per job, in runfile order."""
        names = self.metric_names
        return [run.row(names, agg) for run in self.runs]


@contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (restoring it after), for reading thousands of jobs.

    Reading 100,000 jobs makes millions of small objects and no cycles;
    the collector would walk them again and again, a third of the time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_results(target: Target, scrape: Sequence[ScrapeRule] = (), keep_history: bool = False) -> Results:
    """Read every job's state, parameters and metrics.

    Raises:
        UsageError: nothing was launched for a runfile or gridspec.
        InputError, MetadataError: as `status.view.load_status`.
    """
    with without_gc():
        return _read_results(target, scrape, keep_history)


def note_names(run: Run, params: dict[str, None] | None, metrics: dict[str, None]) -> None:
    """Add a run's parameter names (unless `params` is None) and metric names, each first seen first: a table's columns in order."""
    if params is not None:
        for name in run.parameters:
            if name not in params:
                params[name] = None
    # In `names()` order (history, then summary), without a generator per job.
    metrics.update(dict.fromkeys(run.metrics.series))
    metrics.update(dict.fromkeys(run.metrics.summary))


def _read_results(target: Target, scrape: Sequence[ScrapeRule], keep_history: bool) -> Results:
    # A gridspec's jobs take their values from it: metadata.json's parsed flags are not needed.
    status = load_status(target, need_entries=target.gridspec is None and _quoted_flags(target))
    gridspec_names = status.parameter_names
    points = PointValues(target.gridspec) if target.gridspec is not None and gridspec_names is not None else None
    skipped = Skipped()
    logs = str(status.runs_dir.logs)
    now = status.now
    rules = list(scrape)
    runs: list[Run] = []
    # Histories are not cached: a report reads every file.
    cache = None if keep_history else MetricsCache(str(status.runs_dir.path))
    seen_params: dict[str, None] = dict.fromkeys(gridspec_names or ())
    seen_metrics: dict[str, None] = {}
    reader = RunReader(logs, now, cache, rules, gridspec_names, points, keep_history)
    for job in status.jobs:
        run = reader.run(job, skipped)
        note_names(run, seen_params if gridspec_names is None else None, seen_metrics)
        runs.append(run)
    param_names = [name for name in seen_params if name not in COLUMNS]
    for name in seen_params:
        if name in COLUMNS:
            skipped.add("skipped {n} parameters named like a column (" + ", ".join(COLUMNS) + ")", name)
            for run in runs:
                run.parameters.pop(name, None)
    taken = set(COLUMNS) | set(param_names)
    metric_names = []
    for name in seen_metrics:
        if name in taken:
            skipped.add("skipped {n} values of metrics named like a parameter or a column (rename them)", name, sum(1 for run in runs if name in run.metrics.series or name in run.metrics.summary))
            for run in runs:
                run.metrics.drop(name)
        else:
            metric_names.append(name)
    if gridspec_names is None:
        # Commands without a flag another one has: fill in None so every row has every column.
        for run in runs:
            if len(run.parameters) != len(param_names):
                run.parameters = {name: run.parameters.get(name) for name in param_names}
    if cache is not None:
        cache.save()
    results = Results(target, status, runs, param_names, metric_names, skipped)
    if target.gridspec is not None:
        results.goal_metric, results.goal = gridspec_metric(target.gridspec)
    return results


class RunReader:
    """Reads one job's run: its parameters, its metrics (through the cache), its runtime; the same for a held or a streamed read."""

    def __init__(self, logs: str, now: float, cache: MetricsCache | None, rules: list[ScrapeRule], names: list[str] | None, points: Any, keep_history: bool) -> None:
        self.logs, self.now, self.cache, self.rules, self.names, self.points, self.keep_history = logs, now, cache, rules, names, points, keep_history

    def run(self, job: JobStatus, skipped: Skipped, no_file: bool = False) -> Run:
        """`no_file`: the job is known to have no metrics file (it had none a moment ago): not looked for."""
        return self.run_with(job, skipped, no_file, self.points.values(job.command) if self.points is not None else None)

    def run_with(self, job: JobStatus, skipped: Skipped, no_file: bool, values: dict[str, Any] | None) -> Run:
        """`run`, the job's gridspec values given (None: its flags), as found by an earlier walk of the points."""
        log_dir = f"{self.logs}/{job.job_id}"
        rec = job.record
        params = _parameters(job, self.names) if values is None else values
        metrics: RunMetrics | None = None
        runtime = None
        if rec is not None:
            path = f"{log_dir}/{METRICS_NAME}"
            if no_file:
                pass
            elif self.cache is not None:
                metrics = self.cache.read(job.job_id, path, skipped, finished=rec.state != State.RUNNING)
            else:
                metrics = read_metrics_file(path, skipped, self.keep_history)
            if self.rules:
                metrics = metrics or RunMetrics()
                scrape_log(f"{log_dir}/out.log", self.rules, metrics, skipped, self.keep_history)
            runtime = rec.runtime
            if runtime is None and rec.state == State.RUNNING and rec.start is not None:
                runtime = max(0.0, self.now - rec.start)
        return Run(job, log_dir, params, metrics if metrics is not None else RunMetrics(), runtime)


def _quoted_flags(target: Target) -> bool:
    """Whether some command has flags and quotes: shlex would then parse each (seconds for 100,000).

    metadata.json holds every launched job's parameters, parsed once at
    launch by the same rules; reading it costs less.
    """
    path = target.runfile if target.runfile is not None and target.runfile.exists() else None
    if path is None:
        return False
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "--" in text and ("'" in text or '"' in text or "\\" in text)


class PointValues:
    """Each gridspec command's values, found by walking the points in step with the runfile's lines.

    The runfile a gridspec wrote holds its points in order, so in the common
    case each line is the next point and nothing is kept. Points passed over
    (a line edited, a repeated command) wait in `passed` for a later line.
    """

    def __init__(self, gridspec: Path) -> None:
        from batchrun.sweeps.gridspec import load_gridspec  # only for gridspecs, which status has already read

        spec = load_gridspec(gridspec)
        self._names = spec.parameter_names()
        self._points: Iterator[tuple[str, dict[str, Any]]] | None = None
        self._passed: dict[str, dict[str, Any]] = {}
        # A bayes search has no points up front: each runfile line parses back to the point it renders.
        self._params_of: Callable[[str], dict[str, Any] | None] | None = None
        if spec.method == "bayes":
            from batchrun.sweeps.bayes import BayesSpec

            self._params_of = BayesSpec(spec).params_of
        else:
            self._points = spec.iter_points()

    def values(self, command: str) -> dict[str, Any] | None:
        """The exact values of the point whose command this is, or None when no point has it."""
        if self._params_of is not None:
            point = self._params_of(command)
            # A conditional parameter the point does not have is blank, as in a grid's rows.
            return _exact_values({name: point.get(name) for name in self._names}) if point is not None else None
        found = self._passed.pop(command, None)
        if found is not None or self._points is None:
            return _exact_values(found) if found is not None else None
        for point_command, values in self._points:
            if point_command == command:
                return _exact_values(values)
            self._passed.setdefault(point_command, values)
        self._points = None
        return None


def _exact_values(values: dict[str, Any]) -> dict[str, Any]:
    for name, value in values.items():
        if type(value) is str and value and not value.strip(_NUMBER_CHARS) and ("e" in value or "E" in value):
            try:
                values[name] = float(value)  # 1e-3: text in YAML 1.1, a float in YAML 1.2 and to the program
            except ValueError:
                pass
    return values


def _parameters(job: JobStatus, names: list[str] | None) -> dict[str, Any]:
    # metadata.json's own parameters when it has the job (as `status` shows them), else the command's flags.
    flags = job_parameters(job) if job.entry is not None else parse_parameters(job.command)
    if names is None:
        return {key: typed_value(value) for key, value in flags.items()}
    return {name: typed_value(flags[name]) if name in flags else None for name in names}


def gridspec_metric(path: Path) -> tuple[str | None, str]:
    """The W&B `metric: {name: loss, goal: minimize}` of a gridspec: (name or None, "min" or "max")."""
    import yaml  # only for a gridspec, which status has already parsed with it

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None, "min"
    metric = spec.get("metric") if isinstance(spec, dict) else None
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        return None, "min"
    return metric["name"], "max" if metric.get("goal") == "maximize" else "min"


# -- views -------------------------------------------------------------------


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sort by a column (`-name` for descending); rows without a value go last either way."""
    descending = key.startswith("-")
    name = key[1:] if descending else key
    present = [row for row in rows if sortable(row.get(name))]
    missing = [row for row in rows if not sortable(row.get(name))]
    try:
        present.sort(key=lambda row: row[name], reverse=descending)
    except TypeError:  # numbers and texts in one column: compare as text
        present.sort(key=lambda row: str(row[name]), reverse=descending)
    return present + missing


def sortable(value: Any) -> bool:
    """Whether `sort_rows` sorts a row by this value (else it goes last)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def best_row(rows: Iterable[dict[str, Any]], metric: str, goal: str = "min") -> dict[str, Any] | None:
    """The row with the lowest (`goal` "min") or highest ("max") value of `metric`; the first of ties."""
    best = None
    for row in rows:
        value = row.get(metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            continue
        if best is None or (value < best[metric] if goal == "min" else value > best[metric]):
            best = row
    return best


def group_over(rows: list[dict[str, Any]], over: Sequence[str], parameter_names: Sequence[str], metric_names: Sequence[str]) -> list[dict[str, Any]]:
    """Collapse repeats: one row per combination of the parameters not in `over`.

    Each row has those parameters, `runs` (how many jobs), and per metric its
    mean over the jobs that have it, `<metric>_std` (sample standard
    deviation; 0 for one value) and `<metric>_n`.
    """
    kept = [name for name in parameter_names if name not in over]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = tuple(group_key(row.get(name)) for name in kept)
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        first = members[0]
        grouped: dict[str, Any] = {name: first.get(name) for name in kept}
        grouped["runs"] = len(members)
        for metric in metric_names:
            add_summary(grouped, metric, [row[metric] for row in members if isinstance(row.get(metric), (int, float))])
        out.append(grouped)
    return out


def add_summary(grouped: dict[str, Any], metric: str, values: list[Any]) -> None:
    """A group's `metric` (the mean of its runs' values, in row order), `<metric>_std` (sample; 0 for one value) and `<metric>_n`."""
    n = len(values)
    mean = sum(values) / n if n else None
    grouped[metric] = mean
    grouped[f"{metric}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 and mean is not None else (0.0 if n == 1 else None)
    grouped[f"{metric}_n"] = n


def group_key(value: Any) -> Any:
    """A value as part of a group's key: itself when hashable, else its repr."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
