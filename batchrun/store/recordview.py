"""A record of a `RecordTable` as a `JobRecord`: a view of one row, whose fields read and write the table's columns.

Apart from the table so that the table's module stays about its rows; it
knows the table only as `Table` (its columns and its rows' ids).
"""

from __future__ import annotations

from typing import Any, Protocol

from batchrun.store.records import FIELDS, JobRecord

__all__ = ["RecordView", "Table"]


class Table(Protocol):
    """What a view needs of its table."""

    columns: dict[str, Any]

    @property
    def keys_index(self) -> Any: ...


class RecordView(JobRecord):
    """A record of a `RecordTable`: reading a field reads its row, setting it writes the row.

    `exit_codes` reads as a new list: assign it (`rec.exit_codes = [...]`), do
    not append to it.
    """

    __slots__ = ("_row", "_table")

    def __init__(self, table: Table, row: int) -> None:  # noqa: B903 - not JobRecord's fields
        self._table = table
        self._row = row

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordView):
            return self._table is other._table and self._row == other._row
        return NotImplemented

    def __hash__(self) -> int:
        return hash((id(self._table), self._row))


def _view_property(name: str) -> property:
    def get(self: RecordView) -> Any:
        return self._table.columns[name].get(self._row)

    def put(self: RecordView, value: Any) -> None:
        self._table.columns[name].set(self._row, value)

    return property(get, put, doc=f"The row's `{name}`.")


for _field in FIELDS:
    setattr(RecordView, _field.name, _view_property(_field.name))
RecordView.job_id = property(lambda self: self._table.keys_index.text(self._row), doc="The row's job id.")  # type: ignore[assignment]
