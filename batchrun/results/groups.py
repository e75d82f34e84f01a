"""`batchrun results --over` of a million rows in bounded memory: per group its key, and per metric value its group.

`table.group_over` holds every row, then each group's rows. Here the rows
go by a window at a time (`stream.StreamedResults.windows`) and only this
is kept: each group's key and first row's values of the parameters kept
(its cells), its count of runs, and for each metric every numeric value
(8 bytes, with its kind, so an int or a bool comes back as itself) and its
group's number (4 bytes). The groups' rows are then made again a window at
a time, each value list in row order, by the same rule (`table.add_summary`):
means and deviations to the bit. Memory grows with the groups (a key each)
and 13 bytes a value, not with the rows.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from batchrun.results.table import add_summary, group_key

__all__ = ["Groups"]

# Integers a float holds exactly.
_EXACT = 2**53
# A value's kind: how it is made again from its float.
_FLOAT, _INT, _BOOL, _OTHER = 0, 1, 2, 3


class _Values:
    """One metric's numeric values, in row order, each with its group."""

    def __init__(self) -> None:
        self.groups = array("i")
        self.numbers = array("d")
        self.kinds = bytearray()
        self.others: dict[int, Any] = {}  # what a float does not hold: big ints, subclasses of float or int

    def add(self, group: int, value: Any) -> None:
        kind = type(value)
        self.groups.append(group)
        if kind is float:
            self.numbers.append(value)
            self.kinds.append(_FLOAT)
        elif kind is int and -_EXACT <= value <= _EXACT:
            self.numbers.append(value)
            self.kinds.append(_INT)
        elif kind is bool:
            self.numbers.append(value)
            self.kinds.append(_BOOL)
        else:
            self.others[len(self.numbers)] = value
            self.numbers.append(0.0)
            self.kinds.append(_OTHER)

    def value(self, i: int) -> Any:
        kind = self.kinds[i]
        if kind == _FLOAT:
            return self.numbers[i]
        if kind == _INT:
            return int(self.numbers[i])
        if kind == _BOOL:
            return bool(self.numbers[i])
        return self.others[i]

    def by_group(self, count: int) -> tuple[array[int], array[int]]:
        """Where each group's values end (`ends[g]`, from `ends[g - 1]`), and the values' indices in that order (a stable counting sort)."""
        ends = array("q", bytes(8 * (count + 1)))
        for group in self.groups:
            ends[group + 1] += 1
        for g in range(count):
            ends[g + 1] += ends[g]
        place = array("q", ends)
        order = array("i", bytes(4 * len(self.groups)))
        for i, group in enumerate(self.groups):
            order[place[group]] = i
            place[group] += 1
        return ends, order


class Groups:
    """The groups of `table.group_over(rows, over, parameter_names, metric_names)`, taken a window of rows at a time."""

    def __init__(self, over: Sequence[str], parameter_names: Sequence[str], metric_names: Sequence[str]) -> None:
        self.kept = [name for name in parameter_names if name not in over]
        self.metric_names = list(metric_names)
        self._index: dict[tuple[Any, ...], int] = {}
        self._cells: list[tuple[Any, ...]] = []  # the group's first row's values of the kept parameters
        self._runs = array("q")
        self._values = [_Values() for _ in self.metric_names]
        # Each metric's values by group (`_Values.by_group`), made once all rows are added.
        self._orders: list[tuple[array[int], array[int]]] | None = None

    def __len__(self) -> int:
        return len(self._cells)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        self._orders = None
        index, cells, runs, kept = self._index, self._cells, self._runs, self.kept
        metrics = list(zip(self.metric_names, self._values, strict=True))
        for row in rows:
            key = values = tuple([row.get(name) for name in kept])
            try:
                group = index.get(key)  # hashable values are their own key (`group_key`): one tuple for both
            except TypeError:
                key = tuple([group_key(value) for value in values])
                group = index.get(key)
            if group is None:
                group = index[key] = len(cells)
                cells.append(values)
                runs.append(0)
            runs[group] += 1
            for metric, found in metrics:
                value = row.get(metric)
                if isinstance(value, (int, float)):
                    found.add(group, value)

    def windows(self, size: int = 2048) -> Iterator[list[dict[str, Any]]]:
        """The groups' rows, in the order each group was first seen, a window at a time: `group_over`'s, to the bit."""
        for window in self.positioned(size):
            yield [row for _, row in window]

    def positioned(self, size: int = 2048) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        """`windows`, each row with its group's number (for `rows_at`)."""
        count = len(self._cells)
        for first in range(0, count, size):
            yield [(g, self.row(g)) for g in range(first, min(count, first + size))]

    def row(self, g: int) -> dict[str, Any]:
        """Group `g`'s row: its cells, its count of runs, each metric's mean, deviation and count (`table.add_summary`)."""
        if self._orders is None:
            self._orders = [found.by_group(len(self._cells)) for found in self._values]
        grouped: dict[str, Any] = dict(zip(self.kept, self._cells[g], strict=True))
        grouped["runs"] = self._runs[g]
        for metric, found, (ends, order) in zip(self.metric_names, self._values, self._orders, strict=True):
            add_summary(grouped, metric, [found.value(i) for i in order[ends[g] : ends[g + 1]]])
        return grouped
