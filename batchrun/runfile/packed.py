"""A long runfile's bytes held compressed, a block at a time: its commands in a fraction of their size.

A job table keeps its runfile's bytes to make each job's command when asked
(`jobtable.JobTable`). At a million lines of `python train.py --lr ... --seed ...`
that is 60-100 MB, more than all else a launch or a read command holds; sweep
lines repeat most of their bytes, and zlib's fastest level keeps them in a
fraction (12 MB of `true N` lines in about 2 MB). Jobs are asked for in
runfile order, a window at a time, so each block is inflated about once (the
block inflated last is kept for the next ask); a job asked for alone costs a
64 kB inflate, some tens of microseconds.

Only runfiles past `PACK_FROM` bytes are packed: below it the bytes cost
less than the time, and a relaunch of a short runfile pays nothing.

Pure: no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = ["PACK_FROM", "PackedBytes", "Packer", "packed_if_long"]

# Bytes a block: an inflate per job asked for alone costs about this much.
BLOCK = 1 << 16
# Runfiles of at least this many bytes are packed.
PACK_FROM = 8 << 20


class PackedBytes:
    """Read-only bytes kept as zlib blocks: `len`, slices (step 1), `find` of one byte, `bytes()`."""

    __slots__ = ("_blocks", "_last", "_size")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._size = len(view)
        self._blocks = [zlib.compress(view[start : start + BLOCK], 1) for start in range(0, self._size, BLOCK)]
        # The block inflated last, published whole (threads of a launch ask at once).
        self._last: tuple[int, bytes] = (-1, b"")

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self.blocks())

    def blocks(self, end: int | None = None) -> Iterator[bytes]:
        """The bytes (up to `end`), a block at a time, in order."""
        end = self._size if end is None else min(max(end, 0), self._size)
        for k in range(-(-end // BLOCK)):
            block = self._block(k)
            yield block if (k + 1) * BLOCK <= end else block[: end - k * BLOCK]

    def _block(self, k: int) -> bytes:
        last = self._last
        if last[0] == k:
            return last[1]
        data = zlib.decompress(self._blocks[k])
        self._last = (k, data)
        return data

    def __getitem__(self, span: slice) -> bytes:
        if not isinstance(span, slice):
            raise TypeError("PackedBytes takes slices only")
        start, stop, step = span.indices(self._size)
        if step != 1:
            raise ValueError("PackedBytes takes slices of step 1 only")
        if stop <= start:
            return b""
        first, last = start // BLOCK, (stop - 1) // BLOCK
        if first == last:
            base = first * BLOCK
            return self._block(first)[start - base : stop - base]
        return b"".join(self._block(k)[max(start - k * BLOCK, 0) : stop - k * BLOCK] for k in range(first, last + 1))

    def find(self, byte: bytes, start: int = 0) -> int:
        """The first position of `byte` (one byte) at or after `start`; -1 if none."""
        if len(byte) != 1:
            raise ValueError("PackedBytes.find looks for one byte")
        start = max(start, 0)
        for k in range(start // BLOCK, len(self._blocks)):
            base = k * BLOCK
            found = self._block(k).find(byte, max(start - base, 0))
            if found >= 0:
                return base + found
        return -1


class Packer:
    """`PackedBytes` made a piece at a time, as a runfile is read: never all its bytes at once."""

    def __init__(self) -> None:
        self._blocks: list[bytes] = []
        self._rest = bytearray()  # the bytes after the last whole block
        self.size = 0

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        self._rest += data
        if len(self._rest) >= BLOCK:
            whole = len(self._rest) - len(self._rest) % BLOCK
            view = memoryview(self._rest)
            self._blocks.extend(zlib.compress(view[start : start + BLOCK], 1) for start in range(0, whole, BLOCK))
            view.release()
            del self._rest[:whole]

    def finish(self) -> PackedBytes:
        """The bytes fed, packed (the packer is spent)."""
        if self._rest:
            self._blocks.append(zlib.compress(self._rest, 1))
        packed = PackedBytes(b"")
        packed._blocks, packed._size = self._blocks, self.size
        return packed


def packed_if_long(data: bytes | bytearray | PackedBytes) -> bytes | bytearray | PackedBytes:
    """`data` packed when it is `PACK_FROM` bytes or more (and not packed or growing already), else itself."""
    if isinstance(data, bytes) and len(data) >= PACK_FROM:
        return PackedBytes(data)
    return data
