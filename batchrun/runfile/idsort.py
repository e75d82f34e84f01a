"""An `IdIndex`'s sorted index: its entries made and sorted, and rows dropped from it.

Each entry packs an id's high part and its row into one integer below 2**53,
held as a float (`IdIndex._build` says why); `layout` gives how many bits
each takes for an index of n rows.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import compress, repeat
from operator import lshift, or_, rshift

__all__ = ["layout", "runs", "sorted_entries", "without_rows"]


def sorted_entries(ids: array[int], bits: int, shift: int) -> array[float]:
    """The index entries of these ids, sorted: a part at a time, by the ids' first bits.

    `sorted` holds a list of float objects, 32 bytes an entry: 32 MB at a
    million rows, at the peak of whatever command builds an index. Entries
    whose ids differ in their first bits sort apart, so sorting each part
    (the ids starting with 000, 001, ...) and laying the parts end to end is
    the whole sort, holding one part at a time. Each part costs two passes
    over every row, in C; SHA-256 ids spread evenly over the parts.
    """
    n = len(ids)
    part_bits = min(_PART_BITS_MAX, (n >> _PART_ROWS_LOG).bit_length(), 64 - shift)
    if part_bits <= 0:
        packed = map(or_, map(lshift, map(rshift, ids, repeat(shift)), repeat(bits)), range(n))
        return array("d", sorted(map(float, packed)))
    entries = array("d", map(float, map(or_, map(lshift, map(rshift, ids, repeat(shift)), repeat(bits)), range(n))))
    firsts = bytes(map(rshift, ids, repeat(64 - part_bits)))
    index = array("d")
    for part in range(1 << part_bits):
        index.fromlist(sorted(compress(entries, firsts.translate(_PICK[part]))))
    return index


def without_rows(index: array[float], ids: array[int], rows: range, bits: int, shift: int) -> array[float] | None:
    """The sorted index without the entries of these rows, each found by bisection; None when they are many (or one is not found).

    A relaunch whose runfile's last lines changed drops a few rows of a long
    index: finding them costs a few lookups, where a filter of every entry
    (the caller's fallback) costs a pass over all of them.
    """
    if len(rows) * 64 > len(index):
        return None
    positions = []
    for row in rows:
        entry = float(((ids[row] >> shift) << bits) | row)
        position = bisect_left(index, entry)
        if position == len(index) or index[position] != entry:
            return None
        positions.append(position)
    kept = array("d")
    start = 0
    for position in sorted(positions):
        kept.extend(index[start:position])
        start = position + 1
    kept.extend(index[start:])
    return kept


def runs(index: array[float], positions: list[int], bits: int) -> list[list[int]]:
    """The rows of runs of neighbouring index entries (`bits` low bits: the row): position p joins entry p + 1 to entry p's run."""
    mask = (1 << bits) - 1
    runs: list[list[int]] = []
    last = -2
    for pos in positions:
        if pos == last + 1:
            runs[-1].append(int(index[pos + 1]) & mask)
        else:
            runs.append([int(index[pos]) & mask, int(index[pos + 1]) & mask])
        last = pos
    return runs


# `sorted_entries` sorts parts of about 2**17 rows (4 MB of floats at a time), in at most 2**4 parts.
_PART_ROWS_LOG = 17
_PART_BITS_MAX = 4
# A `bytes.translate` table per first-bits value: that byte to 1, every other to 0.
_PICK = [bytes(int(byte == part) for byte in range(256)) for part in range(1 << _PART_BITS_MAX)]


def layout(n: int) -> tuple[int, int]:
    """(row bits, id shift) of an index of n rows: row and id's high part fill 53 bits."""
    bits = max(1, (n - 1).bit_length())
    return bits, 64 - max(0, 53 - bits)
