"""Job ids by row, kept as 64-bit integers, found again by bisecting a sorted copy: not a dict of strings.

A job id is 16 lower-case hex digits (the first 8 bytes of its command's
SHA-256), so it fits one unsigned 64-bit integer: 8 bytes a row in an
`array`, where a dict from id strings to rows costs about 150 bytes a key.
Look-ups bisect a sorted array of `(id's high bits | row)` entries, built on
first use in C (`sorted` of a `map`, no per-row Python); rows appended after
it was built are found in a small dict until there are as many as it holds,
when it is built again (twice the size each time: O(n log n) in all).

An id that is not 16 lower-case hex digits (a caller's own, in tests or a
hand-written journal) is kept as text by row, with 0 in the array.

The runfile's job table (`jobtable.JobTable`) and the store's record table
(`batchrun.store.recordtable`) both find rows through one of these. Pure:
no I/O.
"""

from __future__ import annotations

import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import compress, islice, repeat
from math import fmod
from operator import eq, floordiv, gt
from typing import Any, Protocol

from batchrun.runfile import idsort
from batchrun.runfile.idtail import Tail

__all__ = ["IdIndex", "digest_of", "groups_of", "has_repeats", "ids_from_digests", "row_or_append", "short_prefix", "twin_of", "unsorted_twin"]

# Shortest id prefix `short_prefix` ever answers: as many digits as `batchrun status` shows.
_SHORT_MIN = 8


def digest_of(job_id: str) -> int | None:
    """A 16-hex-digit id as its integer; None for any other string."""
    if len(job_id) != 16:
        return None
    try:
        digest = int(job_id, 16)
    except ValueError:
        return None
    return digest if f"{digest:016x}" == job_id else None


def ids_from_digests(digests: bytes, stride: int = 1) -> array[int]:
    """The ids of digests laid end to end, each `8 * stride` bytes: their first 8 bytes as big-endian integers (C passes)."""
    words = array("Q")
    words.frombytes(digests)
    ids = words[::stride] if stride != 1 else words
    if sys.byteorder == "little":
        ids.byteswap()
    return ids


class _Ids(Protocol):
    def row_of(self, job_id: str) -> int: ...
    def append(self, job_id: str) -> int: ...


def row_or_append(ids: _Ids, job_id: str) -> tuple[int, bool]:
    """The first row with this id, else a new row made for it, and whether it is new (`IdIndex`'s; `IdPrefix`'s fallback)."""
    row = ids.row_of(job_id)
    return (row, False) if row >= 0 else (ids.append(job_id), True)


