"""What a sweep's plots show and on which axes: one document for `batchrun report` and `batchrun ui`.

Both draw a sweep with the same JavaScript (`results/static/sweep.js`) from
the same JSON document, built here: the runs as rows (one array per job, in
`columns` order), and for each parameter and metric the axis it is drawn on.
The axis rules live here and nowhere else:

- a parameter is `log` when its spec draws it from a log distribution
  (`log_uniform*`, `q_log_uniform*`, `inv_log_uniform*`, `log_normal`,
  `q_log_normal`), or, with no such spec, when its positive values spread
  over orders of magnitude the way a geometric series does (1k/10k/100k);
- whole numbers are `int` (integer ticks, never 0.9-1.1), texts and booleans
  `category`, other numbers `linear`;
- a parameter with one value is `constant`: not drawn, not a table column,
  listed once with its value;
- a metric is on a log axis when its values are positive and span two
  orders of magnitude (`log_scale`, also used for history curves).

Histories are thinned to `CURVE_POINTS` per curve here, and groups over a
parameter (`--over seed`) get a mean curve with its spread. The importance
of parameters is `results.importance`'s.

Pure: no I/O beyond what `Results` already read, no printing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from batchrun.metrics.file import Series
from batchrun.results.table import Results, group_key, group_over
from batchrun.results.tables import format_value

__all__ = [
    "CURVE_POINTS",
    "LOG_DISTRIBUTIONS",
    "curve",
    "default_metric",
    "group_document",
    "history_axes",
    "log_scale",
    "parameter_axis",
    "rows_document",
    "spec_distributions",
    "sweep_document",
]

# Points per history curve on a page: enough for its shape at any plot width, small for hundreds of curves.
CURVE_POINTS = 200
# W&B distributions whose draws are spread evenly on a log scale.
LOG_DISTRIBUTIONS = frozenset({
    "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
    "inv_log_uniform", "inv_log_uniform_values", "log_normal", "q_log_normal",
})
# A spread this wide (largest / smallest) is "orders of magnitude": a log axis shows it, a linear one squashes it.
_LOG_RATIO = 100.0
# Groups drawn as mean curves: the best ones by the metric's mean.
_GROUP_CURVES = 10
# The columns of a document's rows besides parameters and metrics, in order.
_LEADING = ("line", "job_id", "state", "start", "end", "runtime")


def log_scale(values: Iterable[Any]) -> bool:
    """Whether numbers belong on a log axis: all positive, spanning at least two orders of magnitude."""
    low, high = math.inf, 0.0
    for value in values:
        if not _number(value):
            continue
        if value <= 0:
            return False
        low, high = min(low, value), max(high, value)
    return high > 0 and high / low >= _LOG_RATIO


def _geometric(distinct: list[float]) -> bool:
    """Whether positive values read as a geometric series (1e-4, 1e-3, 1e-2) rather than an even one.

    The middle value of a geometric series sits halfway on a log scale and
    near the low end on a linear one; an even series is the other way round.
    """
    if not log_scale(distinct):
        return False
    if len(distinct) < 3:
        return True
    low, high = distinct[0], distinct[-1]
    middle = distinct[len(distinct) // 2] if len(distinct) % 2 else math.sqrt(distinct[len(distinct) // 2 - 1] * distinct[len(distinct) // 2])
    on_log = (math.log(middle) - math.log(low)) / (math.log(high) - math.log(low))
    on_linear = (middle - low) / (high - low)
    return abs(on_log - 0.5) < abs(on_linear - 0.5)


def parameter_axis(name: str, values: Iterable[Any], distribution: str | None = None) -> dict[str, Any]:
    """How a parameter is drawn: `{"name", "kind"}` plus `categories` (sorted texts) or the constant's `value`."""
    distinct = {_key(value): value for value in values if value is not None}
    if len(distinct) <= 1:
        return {"name": name, "kind": "constant", "value": next(iter(distinct.values()), None)}
    plain = list(distinct.values())
    if not all(_number(value) for value in plain):
        texts = sorted({format_value(value) for value in plain}, key=_category_order)
        return {"name": name, "kind": "category", "categories": texts}
    numbers = sorted(float(value) for value in plain)
    if distribution in LOG_DISTRIBUTIONS and numbers[0] > 0:
        kind = "log"
    elif distribution is None and _geometric(numbers):
        kind = "log"
    elif all(isinstance(value, int) for value in plain):
        kind = "int"
    else:
        kind = "linear"
    return {"name": name, "kind": kind}


def _key(value: Any) -> Any:
    # True == 1 and 1.0 == 1 in a set; a boolean and a number are different settings.
    return (type(value) is bool, value) if not isinstance(value, (list, dict)) else repr(value)


def _category_order(text: str) -> tuple[int, float, str]:
    # Numbers among texts in numeric order (2 before 10), then texts.
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def spec_distributions(spec: Any) -> dict[str, str]:
    """Each parameter's W&B distribution in a random or bayes gridspec (none for grids: their values say it)."""
    if spec is None or getattr(spec, "method", "grid") == "grid":
        return {}
    from batchrun.sweeps.wandb_space import search_space

    try:
        space = search_space(spec)
    except ValueError:
        return {}
    return {name: dist.dist for name, dist in zip(space.names, space.distributions, strict=True)}


def default_metric(results: Results) -> tuple[str | None, str]:
    """The metric a sweep is judged by (the gridspec's metric.name, else the first reported) and its goal."""
    if results.goal_metric in results.metric_names:
        return results.goal_metric, results.goal
    return (results.metric_names[0] if results.metric_names else None), "min"


