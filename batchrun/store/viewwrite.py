"""How `viewfile.ViewFile` writes metadata.json: a snapshot of the view, and the new file's bytes from it.

A rewrite copies the runs of unchanged lines from the file last written (a
run at a time, its positions shifted a block at a time) and writes the
changed lines between; the first build streams every line. Pure but for
reading the old file: the caller writes the bytes (`atomic.write_atomic`).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, repeat
from operator import add

from batchrun.runfile.idindex import IdIndex

__all__ = ["Unrendered", "ViewSnapshot", "all_changed", "fresh_pieces", "move_back", "pieces"]

# Between entries, as in the file.
_SEP = b",\n"
# Bytes copied from the old file per read.
_CHUNK = 1 << 20
# Positions shifted or scanned at a time (`_shifted`, `_present_span`).
_ROWS = 1 << 16


class Unrendered:
    """The mark of entries changed but not rendered yet (`ViewFile.mark`).

    One object stands for every mark set between two snapshots: a write
    clears a position's mark only if it is the one its snapshot rendered.
    """

    __slots__ = ()


@dataclass(frozen=True)
class ViewSnapshot:
    """What one rewrite writes: taken under the caller's lock, written without it."""

    count: int  # positions
    base_count: int  # positions the file last written covers
    starts: array[int]
    lens: array[int]
    changed: dict[int, bytes | Unrendered]  # position -> its line (b"": none), or a mark: rendered as written
    generation: int = -1  # the view's writes before it: a write of the latest snapshot updates the arrays in place


def all_changed(snap: ViewSnapshot) -> bool:
    """Whether every line of the file last written changed: nothing is copied from it (it need not be opened)."""
    return len(snap.changed) >= snap.base_count and all(pos in snap.changed for pos in range(snap.base_count))


def fresh_pieces(entries: Iterable[tuple[str, bytes]], keys: IdIndex | None, starts: array[int], lens: array[int]) -> Iterator[bytes]:
    """A whole file's bytes from (key, line) pairs, about a chunk at a time; fills keys (unless None: the caller holds them), starts and lens as it goes."""
    out = 0
    batch: list[bytes] = []
    size = 0
    for key, line in entries:
        if keys is not None:
            keys.append(key)
        out += 2  # "{\n" before the first line, the separator before the others
        starts.append(out)
        lens.append(len(line))
        out += len(line)
        batch.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield (b"{\n" if len(batch) == len(lens) else _SEP) + _SEP.join(batch)
            batch, size = [], 0
    if batch:
        yield (b"{\n" if len(batch) == len(lens) else _SEP) + _SEP.join(batch)
    yield b"\n}\n" if lens else b"{}\n"


def pieces(
    snap: ViewSnapshot, changes: Iterator[tuple[int, bytes]], source: object, starts: array[int], lens: array[int], undo: list[tuple[str, int, int, int]] | None
) -> Iterator[bytes]:
    """The new file's bytes: runs of unchanged lines copied from the old file, changed lines (`changes`, in order) between; fills starts and lens.

    Given `undo` (starts and lens are the snapshot's own), it notes each
    change to a position the old file had, for `move_back`.
    """
    out = 0  # bytes yielded so far
    first = True
    pos = 0
    for stop, line in chain(changes, [(snap.count, b"")]):
        end = min(stop, snap.base_count)
        if pos < end:
            run = _present_span(snap.lens, pos, end)
            if run is not None:
                lo, hi = run
                src_start, src_end = snap.starts[lo], snap.starts[hi] + snap.lens[hi]
                head = b"{\n" if first else _SEP
                yield head
                out += len(head)
                # The run's lines keep their places relative to each other: one shift for all.
                if undo is not None:
                    undo.append(("shift", pos, end, out - src_start))
                _shifted(snap, starts, lens, pos, end, out - src_start)
                yield from _read(source, src_start, src_end)
                out += src_end - src_start
                first = False
        if stop == snap.count:
            break
        if undo is not None and stop < snap.base_count:
            undo.append(("set", stop, starts[stop], lens[stop]))
        starts[stop], lens[stop] = 0, 0  # no line
        if line:
            head = b"{\n" if first else _SEP
            yield head
            out += len(head)
            starts[stop], lens[stop] = out, len(line)
            yield line
            out += len(line)
            first = False
        pos = stop + 1
    yield b"{}\n" if first else b"\n}\n"


def _shifted(snap: ViewSnapshot, starts: array[int], lens: array[int], lo: int, hi: int, shift: int) -> None:
    """Positions [lo, hi) of the new arrays: the old lines' places, moved by `shift`.

    A block of rows at a time: a run is most of the file, and whole-run
    slices and their shifted copies would be 20 bytes a job at the write's
    peak (20 MB at a million), beside the new arrays themselves.
    """
    for a in range(lo, hi, _ROWS):
        b = min(hi, a + _ROWS)
        if shift or starts is not snap.starts:
            starts[a:b] = array("q", map(add, snap.starts[a:b], repeat(shift)))
        if lens is not snap.lens:
            lens[a:b] = snap.lens[a:b]


def move_back(snap: ViewSnapshot, undo: list[tuple[str, int, int, int]]) -> None:
    """Undo what a failed in-place write did to the snapshot's arrays (`pieces`' notes): they describe the old file again."""
    starts, lens = snap.starts, snap.lens
    for kind, a, b, c in reversed(undo):
        if kind == "set":
            starts[a], lens[a] = b, c
        else:
            _shifted(snap, starts, lens, a, b, -c)
    del starts[snap.base_count :], lens[snap.base_count :]


def _present_span(lens: array[int], lo: int, hi: int) -> tuple[int, int] | None:
    """The first and last positions in [lo, hi) that have a line; None when none has (found in C, a block at a time)."""
    size = lens.itemsize
    first = None
    for a in range(lo, hi, _ROWS):
        data = lens[a : min(hi, a + _ROWS)].tobytes()
        left = len(data) - len(data.lstrip(b"\0"))
        if left < len(data):
            first = a + left // size
            break
    if first is None:
        return None
    for b in range(hi, first, -_ROWS):
        a = max(first, b - _ROWS)
        right = len(lens[a:b].tobytes().rstrip(b"\0"))
        if right:
            return first, a + (right - 1) // size
    return first, first  # not reached: the block holding `first` has a line


def _read(source: object, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of the old file, a chunk at a time."""
    assert source is not None
    fd = source.fileno()  # type: ignore[attr-defined]
    while start < end:
        data = os.pread(fd, min(_CHUNK, end - start), start)
        if not data:
            raise OSError(f"{getattr(source, 'name', 'metadata.json')}: changed while being copied (shorter than written)")
        yield data
        start += len(data)
