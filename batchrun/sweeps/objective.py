"""The metric a sweep optimizes, and each job's logged values of it.

W&B's `metric: {name, goal}` names what bayes search optimizes and what
hyperband judges. This module validates that section and reads a job's
metrics file (`$BATCHRUN_METRICS`, JSON lines: history rows such as
`{"val_loss": 0.3, "_step": 3}` and `{"_summary": {...}}` lines) into the
values W&B would see: `SweepRun.metric_history(name, filter_invalid=True)`
and `metric_extremum` (history plus summary) in `wandb/sweeps` `run.py`.
It is pure apart from `read_metrics`, which is `metrics.file`'s reader (the
one `batchrun results` uses), so a sweep sees the values the table shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from batchrun.metrics.file import RunMetrics, Skipped, read_metrics_file

__all__ = ["Goal", "Metric", "is_number", "metric_values", "parse_metric", "read_metrics", "run_values"]

_Fail = Callable[..., NoReturn]


class Goal(str, Enum):
    """Which way a metric improves; the values are W&B's words."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


@dataclass(frozen=True)
class Metric:
    """The metric of a sweep: its name in the metrics file and its goal."""

    name: str
    goal: Goal

    def best(self, values: Iterable[float]) -> float:
        """Return the best of `values` (at least one) for this goal."""
        return min(values) if self.goal is Goal.MINIMIZE else max(values)

    def worst(self, values: Iterable[float]) -> float:
        """Return the worst of `values` (at least one) for this goal."""
        return max(values) if self.goal is Goal.MINIMIZE else min(values)


def parse_metric(raw: Any, line: int | None, why: str, fail: _Fail) -> Metric:
    """Validate a W&B `metric` section; `why` names what needs it (for messages)."""
    if raw is None:
        fail(f"{why} needs 'metric: {{name: ..., goal: minimize}}' (or maximize): the logged value to optimize", line)
    if not isinstance(raw, Mapping):
        fail(f"'metric' must be a mapping such as {{name: val_loss, goal: minimize}}, not {_kind(raw)}", line)
    for key in raw:
        if key not in _METRIC_KEYS:
            fail(f"'metric': unknown key {key!r}; it takes {', '.join(_METRIC_KEYS)}", line)
    name = raw.get("name")
    if not isinstance(name, str) or not name or name.startswith("_"):
        fail(f"'metric' needs 'name', the logged value to optimize (not starting with _), not {_kind(name)}", line)
    goal = raw.get("goal")
    if goal not in ("minimize", "maximize"):
        fail(f"{why} needs 'metric.goal': minimize or maximize, not {_kind(goal)}", line)
    return Metric(name, Goal(goal))


# W&B's metric keys (schema.json); target and impute* are read but batchrun
# imputes failed runs with the worst value, W&B's default.
_METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if value is None:
        return "nothing"
    return repr(value)[:40] if isinstance(value, (int, float)) else type(value).__name__


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool: what W&B's `is_number` accepts."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics(path: Path) -> RunMetrics | None:
    """Read a job's metrics file with batchrun's one reader (`metrics.file`); None when there is none."""
    return read_metrics_file(str(path), Skipped())


def metric_values(history: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    """The metric's valid values in logged order: W&B's metric_history(filter_invalid=True).

    The position in this list, not `_step`, is what hyperband's bands count,
    as in `wandb/sweeps`.
    """
    return [float(row[name]) for row in history if name in row and is_number(row[name])]


def run_values(metrics: RunMetrics | None, name: str) -> list[float]:
    """The extremes of a run's logged values of the metric, history and summary: what W&B's metric_extremum ranges over.

    The lowest and highest history values and the summary value (when
    valid): a run's best, and the worst over runs, are those of all its values.
    """
    if metrics is None:
        return []
    values = []
    series = metrics.series.get(name)
    if series is not None and series.count:
        values += [series.min, series.max]
    summary = metrics.summary.get(name)
    if summary is not None and is_number(summary):
        values.append(float(summary))
    return values
