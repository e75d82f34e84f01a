"""`batchrun results --sort` of a million rows in bounded memory: the key column held compactly, then the rows made again in order.

`table.sort_rows` sorts every row held as a dict. Here only each row's key
and position are kept, as arrays sorted a chunk at a time (`_CHUNK` rows)
and merged as they are read: 12 bytes a row. The merge is stable (chunks
in row order, equal keys from the earlier chunk first), so the order is the
one `sort_rows` gives: rows with a value, by value (ascending or
descending, ties in row order), then the rows without one in row order.

Only keys that are numbers (to 2**53, as a float holds them exactly) are
sorted this way; `sorted_positions` says None for any other column (texts:
`sort_rows` on the held rows sorts those).
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

from batchrun.results.table import sortable

__all__ = ["sorted_positions"]

# Rows sorted at a time.
_CHUNK = 1 << 16
# Integers a float holds exactly.
_EXACT = 2**53


def sorted_positions(windows: Iterable[list[tuple[int, dict[str, Any]]]], key: str) -> Callable[[], Iterator[int]] | None:
    """The positions of the rows (`StreamedResults.positioned`) in the order `sort_rows(rows, key)` gives, again at each call; None: not numbers."""
    descending = key.startswith("-")
    name = key[1:] if descending else key
    chunks: list[tuple[array[float], array[int]]] = []
    missing = array("q")
    buffer: list[tuple[float, int]] = []

    def flush() -> None:
        buffer.sort(key=itemgetter(0), reverse=descending)  # stable either way
        chunks.append((array("d", [value for value, _ in buffer]), array("q", [k for _, k in buffer])))
        buffer.clear()

    for window in windows:
        for k, row in window:
            value = row.get(name)
            if not sortable(value):
                missing.append(k)
            elif isinstance(value, float) or (isinstance(value, int) and -_EXACT <= value <= _EXACT):
                buffer.append((float(value), k))
                if len(buffer) >= _CHUNK:
                    flush()
            else:
                return None
    if buffer:
        flush()

    def order() -> Iterator[int]:
        merged = heapq.merge(*(zip(keys, ks, strict=True) for keys, ks in chunks), key=itemgetter(0), reverse=descending)
        yield from map(itemgetter(1), merged)
        yield from missing

    return order
