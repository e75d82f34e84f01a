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

A changed entry may also be held as a mark (`mark`), rendered by the
view's `render` only as the rewrite reaches it, a batch at a time: a line
held rendered until written is about half a KB, and a million-entry file
takes seconds to rewrite, while tens of thousands of jobs end.

The file is the one batchrun writes: `{`, one entry a line (`  "<id>": {...}`)
joined by `,\\n`, `}` (or `{}` when empty), which any JSON reader loads. An
entry removed leaves its position with no line (length 0); a key set again
after its removal goes to the end, as in a dict.

Nothing here renders entries or knows jobs (`metadata`, `metasync` do).
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from batchrun.atomic import write_atomic
from batchrun.runfile.idindex import IdIndex, twin_of
from batchrun.runfile.idprefix import IdPrefix
from batchrun.store.recent import RecentRows
from batchrun.store.viewwrite import Unrendered, ViewSnapshot, all_changed, fresh_pieces, move_back, pieces

__all__ = ["ViewFile", "ViewSnapshot"]

# Marked entries rendered at a time by a rewrite.
_RENDER_ROWS = 1024


class ViewFile:
    """The entries of one metadata.json, by job id, in insertion order."""

    def __init__(self, path: Path, render: Callable[[list[str]], list[bytes]] | None = None) -> None:
        """`render`: the lines of marked keys, in their order (b"" for a key that has no entry any more)."""
        self.path = path
        self._render = render
        self._keys: IdIndex | IdPrefix = IdIndex()
        # Per position covered by the file last written: where its line starts, and its length.
        self._starts = array("q")
        self._lens = array("I")
        self._base_count = 0
        self._changed: dict[int, bytes | Unrendered] = {}
        self._mark = Unrendered()
        self._dead: set[int] = set()  # positions removed: a key set again goes to the end
        # Positions of the keys marked last: a running job's entry is marked at its start, pid and end.
        self._recent = RecentRows()
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
            self._set(key, line)

    def mark(self, key: str) -> None:
        """Note that a key's entry changed, to be rendered by `render` when next written; a new key goes at the end.

        A mark is a dict slot where a rendered line held until the write
        was about half a KB: a million-entry file takes seconds to rewrite,
        and tens of thousands of entries change meanwhile.
        """
        assert self._render is not None, "a view of marks renders them"
        with self._lock:
            self._set(key, self._mark)

    def _set(self, key: str, line: bytes | Unrendered) -> None:
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

    def adopt(self, keys: IdIndex | IdPrefix, starts: array[int], lens: array[int]) -> None:
        """Take the file at `path` as written, its entries at these positions (the caller read or kept them)."""
        with self._lock:
            self._keys, self._starts, self._lens = keys, starts, lens
            self._generation += 1
            self._base_count = len(keys)
            self._changed, self._dead = {}, set()
            self._recent.clear()
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

    def _append(self, key: str, line: bytes | Unrendered) -> None:
        pos = self._keys.append(key)
        self._changed[pos] = line
        self._count += 1
        self._recent.note(key, pos)

    def _position(self, key: str) -> int:
        # The key's first position, unless removed; else its next one not removed.
        # A remembered one is that, unless removed since.
        pos = self._recent.get(key)
        if pos >= 0 and pos not in self._dead:
            return pos
        pos = self._keys.row_of(key)
        if pos >= 0 and pos in self._dead:
            pos = next((later for later in self._keys.rows_of(key) if later not in self._dead), -1)
        if pos >= 0:
            self._recent.note(key, pos)
        return pos

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
            line = self._changed.get(pos) if pos >= 0 else b""
            if line is None and (pos >= self._base_count or not self._lens[pos]):
                line = b""
        if isinstance(line, Unrendered):
            line = self._rendered([pos])[0]
        if line is not None:
            return line or None
        with self._writing, open(self.path, "rb") as f:  # not while a write moves the positions
            with self._lock:
                start, length = self._starts[pos], self._lens[pos]
            f.seek(start)
            return f.read(length)

    def snapshot(self) -> ViewSnapshot:
        """The view now, for `write` (its changes are its own; its arrays are the view's, moved by the next write)."""
        with self._lock:
            snap = ViewSnapshot(len(self._keys), self._base_count, self._starts, self._lens, dict(self._changed), self._generation)
            self._mark = Unrendered()  # marks set from now on are not this snapshot's
            return snap

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
            source = open(self.path, "rb") if snap.base_count and not all_changed(snap) else None  # noqa: SIM115 - closed below
            try:
                write_atomic(self.path, pieces(snap, self._in_order(snap), source, starts, lens, undo))
            except BaseException:
                if undo is not None:
                    move_back(snap, undo)
                raise
            finally:
                if source is not None:
                    source.close()
            self._written(snap, starts, lens)

    def _in_order(self, snap: ViewSnapshot) -> Iterator[tuple[int, bytes]]:
        """The snapshot's changed positions in order, with their lines: the marked ones rendered a batch at a time."""
        order = sorted(snap.changed)
        for a in range(0, len(order), _RENDER_ROWS):
            block = order[a : a + _RENDER_ROWS]
            marked = [pos for pos in block if isinstance(snap.changed[pos], Unrendered)]
            rendered = dict(zip(marked, self._rendered(marked), strict=True))
            for pos in block:
                line = rendered[pos] if pos in rendered else snap.changed[pos]
                assert isinstance(line, bytes)
                yield pos, line

    def _rendered(self, positions: list[int]) -> list[bytes]:
        """The lines of marked positions, from `render`; none for a position removed meanwhile (set again, its key went to the end)."""
        if not positions:
            return []
        assert self._render is not None
        with self._lock:
            keys = [self._keys.text(pos) for pos in positions]
        lines = self._render(keys)
        with self._lock:  # after the render: a removal before it is seen here
            return [b"" if pos in self._dead else line for pos, line in zip(positions, lines, strict=True)]

    def _written(self, snap: ViewSnapshot, starts: array[int], lens: array[int]) -> None:
        with self._lock:
            self._starts, self._lens, self._base_count = starts, lens, snap.count
            self._generation += 1
            for pos, line in snap.changed.items():
                if self._changed.get(pos) is line:
                    del self._changed[pos]

    def rebuild(self, entries: Iterable[tuple[str, bytes]], jobs: IdIndex | None = None) -> None:
        """Write metadata.json anew from (key, line) pairs in order, streaming: the view's first build.

        `jobs`: the keys are exactly these ids, in order, no two alike (a job
        table's): held as its rows (`IdPrefix`), not gathered into an index of
        their own (at a million entries a second and 24 MB, only for
        `share_keys` to find them the same).

        Raises:
            OSError: the file cannot be written.
        """
        keys = IdIndex() if jobs is None else None
        starts, lens = array("q"), array("I")
        write_atomic(self.path, fresh_pieces(entries, keys, starts, lens))
        if keys is None:
            assert jobs is not None
            if len(lens) != len(jobs):
                raise AssertionError(f"{self.path}: {len(lens)} entries written for {len(jobs)} jobs")
            self.adopt(IdPrefix(jobs, len(jobs)), starts, lens)
        else:
            self.adopt(keys, starts, lens)
