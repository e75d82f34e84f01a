"""What the runs used, by parameter value: which settings of a sweep are expensive in memory, CPU and time.

From the rows of `Results.rows` (each run's `max_rss_kb`, `user_cpu_s`,
`sys_cpu_s`, `runtime`), for the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from batchrun.results.table import group_key

__all__ = ["UsageRow", "UsageTally", "usage_by_parameter"]

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


def usage_by_parameter(rows: Iterable[dict[str, Any]], parameters: Sequence[str]) -> list[UsageRow]:
    """Per parameter and value (in value order), the mean usage of the runs whose usage is recorded; most expensive parameters first.

    A parameter is ordered by how far apart its values' mean memory lie, so
    the one that matters most to the bill comes first.
    """
    tally = UsageTally(parameters)
    for row in rows:
        tally.add(row)
    return tally.rows()


class UsageTally:
    """`usage_by_parameter` a row at a time: sums per parameter value, so a million rows need not be held."""

    def __init__(self, parameters: Sequence[str]) -> None:
        self.parameters = list(parameters)
        # Per parameter: value key -> [first value, runs, memory kB, CPU s, runtime s, runs with a runtime]; None past _MAX_VALUES.
        self._sums: dict[str, dict[Any, list[Any]] | None] = {name: {} for name in self.parameters}

    def add(self, row: dict[str, Any]) -> None:
        if row.get("max_rss_kb") is None:
            return
        cpu = (row.get("user_cpu_s") or 0.0) + (row.get("sys_cpu_s") or 0.0)
        runtime = row.get("runtime")
        for name in self.parameters:
            groups = self._sums[name]
            if groups is None:
                continue
            key = group_key(row.get(name))
            sums = groups.get(key)
            if sums is None:
                if len(groups) == _MAX_VALUES:
                    self._sums[name] = None  # a continuous draw: not tabulated
                    continue
                sums = groups[key] = [row.get(name), 0, 0.0, 0.0, 0.0, 0]
            sums[1] += 1
            sums[2] += row["max_rss_kb"]
            sums[3] += cpu
            if runtime is not None:
                sums[4] += runtime
                sums[5] += 1

    def rows(self) -> list[UsageRow]:
        """The table: each tabulated parameter's values, most expensive parameter first."""
        tables: list[tuple[float, list[UsageRow]]] = []
        for name in self.parameters:
            groups = self._sums[name]
            if groups is None or len(groups) < 2:
                continue
            table = [
                UsageRow(parameter=name, value=value, runs=runs, memory_mb=memory / runs / 1024, cpu_s=cpu / runs, runtime_s=runtime / timed if timed else None)
                for value, runs, memory, cpu, runtime, timed in groups.values()
            ]
            table.sort(key=lambda usage: (str(type(usage.value)), usage.value if isinstance(usage.value, (int, float, str)) else str(usage.value)))
            spread = max(usage.memory_mb for usage in table) - min(usage.memory_mb for usage in table)
            tables.append((spread, table))
        tables.sort(key=lambda pair: -pair[0])
        return [usage for _, table in tables for usage in table]
