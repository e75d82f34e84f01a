"""The rows an `IdIndex` had appended since its sorted index was built, found by id.

Kept apart from `idindex` only for size: an open-addressing table over an
array of rows, which `IdIndex` alone uses. Pure: no I/O.
"""

from __future__ import annotations

from array import array

__all__ = ["Tail"]


class Tail:
    """Rows appended since the index was built, found by id: open addressing over an array of rows.

    A dict of integer ids costs about 110 bytes an entry (half a million rows
    appended during a launch: 55 MB); this costs 8 to 16 bytes.
    """

    __slots__ = ("_count", "_more", "_slots")

    def __init__(self) -> None:
        self._slots = array("q")  # a row, or -1; the size a power of two, at most half full
        self._count = 0
        # A row -> the next appended row with its id, for ids appended again (few):
        # `rows` follows them instead of scanning every appended row.
        self._more: dict[int, int] = {}

    def __len__(self) -> int:
        return self._count

    def find(self, digest: int, ids: array[int]) -> int:
        """The first appended row whose id is this integer; -1 when none."""
        slots = self._slots
        if not slots:
            return -1
        mask = len(slots) - 1
        pos = digest & mask  # ids are SHA-256 bits: any bits spread evenly
        while (row := slots[pos]) >= 0:
            if ids[row] == digest:
                return row
            pos = (pos + 1) & mask
        return -1

    def rows(self, digest: int, ids: array[int]) -> list[int]:
        """Every appended row whose id is this integer, in order."""
        row = self.find(digest, ids)
        found = []
        while row >= 0:
            found.append(row)
            row = self._more.get(row, -1)
        return found

    def add(self, digest: int, row: int, ids: array[int]) -> None:
        """Note an appended row (the table keeps the first row of an id, `_more` the later ones), rows in increasing order."""
        if 2 * (self._count + 1) > len(self._slots):
            # Filled whole before it replaces the old: a look-up in another thread meets one table or the other.
            slots = array("q", [-1]) * max(64, 4 * len(self._slots))
            for r in self._slots:
                if r >= 0:
                    _put(slots, ids[r], r, ids)
            self._slots = slots
        first = _put(self._slots, digest, row, ids)
        if first < 0:
            self._count += 1
            return
        more = self._more
        while (later := more.get(first, -1)) >= 0:
            first = later
        more[first] = row


def _put(slots: array[int], digest: int, row: int, ids: array[int]) -> int:
    """Put a row in an open-addressing table; -1 when put, else the row with its id that is there already."""
    mask = len(slots) - 1
    pos = digest & mask
    while (other := slots[pos]) >= 0:
        if ids[other] == digest:
            return other
        pos = (pos + 1) & mask
    slots[pos] = row
    return -1