def sweep_document(results: Results, title: str, spec: Any = None, agg: str = "last") -> dict[str, Any]:
    """The JSON-ready document both pages draw: title, counts, axes, the default metric, and one row per run."""
    rows = results.rows(agg)
    for row, run in zip(rows, results.runs, strict=True):
        rec = run.job.record
        row["start"] = rec.start if rec is not None else None
        row["end"] = rec.end if rec is not None else None
    counts = {state: count for state, count in results.status.counts().items() if count}
    return rows_document(title, counts, results.parameter_names, results.metric_names, default_metric(results), rows, spec)


def rows_document(
    title: str, counts: dict[str, int], parameter_names: Sequence[str], metric_names: Sequence[str], metric: tuple[str | None, str],
    rows: list[dict[str, Any]], spec: Any = None,
) -> dict[str, Any]:
    """`sweep_document` of these rows (`Run.row`s with the record's `start` and `end`), whatever runs they are of.

    `counts` are the sweep's, not the rows': a report of a sample of the runs
    still counts all of them. A category's values in `rows` become their labels.
    """
    distributions = spec_distributions(spec)
    params = [parameter_axis(name, (row.get(name) for row in rows), distributions.get(name)) for name in parameter_names]
    metrics = [{"name": name, "log": log_scale(row.get(name) for row in rows)} for name in metric_names]
    columns = [*_LEADING, *parameter_names, *metric_names, "command"]
    # A category's values travel as their labels, so the page places each exactly where its tick is.
    texts = {axis["name"] for axis in params if axis["kind"] == "category"}
    table = []
    for row in rows:
        for name in texts:
            if row.get(name) is not None:
                row[name] = format_value(row[name])
        table.append([_json_value(row.get(name)) for name in columns])
    return {
        "title": title,
        "counts": counts,
        "columns": columns,
        "params": params,
        "metrics": metrics,
        "metric": metric[0],
        "goal": metric[1],
        "rows": table,
    }


def _json_value(value: Any) -> Any:
    # Strict JSON has no NaN or infinity; reading skips them from metrics already, parameters may still hold one.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return str(value)
    return value


def curve(series: Series, max_points: int = CURVE_POINTS) -> dict[str, list[Any]]:
    """A history as `{"x": steps, "y": values}`, thinned evenly to at most `max_points`, always with its last point."""
    steps, values = series.steps, series.values
    stride = max(1, math.ceil(len(values) / max_points))
    x, y = steps[::stride], values[::stride]
    if steps and (len(steps) - 1) % stride:
        x, y = [*x, steps[-1]], [*y, values[-1]]
    return {"x": x, "y": y}


def history_axes(curves: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """History curves with their axes: `{"curves", "log", "xlog"}`, each log when its values span orders of magnitude."""
    return {
        "curves": curves,
        "log": log_scale(v for c in curves.values() for v in c["y"]),
        "xlog": log_scale(v for c in curves.values() for v in c["x"]),
    }


def group_document(
    rows: list[dict[str, Any]],
    over: Sequence[str],
    parameter_names: Sequence[str],
    metric: str,
    goal: str,
    histories: Callable[[list[str]], dict[str, Series]],
) -> dict[str, Any]:
    """Repeats collapsed over `over` (as `batchrun results --over`): mean, spread and count per group, best first.

    The best `_GROUP_CURVES` groups also get the mean of their members'
    histories with its standard deviation, step by step; `histories` gives
    the series of `metric` for a list of job ids (those that have one).
    """
    kept = [name for name in parameter_names if name not in over]
    groups = [group for group in group_over(rows, over, parameter_names, [metric]) if group[metric] is not None]
    groups.sort(key=lambda group: group[metric], reverse=goal == "max")
    members: dict[tuple[Any, ...], list[str]] = {}
    for row in rows:
        members.setdefault(tuple(group_key(row.get(name)) for name in kept), []).append(row["job_id"])
    out = []
    for rank, group in enumerate(groups):
        key = tuple(group_key(group.get(name)) for name in kept)
        item = {
            "params": {name: _json_value(group.get(name)) for name in kept},
            "runs": group["runs"],
            "mean": group[metric],
            "std": group[f"{metric}_std"],
            "n": group[f"{metric}_n"],
        }
        if rank < _GROUP_CURVES:
            item["curve"] = _mean_curve(list(histories(members.get(key, [])).values()))
        out.append(item)
    means = [value for item in out if item.get("curve") for value in item["curve"]["mean"]]
    return {"over": list(over), "params": kept, "metric": metric, "goal": goal, "groups": out, "log": log_scale(means)}


def _mean_curve(series: list[Series]) -> dict[str, list[Any]] | None:
    """Mean and standard deviation over runs at each step any of them logged (each run holds its last value until its next)."""
    runs = [curve(s) for s in series if s.steps]
    if not runs:
        return None
    steps = sorted({step for run in runs for step in run["x"]})
    stride = max(1, math.ceil(len(steps) / CURVE_POINTS))
    steps = steps[::stride]
    x, mean, std = [], [], []
    positions = [0] * len(runs)
    for step in steps:
        values = []
        for i, run in enumerate(runs):
            xs = run["x"]
            while positions[i] + 1 < len(xs) and xs[positions[i] + 1] <= step:
                positions[i] += 1
            if xs[0] <= step <= xs[-1]:
                values.append(run["y"][positions[i]])
        if not values:
            continue
        m = sum(values) / len(values)
        x.append(step)
        mean.append(m)
        std.append(math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)
    return {"x": x, "mean": mean, "std": std}
