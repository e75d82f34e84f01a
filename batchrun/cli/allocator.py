"""The C allocator's setting for a batchrun process: big arrays in mappings of their own (glibc).

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
"""

from __future__ import annotations

import sys

__all__ = ["MMAP_THRESHOLD", "fix_mmap_threshold"]

# glibc's own starting value: blocks this big or bigger get a mapping each.
MMAP_THRESHOLD = 128 * 1024
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
