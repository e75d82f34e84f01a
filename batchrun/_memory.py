"""The process-wide memory settings of a batchrun process: glibc's allocator, and Python's cycle collector.

A million-line runfile is held in arrays of a few MB each (ids, positions,
record columns), grown by `realloc` as jobs are read and run. glibc puts a
block that big in a memory map of its own, unless its threshold has risen:
it rises to the size of each mapped block freed, so that after a few, such
arrays live in the heap, where each regrowth moves one and leaves a hole
that is never given back. At a million jobs those holes were 10-20 MB of a
launch's peak (a parse and a million records: 102 against 85 MB); a
50,000-job launch peaked at 93 MB with glibc's default and 82 MB with the
threshold fixed. A fixed threshold keeps big blocks mapped, regrown in
place (`mremap`) and unmapped when freed: the CLI fixes it as it starts
(`fix_mmap_threshold`).

glibc also gives each new thread a heap of its own (an arena, up to eight
per core), and a launch runs a thread per job slot: at `-j 8` their heaps'
free holes were 15-20 MB of a million-line launch's peak (163 MB against
146 at `-j 4`). Python threads allocate under the GIL, so they gain nothing
from heaps of their own: two are shared by all (`M_ARENA_MAX`), as many
Python services set with `MALLOC_ARENA_MAX=2`.

`compact_heap` makes both settings once a command knows it reads a long
runfile (`runfile.file`, `PACK_FROM` bytes or more), a `dodo.py` under plain
doit too. Neither does anything where the C library is not glibc; a cap the
user set in `MALLOC_ARENA_MAX` is left as it is.

Python's cycle collector, too, is process-wide. A launch makes and drops a
few hundred objects a job, nearly all freed by their reference counts; at
CPython's threshold (700 new containers) it collected 314 times in a
5,000-job launch (and 61 times in the imports before it), each time walking
what was young, and twice the whole heap. A higher threshold, from before
the imports (`collect_less`, `__main__`), and a heap frozen once loaded
(`freeze_heap`: what is there then is left out of later collections, not
freed early) cut that from 65-70 ms to 23-25 ms of a 3 s launch. The CLI
undoes both when it returns (`quiet_collector`): a program that calls
`cli.app.main` gets its collector back as it was.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["MMAP_THRESHOLD", "YOUNG_THRESHOLD", "collect_less", "compact_heap", "fix_mmap_threshold", "freeze_heap", "quiet_collector"]

# New containers between two collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 5000

# mallopt's M_MMAP_THRESHOLD (<malloc.h>), and the threshold: glibc's own starting value, never raised.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
# mallopt's M_ARENA_MAX, and the heaps the threads share.
_M_ARENA_MAX = -8
_ARENAS = 2
_done = False


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Keep blocks of `size` bytes or more in memory maps of their own, from now on; whether set (False off glibc)."""
    libc = _glibc()
    # 1 on success.
    return libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, size) == 1


def compact_heap() -> bool:
    """Keep blocks of 128 kB or more in memory maps of their own and threads to two heaps, from now on (once; glibc only): whether set."""
    global _done
    if not _done and fix_mmap_threshold():
        _done = True
        libc = _glibc()
        if libc is not None and "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(_M_ARENA_MAX, _ARENAS)
    return _done


@functools.cache
def _glibc() -> Any:
    """The C library, when it is glibc (musl and others have no such settings, nor `gnu_get_libc_version`); looked up once."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only here: about 1.5 ms, for a command that sets these

    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc


def collect_less() -> tuple[int, int, int]:
    """Collect the youngest generation after `YOUNG_THRESHOLD` new containers (or more, if set so); the thresholds before."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_THRESHOLD), *before[1:])
    return before


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """`collect_less` while the CLI runs; the thresholds and any `freeze_heap` undone after."""
    frozen = gc.get_freeze_count()
    before = collect_less()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not frozen:  # a caller's own frozen heap stays frozen
            gc.unfreeze()


def freeze_heap() -> None:
    """Leave every object there now out of later collections: a launch calls it once loaded, before its jobs run."""
    gc.freeze()
