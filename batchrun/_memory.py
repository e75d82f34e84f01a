"""Big arrays in their own memory maps: memory that follows what a command holds at a million lines.

A million-line runfile is held in arrays of a few MB each (ids, positions,
record columns), grown by `realloc` as jobs are read and run. glibc puts a
block that big in a memory map of its own, unless its threshold has risen:
it rises to the size of each mapped block freed, so that after a few, such
arrays live in the heap, where each regrowth moves one and leaves a hole
that is never given back. At a million jobs those holes were 10-20 MB of a
launch's peak (a parse and a million records: 102 against 85 MB). A fixed
threshold keeps big blocks mapped, regrown in place (`mremap`) and unmapped
when freed.

`big_arrays_mapped` is called once a command knows it reads a long runfile
(`runfile.file`, `PACK_FROM` bytes or more): below that the setting would
change nothing worth the `ctypes` import. It does nothing where the C
library is not glibc.
"""

from __future__ import annotations

import sys

__all__ = ["big_arrays_mapped"]

# mallopt's M_MMAP_THRESHOLD, and the threshold: glibc's own starting value, never raised.
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 128 * 1024
_done = False


def big_arrays_mapped() -> bool:
    """Keep blocks of 128 kB or more in memory maps of their own from now on (once; glibc only): whether they are."""
    global _done
    if not _done and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            # musl and others have no such setting (nor gnu_get_libc_version).
            _done = hasattr(libc, "gnu_get_libc_version") and libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
        except (OSError, AttributeError):
            pass
    return _done
