"""The memory settings of a batchrun process: big arrays in mappings of their own (glibc); a cycle collector that runs less often.

batchrun keeps a runfile's jobs and their records in arrays that grow by
appending (`runfile.jobtable`, `store.recordtable`): megabytes at 100,000
jobs. glibc serves a block above its mmap threshold with a mapping of its
own, which a realloc grows in place and a free returns whole, but it raises
that threshold (up to 32 MiB) each time such a block is freed; from then on
the growing arrays are moved within the heap, and each move leaves a hole
the heap cannot hand back. A fixed threshold turns that adjustment off.
Measured: a 50,000-job launch peaked at 93 MB with glibc's default and
82 MB with the threshold fixed at 128 KiB (`benchmarks/RESULTS.md`).

Process-wide, so the CLI sets it, once, as it starts; elsewhere (musl,
macOS) nothing is changed.

Python's cycle collector, too, is process-wide. A launch makes and drops a
few hundred objects a job, nearly all freed by their reference counts; at
CPython's threshold (700 new containers) it collected 314 times in a
5,000-job launch, each time walking what was young, and twice the whole
heap (modules, the runfile, the records). A higher threshold and a heap
frozen once loaded (`gc.freeze`: what is there then is left out of later
collections, not freed early) cut that from 65-70 ms to 23-25 ms of a
3 s launch. Both are undone when the CLI returns (`quiet_collector`), so a
program that calls `cli.app.main` gets its collector back as it was.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator

__all__ = ["MMAP_THRESHOLD", "YOUNG_THRESHOLD", "fix_mmap_threshold", "freeze_heap", "quiet_collector"]

# glibc's own starting value: blocks this big or bigger get a mapping each.
MMAP_THRESHOLD = 128 * 1024
# New containers between two collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 5000
# mallopt's parameter number for the threshold (<malloc.h>).
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `size` bytes; whether it was set (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # 1 on success; musl's stub answers 0.
    return bool(mallopt(_M_MMAP_THRESHOLD, size))


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Collect cycles less often while the CLI runs (`YOUNG_THRESHOLD`); the thresholds and any `freeze_heap` undone after."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.set_threshold(max(before[0], YOUNG_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not frozen:  # a caller's own frozen heap stays frozen
            gc.unfreeze()


def freeze_heap() -> None:
    """Leave every object there now out of later collections: a launch calls it once loaded, before its jobs run."""
    gc.freeze()