class IdIndex:
    """Ids in row order, with a look-up from id to row."""

    __slots__ = ("_bits", "_guard", "_ids", "_index", "_near_cache", "_odd", "_shared", "_shift", "_sorted", "_tail")

    def __init__(self, ids: array[int] | None = None) -> None:
        self._ids: array[int] = ids if ids is not None else array("Q")
        # Rows whose id is not 16 hex digits, by row.
        self._odd: dict[int, str] = {}
        # The sorted index, built on first use (see `_build`), and the rows
        # appended since, by digest (the first row of each).
        self._index: array[float] | None = None
        self._bits = 0  # low bits of an index entry: its row
        self._shift = 64  # an entry's high part is the id shifted right by this
        self._tail = Tail()
        self._near_cache: list[int] | None = None
        # What a look-up reads, published whole: a launch appends while other threads look up (and may build).
        self._sorted: tuple[array[float], int, int, Tail] | None = None
        self._guard = threading.Lock()  # no row appended during a build is left out of both index and tail
        self._shared = False  # `_ids` may be another index's too (`twin`): copied before it changes

    # -- reading ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def digests(self) -> array[int]:
        """The ids as integers, in row order (0 for a row with an odd id); do not change it."""
        return self._ids

    def text(self, row: int) -> str:
        """The id of a row, as text."""
        if self._odd:
            odd = self._odd.get(row)
            if odd is not None:
                return odd
        return f"{self._ids[row]:016x}"

    def texts(self, start: int = 0, stop: int | None = None) -> Iterator[str]:
        """The ids of rows [start, stop), as text."""
        odd = self._odd
        for row, digest in enumerate(islice(self._ids, start, stop), start):
            yield (odd.get(row) if odd else None) or f"{digest:016x}"

    def has_odd(self) -> bool:
        return bool(self._odd)

    def row_of(self, job_id: str) -> int:
        """The first row with this id; -1 when none has it."""
        if self._odd:
            for row, odd in self._odd.items():
                if odd == job_id:
                    return row
        digest = digest_of(job_id)
        return -1 if digest is None else self.row_of_digest(digest)

    def row_of_digest(self, digest: int) -> int:
        """The first row (not an odd id's) whose id is this integer; -1 when none."""
        index, bits, shift, tail = self._state()
        high = digest >> shift
        ids, odd = self._ids, self._odd
        pos = bisect_left(index, float(high << bits))
        while pos < len(index):
            packed = int(index[pos])
            if packed >> bits != high:
                break
            row = packed & ((1 << bits) - 1)
            if ids[row] == digest and row not in odd:
                return row
            pos += 1
        return tail.find(digest, ids)

    def rows_of(self, job_id: str) -> list[int]:
        """Every row with this id, in order (one, unless ids collide or repeat)."""
        found = [row for row, odd in self._odd.items() if odd == job_id]
        digest = digest_of(job_id)
        if digest is not None:
            found.extend(row for row in self.rows_of_digest(digest) if row not in self._odd)
        return sorted(found)

    def rows_of_digest(self, digest: int) -> list[int]:
        """Every row whose id is this integer (odd ids' rows hold 0)."""
        index, bits, shift, tail = self._state()
        high = digest >> shift
        ids = self._ids
        found = []
        pos = bisect_left(index, float(high << bits))
        while pos < len(index):
            packed = int(index[pos])
            if packed >> bits != high:
                break
            if ids[packed & ((1 << bits) - 1)] == digest:
                found.append(packed & ((1 << bits) - 1))
            pos += 1
        found.extend(tail.rows(digest, ids))
        return sorted(found)

    def _near(self) -> tuple[array[float], list[int]]:
        """The sorted index, and the positions p where entries p and p + 1 share an id's first 32 bits (or the
        whole high part, when shorter): one C pass, kept until the index changes."""
        index = self._current()
        if self._near_cache is None:
            high_bits = 64 - self._shift
            drop = self._bits + max(0, high_bits - 32)
            near: list[int] = []
            # A block of entries at a time (and the next one's first): whole, the keys were 8 MB a million.
            # Division by a power of two and floor are exact on these floats (integers below 2**53).
            for a in range(0, len(index) - 1, 1 << 16):
                keys = array("d", map(floordiv, index[a : a + (1 << 16) + 1], repeat(float(1 << drop))))
                near.extend(compress(range(a, a + len(keys) - 1), map(eq, keys, islice(keys, 1, None))))
            self._near_cache = near
        return index, self._near_cache

    # -- changing -----------------------------------------------------------

    def append(self, job_id: str) -> int:
        """Add a row with this id; its row number."""
        digest = digest_of(job_id)
        row = len(self._ids)
        if digest is None:
            self._odd[row] = job_id
            digest = 0
        self.append_digest(digest)
        return row

    row_or_append = row_or_append

    def append_digest(self, digest: int) -> int:
        with self._guard:
            row = len(self._ids)
            self._own_ids().append(digest)
            if self._index is not None:
                if len(self._tail) >= 1024 + len(self._index):
                    self._index = self._sorted = None  # built again at the next look-up: twice the size each time
                elif row not in self._odd:
                    self._tail.add(digest, row, self._ids)
        return row

    def extend(self, other: IdIndex) -> None:
        """Add the rows of `other` (odd ids too) after these: a few to the tail; more (an early edit's relaunch parses half a million lines
        again) in C, the sorted index dropped (sorted once when next asked: a tail slot a row cost more, 16 MB at half a million)."""
        if self._index is None or len(other) > _short_tail(len(self._ids) + len(other)):
            self._odd.update((len(self._ids) + row, text) for row, text in other._odd.items())
            self.extend_digests(other._ids)  # an odd id's row holds 0, as `append` leaves it
            return
        for row, digest in enumerate(other._ids):
            if row in other._odd:
                self.append(other._odd[row])
            else:
                self.append_digest(digest)

    def extend_digests(self, digests: Iterable[int]) -> None:
        """Add rows with these integer ids (no odd ids); the index is built again when next asked."""
        self._own_ids().extend(digests)
        self._index = self._sorted = None

    def _own_ids(self) -> array[int]:
        """The ids array, copied first if a twin may share it (the twin keeps the old one)."""
        if self._shared:
            self._ids, self._shared = array("Q", self._ids), False
        return self._ids

    def take(self, rows: Iterable[int]) -> IdIndex:
        """A new index of these rows' ids, in this order."""
        rows = list(rows)
        ids = self._ids
        taken = IdIndex(array("Q", map(ids.__getitem__, rows)))
        if self._odd:
            taken._odd = {new: self._odd[old] for new, old in enumerate(rows) if old in self._odd}
        return taken

    def clear(self) -> None:
        self._ids, self._odd, self._index, self._sorted, self._tail, self._near_cache = array("Q"), {}, None, None, Tail(), None

    def dump(self, sort: bool = True) -> tuple[dict[str, array[Any]], dict[str, Any]]:
        """The arrays and the rest (JSON-able) that `restore` takes back: the ids and the sorted index
        (`sort=False`: only one built already, with a short tail; `restore` sorts when first asked)."""
        sections: dict[str, array[Any]] = {"ids": self._ids}
        index, bits, shift = self._index, self._bits, self._shift
        if sort and (index is None or len(self._tail) > _short_tail(len(self._ids))):
            index, bits, shift, _ = self._build()  # sorted once now, so that the next launch need not; a short tail is put back by `restore`
        if index is not None and len(self._tail) <= _short_tail(len(self._ids)):
            sections["index"] = index
        return sections, {"odd": {str(row): text for row, text in self._odd.items()}, "layout": [bits, shift]}

    @classmethod
    def restore(cls, sections: dict[str, array[Any]], side: dict[str, Any]) -> IdIndex:
        """An index from what `dump` gave (read back from disk: the caller checked the bytes)."""
        ids = sections["ids"]
        keys = cls(ids)
        keys._odd = {int(row): str(text) for row, text in side["odd"].items()}
        index = sections.get("index")
        if index is not None and len(index) <= len(ids):
            bits, shift = (int(value) for value in side["layout"])
            keys._adopt(index, bits, shift)
        return keys

    def truncate(self, count: int) -> None:
        """Keep the first `count` rows only; the sorted index keeps its entries of those (no sort: a few dropped found by bisection, many filtered out in C)."""
        if count >= len(self._ids):
            return
        index = self._index
        kept = None if index is None else idsort.without_rows(index, self._ids, range(count, len(index)), self._bits, self._shift)
        if self._shared:  # a copy of the kept rows only, not of all before the cut
            self._ids, self._shared = self._ids[:count], False
        else:
            del self._ids[count:]
        self._odd = {row: text for row, text in self._odd.items() if row < count}
        if index is not None:
            if kept is None:
                # An entry's row is its low bits.
                rows = map(fmod, index, repeat(float(1 << self._bits)))
                kept = array("d", compress(index, map(gt, repeat(float(count)), rows)))
            self._adopt(kept, self._bits, self._shift)

    def _adopt(self, index: array[float], bits: int, shift: int) -> None:
        """Use a sorted index of the first len(index) rows; the rows after it go to the tail."""
        tail = Tail()
        ids = self._ids
        for row in range(len(index), len(ids)):
            if row not in self._odd:
                tail.add(ids[row], row, ids)
        self._index, self._bits, self._shift, self._tail, self._near_cache = index, bits, shift, tail, None
        self._sorted = (index, bits, shift, tail)

    def _current(self) -> array[float]:
        return self._build()[0] if self._index is None or len(self._tail) else self._index

    def _state(self) -> tuple[array[float], int, int, Tail]:
        """The sorted index, its layout and its tail, as one consistent whole (built first when there is none)."""
        return self._sorted or self._build()

    def _build(self) -> tuple[array[float], int, int, Tail]:
        """Sort the rows by id, in C.

        Each entry packs an id's high part and its row into one integer below
        2**53, held as a float: Python sorts floats several times faster than
        64-bit integers (a million rows: 0.2 s against 0.6 s), and below 2**53
        a float is exact. Ids that share a high part are told apart by their
        full ids, in the rows.
        """
        with self._guard:
            n = len(self._ids)
            bits, shift = idsort.layout(n)
            index = idsort.sorted_entries(self._ids, bits, shift)
            tail = Tail()
            self._index, self._bits, self._shift, self._tail, self._near_cache = index, bits, shift, tail, None
            self._sorted = state = (index, bits, shift, tail)
        return state


