"""The rows of the ids looked up last, in front of an id index whose look-up is a search.

A running job's record and its metadata.json entry are each looked up by id
several times between its start and its end (its start, pid, usage and end
lines; their marks). Each look-up through an `IdIndex` or `IdPrefix` turns
the hex id into an integer and searches a sorted array: together about a
sixth of a launch's own Python time per job (py-spy), on its worker threads.
What a job was looked up as a moment ago is almost always what it is looked
up as next.

Sound only for an index whose rows never change their ids while remembered:
the owner forgets them (`clear`) whenever it replaces or cuts its index, and
checks a remembered row is still in use (not deleted or removed) itself. An
id may be noted as having no row while its owner has so many rows: it stays
absent only while the owner has that many (an owner that only ever adds rows).

Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["ABSENT", "RecentRows"]

# How many ids are remembered: far more than jobs run at once, few enough to stay a small dict.
RECENT = 1024
# `get`'s answer for an id noted absent while its owner had as many rows as it has now.
ABSENT = -2


class RecentRows:
    """A bounded map of id -> row: when full, it starts again (running jobs are soon looked up anew)."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}

    def get(self, key: str, rows: int = -1) -> int:
        """The row remembered for `key`; -1 when none is; `ABSENT` when noted absent (`note`) while the owner had `rows` rows."""
        row = self._rows.get(key, -1)
        return row if row >= -1 else ABSENT if -2 - row == rows else -1

    def note(self, key: str, row: int, rows: int = -1) -> None:
        """Remember `key`'s row; a negative row: that it had none when the owner had `rows` rows (any row added since voids that)."""
        rows_kept = self._rows
        if len(rows_kept) >= RECENT:
            rows_kept.clear()
        if row >= 0:
            rows_kept[key] = row
        elif rows >= 0:
            rows_kept[key] = -2 - rows
        else:
            rows_kept.pop(key, None)

    def clear(self) -> None:
        self._rows.clear()
