"""metadata.json's entries as the file last written plus the entries changed since: never every entry in memory.

A launch rewrites metadata.json about once a second while jobs end, and each
rewrite must cost what changed, not a rendering of every job. Keeping every
rendered entry in memory did that (460 bytes a job as strings, 50-90
compressed): most of a million-line launch's memory. Here the entries live
in the file: the view keeps, per entry, where its line is in the file last
written (`starts`, `lens`: 12 bytes) and its job id (`IdIndex`: 16 bytes),
and only the lines changed since, rendered. A rewrite copies the runs of
unchanged lines from the old file (its open descriptor survives the rename)
and writes the changed ones between them.

The file is the one batchrun writes: `{`, one entry a line (`  "<id>": {...}`)
joined by `,\\n`, `}` (or `{}` when empty), which any JSON reader loads. An
entry removed leaves its position with no line (length 0); a key set again
after its removal goes to the end, as in a dict.

Nothing here renders entries or knows jobs (`metadata`, `metasync` do).
"""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import add
from pathlib import Path

from batchrun.atomic import write_atomic
from batchrun.runfile.idindex import IdIndex, twin_of
from batchrun.runfile.idprefix import IdPrefix

__all__ = ["ViewFile", "ViewSnapshot"]

# Between entries, as in the file.
_SEP = b",\n"
# Bytes copied from the old file per read.
_CHUNK = 1 << 20
# Positions shifted or scanned at a time (`_shifted`, `_present_span`).
_ROWS = 1 << 16


@dataclass(frozen=True)
class ViewSnapshot:
    """What one rewrite writes: taken under the caller's lock, written without it."""

    count: int  # positions
    base_count: int  # positions the file last written covers
    starts: array[int]
    lens: array[int]
    changed: dict[int, bytes]  # position -> its line (b"": none)
    generation: int = -1  # the view's writes before it: a write of the latest snapshot updates the arrays in place


