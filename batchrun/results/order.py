"""`batchrun results --sort` of a million rows in bounded memory: the key column held compactly, then the rows made again in order.

`table.sort_rows` sorts every row held as a dict. Here only each row's key
and position are kept, as arrays sorted a chunk at a time (`_CHUNK` rows)
and merged as they are read: 12 bytes a row. The merge is stable (chunks
in row order, equal keys from the earlier chunk first), so the order is the
one `sort_rows` gives: rows with a value, by value (ascending or
descending, ties in row order), then the rows without one in row order.

Keys that are numbers (to 2**53, as a float holds them exactly) are kept
as floats; keys that are texts as their UTF-8 bytes (whose order is the
texts' code point order), each chunk sorted and written to a temporary
file, as `sort(1)` does, and merged from there: a few MB however long the
texts. `sorted_positions` says None for any other column (numbers and texts
mixed, or other values: `sort_rows` on the held rows sorts those).
"""

from __future__ import annotations

import heapq
import os
import struct
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from operator import itemgetter
from typing import IO, Any

from batchrun.results.table import sortable

__all__ = ["sorted_positions"]

# Rows sorted at a time.
_CHUNK = 1 << 16
# Integers a float holds exactly.
_EXACT = 2**53
# A text key's record in its chunk's file: the key's length and the row's position, then the key.
_HEAD = struct.Struct("<Iq")
# Bytes read from a chunk's file at a time, by each of the merge's readers.
_BLOCK = 1 << 16


def sorted_positions(windows: Iterable[list[tuple[int, dict[str, Any]]]], key: str) -> Callable[[], Iterator[int]] | None:
    """The positions of the rows (`StreamedResults.positioned`) in the order `sort_rows(rows, key)` gives, again at each call; None: neither all numbers nor all texts."""
    descending = key.startswith("-")
    name = key[1:] if descending else key
    numbers = _Numbers(descending)
    texts = _Texts(descending)
    missing = array("q")
    for window in windows:
        for k, row in window:
            value = row.get(name)
            if not sortable(value):
                missing.append(k)
            elif isinstance(value, str) and type(value).__lt__ is str.__lt__ and not numbers:  # a state is a str enum: compared as its text
                texts.add(value, k)
            elif (isinstance(value, float) or (isinstance(value, int) and -_EXACT <= value <= _EXACT)) and not texts:
                numbers.add(float(value), k)
            else:
                return None
    chunks = texts.chunks() if texts else numbers.chunks()

    def order() -> Iterator[int]:
        merged = heapq.merge(*(chunk() for chunk in chunks), key=itemgetter(0), reverse=descending)
        yield from map(itemgetter(1), merged)
        yield from missing

    if texts.file is not None:
        weakref.finalize(order, texts.file.close)  # the chunks' file, once no merge can read it
    return order


Chunk = Callable[[], Iterator[tuple[Any, int]]]


class _Numbers:
    """Numeric keys and positions, sorted a chunk at a time into arrays: 16 bytes a row."""

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.buffer: list[tuple[float, int]] = []
        self.sorted: list[tuple[array[float], array[int]]] = []

    def __bool__(self) -> bool:
        return bool(self.buffer or self.sorted)

    def add(self, value: float, k: int) -> None:
        self.buffer.append((value, k))
        if len(self.buffer) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        buffer = self.buffer
        buffer.sort(key=itemgetter(0), reverse=self.descending)  # stable either way
        self.sorted.append((array("d", [value for value, _ in buffer]), array("q", [k for _, k in buffer])))
        buffer.clear()

    def chunks(self) -> list[Chunk]:
        if self.buffer:
            self._flush()
        return [partial(zip, keys, ks, strict=True) for keys, ks in self.sorted]


class _Texts:
    """Text keys and positions, each chunk sorted and written to one temporary file: a record a row, its key's UTF-8 bytes and position."""

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.buffer: list[tuple[bytes, int]] = []
        self.spans: list[tuple[int, int]] = []  # each sorted chunk's bytes in the file
        self.file: IO[bytes] | None = None

    def __bool__(self) -> bool:
        return bool(self.buffer or self.spans)

    def add(self, value: str, k: int) -> None:
        # surrogatepass: a text read with surrogateescape keeps its place (UTF-8's byte order is the code points' order).
        self.buffer.append((value.encode("utf-8", "surrogatepass"), k))
        if len(self.buffer) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115 - read back by the merges, gone when closed
        buffer = self.buffer
        buffer.sort(key=itemgetter(0), reverse=self.descending)  # stable either way
        start = self.file.tell()
        self.file.write(b"".join([_HEAD.pack(len(data), k) + data for data, k in buffer]))
        self.spans.append((start, self.file.tell()))
        buffer.clear()

    def chunks(self) -> list[Chunk]:
        if self.buffer:
            self._flush()
        if self.file is None:
            return []
        self.file.flush()
        return [partial(_records, self.file, start, end) for start, end in self.spans]  # each holds the file open


def _records(file: IO[bytes], start: int, end: int) -> Iterator[tuple[bytes, int]]:
    """The (key, position) records written between `start` and `end` of `file`, read a block at a time."""
    fd = file.fileno()
    data, at, pos = b"", 0, start
    head = _HEAD.size
    while True:
        if len(data) - at < head or len(data) - at < head + _HEAD.unpack_from(data, at)[0]:
            if pos >= end:
                return
            block = os.pread(fd, min(_BLOCK, end - pos), pos)
            pos += len(block)
            data, at = data[at:] + block, 0
            continue
        size, k = _HEAD.unpack_from(data, at)
        yield data[at + head : at + head + size], k
        at += head + size
