"""metadata.json's rendered entries in memory, compressed in blocks: not one string per job.

A launch keeps every entry of metadata.json rendered, so that a rewrite is a
copy, not a re-encoding. As one `str` per job in a dict, that is about 460
bytes a job (the line, its key, the dict slot): 46 MB for 100,000 jobs, most
of a million-line launch's memory. Here the entries sit in order, in blocks
of `BLOCK` consecutive lines, each block zlib-compressed (the lines of
neighbouring jobs differ in a few digits: a block shrinks 5-10 times), and
the keys in a `JobTable` (8 bytes a key). The few blocks being changed are
kept open (decompressed) and closed again at the next snapshot.

A block's lines are joined by `,\n`, as in the file, so a block is written
as it is. A removed entry leaves an empty line in its block (a rendered line
is never empty), skipped when the file is written; a key set again after its
removal goes to the end, as in a dict.

Nothing here does I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from batchrun.runfile.jobtable import JobTable

__all__ = ["BLOCK", "EntryBlocks", "json_object_chunks"]

# Entries per block: ~100 KB of text, a millisecond to compress.
BLOCK = 256
# Blocks kept decompressed while they change (a launch changes the few where jobs run).
_OPEN_MAX = 16
# Between the lines of a block, as in the file: a block is written as it is.
# A rendered line is JSON without a raw newline, so the split is exact.
_SEP = b",\n"
# zlib's fastest level: the blocks are re-compressed about once a second.
_LEVEL = 1


class EntryBlocks:
    """Rendered entries (one JSON line each) by key, in insertion order."""

    def __init__(self) -> None:
        self._keys = JobTable()
        self._blocks: list[bytes] = []
        self._open: dict[int, list[bytes]] = {}
        self._dead: set[int] = set()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, key: str, line: str) -> None:
        """Add or replace a key's line; a new key goes at the end."""
        pos = self._position(key)
        if pos < 0:
            self.append_new(key, line)
        else:
            self._lines_of(pos // BLOCK)[pos % BLOCK] = line.encode()

    def append_new(self, key: str, line: str) -> None:
        """Add a key the caller knows is not here: no look-up (a first build of 1,000,000)."""
        pos = len(self._keys)
        self._keys.append_key(key)
        block = pos // BLOCK
        if block == len(self._blocks):
            self._blocks.append(b"")
            self._open[block] = []
            self._trim()
        self._lines_of(block).append(line.encode())
        self._count += 1

    def remove(self, key: str) -> bool:
        """Drop a key's line; False if it had none."""
        pos = self._position(key)
        if pos < 0:
            return False
        self._lines_of(pos // BLOCK)[pos % BLOCK] = b""
        self._dead.add(pos)
        self._count -= 1
        return True

    def snapshot(self) -> list[bytes]:
        """Every block compressed, in order: what `json_object_chunks` writes (immutable, cheap to keep)."""
        for block in list(self._open):
            self._close(block)
        return list(self._blocks)

    def _position(self, key: str) -> int:
        for pos in self._keys.indices_of(key):
            if pos not in self._dead:
                return pos
        return -1

    def _lines_of(self, block: int) -> list[bytes]:
        lines = self._open.get(block)
        if lines is None:
            lines = self._open[block] = zlib.decompress(self._blocks[block]).split(_SEP)
            self._trim()
        return lines

    def _trim(self) -> None:
        while len(self._open) > _OPEN_MAX:
            self._close(next(iter(self._open)))

    def _close(self, block: int) -> None:
        self._blocks[block] = zlib.compress(_SEP.join(self._open.pop(block)), _LEVEL)


def json_object_chunks(blocks: list[bytes]) -> Iterator[bytes]:
    """metadata.json's bytes from `snapshot` blocks: `{`, the entries one a line, comma-separated, `}`.

    One block's text at a time: the file is never whole in memory.
    """
    first = True
    for block in blocks:
        data = zlib.decompress(block)
        if not data or b",\n,\n" in data or data[:2] == _SEP or data[-2:] == _SEP:
            data = _SEP.join(line for line in data.split(_SEP) if line)  # removed entries
            if not data:
                continue
        yield b"{\n" if first else _SEP
        yield data
        first = False
    yield b"{}\n" if first else b"\n}\n"