def _short_tail(rows: int) -> int:
    """The most rows a sorted index of `rows` keeps in its tail when written (`dump`) or extended by (`extend`)."""
    return max(1024, rows // 16)


def unsorted_twin(keys: IdIndex) -> IdIndex:
    """A twin of the ids (`twin_of`) without their sorted index: sorted when first asked, for ids seldom looked up."""
    with keys._guard:
        twin = IdIndex(keys._ids)
        twin._odd = dict(keys._odd)
        twin._shared = keys._shared = True
    return twin


def groups_of(keys: IdIndex) -> list[list[int]]:
    """Rows whose ids share an index entry's high part (where any repeated id is), in groups; [] when none do."""
    index, near = keys._near()
    bits = keys._bits
    # Neighbours with equal high parts are among those sharing the first 32 bits.
    same = [pos for pos in near if int(index[pos]) >> bits == int(index[pos + 1]) >> bits]
    return idsort.runs(index, same, bits)


def has_repeats(keys: IdIndex) -> bool:
    """Whether two rows share an id (different commands whose SHA-256 start alike, or appended twice)."""
    ids, odd = keys._ids, keys._odd
    if len(set(odd.values())) < len(odd):
        return True
    return any(len({ids[row] for row in group if row not in odd}) < len([row for row in group if row not in odd]) for group in groups_of(keys))


def twin_of(keys: IdIndex, other: IdIndex) -> IdIndex:
    """`other`'s twin when `keys` holds the same ids in the same rows, else `keys`: one copy of them held, not two.

    A runs directory's job table, its record table and metadata.json's
    entries often hold the same ids in the same order (every job ran, in
    runfile order): 16 bytes a job each, ids and sorted index (48 MB at a
    million jobs for the three). A twin shares the other's arrays; either
    copies the ids before it changes them (`_own_ids`; the sorted index is
    never changed in place), so neither sees the other's changes.
    """
    if keys is other:
        return keys
    if keys._odd or other._odd or len(keys._ids) != len(other._ids):
        if keys._ids is other._ids:  # handed the same array (a snapshot's equal sections) but no twin: its own copy
            keys._ids = array("Q", keys._ids)
        return keys
    index, bits, shift, _ = other._state()  # a sorted index of other's first rows (built outside the guard)
    with other._guard:
        if keys._ids != other._ids:
            return keys
        twin = IdIndex(other._ids)
        twin._adopt(index, bits, shift)  # rows after the index (other's tail) go to the twin's own tail
        twin._shared = other._shared = True
    return twin


def short_prefix(keys: IdIndex) -> int:
    """The shortest id prefix, from 8 hex digits up, that tells every row's id of `keys` apart (16 when two are equal)."""
    if keys._odd:
        texts = list(keys.texts())
        length = _SHORT_MIN
        while length < 16 and len({text[:length] for text in texts}) < len(texts):
            length += 1
        return length
    index, near = keys._near()
    if not near:
        return _SHORT_MIN  # no two ids share their first 32 bits
    # Ids that share a prefix of 32 bits or more sit in one run of
    # neighbours in sorted order: compare those whole.
    ids = keys._ids
    length = _SHORT_MIN
    for run in idsort.runs(index, near, keys._bits):
        for i, a in enumerate(run):
            for b in run[i + 1 :]:
                length = max(length, (64 - (ids[a] ^ ids[b]).bit_length()) // 4 + 1)
    return min(16, length)
