"""glibc's allocator set for a long runfile: memory that follows what a command holds at a million lines.

A million-line runfile is held in arrays of a few MB each (ids, positions,
record columns), grown by `realloc` as jobs are read and run. glibc puts a
block that big in a memory map of its own, unless its threshold has risen:
it rises to the size of each mapped block freed, so that after a few, such
arrays live in the heap, where each regrowth moves one and leaves a hole
that is never given back. At a million jobs those holes were 10-20 MB of a
launch's peak (a parse and a million records: 102 against 85 MB). A fixed
threshold keeps big blocks mapped, regrown in place (`mremap`) and unmapped
when freed.

glibc also gives each new thread a heap of its own (an arena, up to eight
per core), and a launch runs a thread per job slot: at `-j 8` their heaps'
free holes were 15-20 MB of a million-line launch's peak (163 MB against
146 at `-j 4`). Python threads allocate under the GIL, so they gain nothing
from heaps of their own: two are shared by all (`M_ARENA_MAX`), as many
Python services set with `MALLOC_ARENA_MAX=2`.

`compact_heap` is called once a command knows it reads a long runfile
(`runfile.file`, `PACK_FROM` bytes or more): below that the settings would
change nothing worth the `ctypes` import. It does nothing where the C
library is not glibc, and leaves a cap the user set in `MALLOC_ARENA_MAX`.
"""

from __future__ import annotations

import os
import sys

__all__ = ["compact_heap"]

# mallopt's M_MMAP_THRESHOLD, and the threshold: glibc's own starting value, never raised.
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 128 * 1024
# mallopt's M_ARENA_MAX, and the heaps the threads share.
_M_ARENA_MAX = -8
_ARENAS = 2
_done = False


def compact_heap() -> bool:
    """Keep blocks of 128 kB or more in memory maps of their own and threads to two heaps, from now on (once; glibc only): whether set."""
    global _done
    if not _done and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            # musl and others have no such setting (nor gnu_get_libc_version).
            _done = hasattr(libc, "gnu_get_libc_version") and libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
            if _done and "MALLOC_ARENA_MAX" not in os.environ:
                libc.mallopt(_M_ARENA_MAX, _ARENAS)
        except (OSError, AttributeError):
            pass
    return _done