class ViewFile:
    """The entries of one metadata.json, by job id, in insertion order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: IdIndex | IdPrefix = IdIndex()
        # Per position covered by the file last written: where its line starts, and its length.
        self._starts = array("q")
        self._lens = array("I")
        self._base_count = 0
        self._changed: dict[int, bytes] = {}
        self._dead: set[int] = set()  # positions removed: a key set again goes to the end
        self._count = 0
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # one write at a time: it may change the position arrays in place
        self._generation = 0  # counts the writes (and adoptions) of the arrays

    def __len__(self) -> int:
        return self._count

    # -- changing -------------------------------------------------------------

    def put(self, key: str, line: bytes) -> None:
        """Add or replace a key's line; a new key goes at the end."""
        with self._lock:
            pos = self._position(key)
            if pos < 0:
                self._append(key, line)
            else:
                if not self._has_line(pos):
                    self._count += 1
                self._changed[pos] = line

    def append_new(self, key: str, line: bytes) -> None:
        """Add a key the caller knows is not here: no look-up."""
        with self._lock:
            self._append(key, line)

    def remove(self, key: str) -> bool:
        """Drop a key's line; False if it had none."""
        with self._lock:
            pos = self._position(key)
            if pos < 0 or not self._has_line(pos):
                return False
            self._changed[pos] = b""
            self._dead.add(pos)
            self._count -= 1
            return True

    def adopt(self, keys: IdIndex, starts: array[int], lens: array[int]) -> None:
        """Take the file at `path` as written, its entries at these positions (the caller read or kept them)."""
        with self._lock:
            self._keys, self._starts, self._lens = keys, starts, lens
            self._generation += 1
            self._base_count = len(keys)
            self._changed, self._dead = {}, set()
            self._count = len(lens) - lens.count(0)

    def forget(self) -> None:
        """Hold no entry, as before the file was first read or written: for a caller about to write it anew (`rebuild`)."""
        self.adopt(IdIndex(), array("q"), array("I"))

    def share_keys(self, keys: IdIndex, unique: bool) -> None:
        """Hold the entries' keys as `keys`' first rows when they are those ids in order (`idprefix`; `unique`:
        no two of `keys` alike), or as its twin (`idindex.twin_of`)."""
        with self._lock:
            if isinstance(self._keys, IdIndex):
                prefix = IdPrefix.follow(self._keys, keys, unique)
                self._keys = prefix if prefix is not None else twin_of(self._keys, keys)

    def _append(self, key: str, line: bytes) -> None:
        pos = self._keys.append(key)
        self._changed[pos] = line
        self._count += 1

    def _position(self, key: str) -> int:
        # The key's first position, unless removed; else its next one not removed.
        first = self._keys.row_of(key)
        if first < 0 or first not in self._dead:
            return first
        for pos in self._keys.rows_of(key):
            if pos not in self._dead:
                return pos
        return -1

    def _has_line(self, pos: int) -> bool:
        line = self._changed.get(pos)
        if line is not None:
            return bool(line)
        return pos < self._base_count and self._lens[pos] > 0

    # -- the file -------------------------------------------------------------

    @property
    def keys(self) -> IdIndex | IdPrefix:
        """The entries' keys by position (do not change it)."""
        return self._keys

    def layout(self) -> tuple[array[int], array[int]] | None:
        """Where each entry's line is in the file as last written (for the fingerprint); None while lines are unwritten."""
        with self._lock:
            if self._changed or self._base_count != len(self._keys):
                return None
            return self._starts, self._lens

    def line(self, key: str) -> bytes | None:
        """A key's line as the view holds it now (None: no line)."""
        with self._lock:
            pos = self._position(key)
            if pos < 0:
                return None
            line = self._changed.get(pos)
            if line is not None:
                return line or None
            if pos >= self._base_count or not self._lens[pos]:
                return None
        with self._writing, open(self.path, "rb") as f:  # not while a write moves the positions
            with self._lock:
                start, length = self._starts[pos], self._lens[pos]
            f.seek(start)
            return f.read(length)

    def snapshot(self) -> ViewSnapshot:
        """The view now, for `write` (its changes are its own; its arrays are the view's, moved by the next write)."""
        with self._lock:
            return ViewSnapshot(len(self._keys), self._base_count, self._starts, self._lens, dict(self._changed), self._generation)

    def write(self, snap: ViewSnapshot | None = None) -> None:
        """Write metadata.json atomically from a snapshot (by default, of the view now).

        The latest snapshot's write moves the position arrays in place, a run
        at a time (new arrays were 12 bytes a position at the write's peak:
        12 MB a million entries, each second or so), and moves them back if
        the write fails: they always describe the file on disk. An older
        snapshot is written into new arrays.

        Raises:
            OSError: the file cannot be written, or the file last written can no longer be read.
        """
        snap = snap if snap is not None else self.snapshot()
        with self._writing:
            in_place = snap.generation == self._generation and len(snap.lens) == snap.base_count
            if in_place:
                starts, lens = snap.starts, snap.lens
                starts.extend(array("q", [0]) * (snap.count - snap.base_count))
                lens.extend(array("I", [0]) * (snap.count - snap.base_count))
            else:
                starts, lens = array("q", [0]) * snap.count, array("I", [0]) * snap.count
            undo: list[tuple[str, int, int, int]] | None = [] if in_place else None
            source = open(self.path, "rb") if snap.base_count and not _all_changed(snap) else None  # noqa: SIM115 - closed below
            try:
                write_atomic(self.path, _pieces(snap, source, starts, lens, undo))
            except BaseException:
                if undo is not None:
                    _move_back(snap, undo)
                raise
            finally:
                if source is not None:
                    source.close()
            self._written(snap, starts, lens)

    def _written(self, snap: ViewSnapshot, starts: array[int], lens: array[int]) -> None:
        with self._lock:
            self._starts, self._lens, self._base_count = starts, lens, snap.count
            self._generation += 1
            for pos, line in snap.changed.items():
                if self._changed.get(pos) is line:
                    del self._changed[pos]

    def rebuild(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Write metadata.json anew from (key, line) pairs in order, streaming: the view's first build.

        Raises:
            OSError: the file cannot be written.
        """
        keys = IdIndex()
        starts, lens = array("q"), array("I")
        write_atomic(self.path, _fresh_pieces(entries, keys, starts, lens))
        self.adopt(keys, starts, lens)


def _all_changed(snap: ViewSnapshot) -> bool:
    return len(snap.changed) >= snap.base_count and all(pos in snap.changed for pos in range(snap.base_count))


def _fresh_pieces(entries: Iterable[tuple[str, bytes]], keys: IdIndex, starts: array[int], lens: array[int]) -> Iterator[bytes]:
    out = 0
    batch: list[bytes] = []
    size = 0
    for key, line in entries:
        keys.append(key)
        out += 2  # "{\n" before the first line, the separator before the others
        starts.append(out)
        lens.append(len(line))
        out += len(line)
        batch.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield (b"{\n" if len(batch) == len(keys) else _SEP) + _SEP.join(batch)
            batch, size = [], 0
    if batch:
        yield (b"{\n" if len(batch) == len(keys) else _SEP) + _SEP.join(batch)
    yield b"\n}\n" if len(keys) else b"{}\n"


def _pieces(snap: ViewSnapshot, source: object, starts: array[int], lens: array[int], undo: list[tuple[str, int, int, int]] | None) -> Iterator[bytes]:
    """The new file's bytes: runs of unchanged lines copied from the old file, changed lines between; fills starts and lens.

    Given `undo` (starts and lens are the snapshot's own), it notes each
    change to a position the old file had, for `_move_back`.
    """
    out = 0  # bytes yielded so far
    first = True
    pos = 0
    for stop in [*sorted(snap.changed), snap.count]:
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
        line = snap.changed[stop]
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


def _move_back(snap: ViewSnapshot, undo: list[tuple[str, int, int, int]]) -> None:
    """Undo what a failed in-place write did to the snapshot's arrays (`_pieces`' notes): they describe the old file again."""
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
