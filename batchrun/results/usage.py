"""What the runs used, by parameter value: which settings of a sweep are expensive in memory, CPU and time.

From the rows of `Results.rows` (each run's `max_rss_kb`, `user_cpu_s`,
`sys_cpu_s`, `runtime`), for the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchrun.results.table import group_key

__all__ = ["UsageRow", "usage_by_parameter"]

# A parameter with more values than this is not tabulated (a continuous draw: every run its own value).
_MAX_VALUES = 20


@dataclass(frozen=True)
class UsageRow:
    """The runs with one value of one parameter, and what they used on average."""

    parameter: str
    value: Any
    runs: int  # runs with a recorded usage
    memory_mb: float  # mean peak resident memory
    cpu_s: float  # mean user + system CPU seconds
    runtime_s: float | None  # mean runtime of those with one


def usage_by_parameter(rows: Sequence[dict[str, Any]], parameters: Sequence[str]) -> list[UsageRow]:
    """Per parameter and value (in value order), the mean usage of the runs whose usage is recorded; most expensive parameters first.

    A parameter is ordered by how far apart its values' mean memory lie, so
    the one that matters most to the bill comes first.
    """
    measured = [row for row in rows if row.get("max_rss_kb") is not None]
    tables: list[tuple[float, list[UsageRow]]] = []
    for name in parameters:
        groups: dict[Any, list[dict[str, Any]]] = {}
        for row in measured:
            groups.setdefault(group_key(row.get(name)), []).append(row)
        if not 1 < len(groups) <= _MAX_VALUES:
            continue
        table = []
        for runs in groups.values():
            runtimes = [row["runtime"] for row in runs if row.get("runtime") is not None]
            table.append(UsageRow(
                parameter=name,
                value=runs[0].get(name),
                runs=len(runs),
                memory_mb=statistics.fmean(row["max_rss_kb"] for row in runs) / 1024,
                cpu_s=statistics.fmean((row.get("user_cpu_s") or 0.0) + (row.get("sys_cpu_s") or 0.0) for row in runs),
                runtime_s=statistics.fmean(runtimes) if runtimes else None,
            ))
        table.sort(key=lambda usage: (str(type(usage.value)), usage.value if isinstance(usage.value, (int, float, str)) else str(usage.value)))
        spread = max(usage.memory_mb for usage in table) - min(usage.memory_mb for usage in table)
        tables.append((spread, table))
    tables.sort(key=lambda pair: -pair[0])
    return [usage for _, table in tables for usage in table]
