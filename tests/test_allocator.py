"""The CLI fixes glibc's mmap threshold, so growing arrays get mappings of their own (`_memory`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# In a fresh interpreter: free a 4 MiB block (glibc then raises its threshold
# past it), then take 1 MiB and say whether it came as a mapping of its own.
_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from batchrun._memory import fix_mmap_threshold

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    if sys.argv[1] == "fixed":
        assert fix_mmap_threshold()
    libc.free(libc.malloc(4 << 20))
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(1 << 20)
    print("mapped" if libc.mallinfo2().hblkhd - before >= 1 << 20 else "heap")
    libc.free(block)
    """
)


def _where(mode: str) -> str:
    return subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout.strip()


def test_after_a_big_free_glibc_moves_big_blocks_into_its_heap_unless_the_threshold_is_fixed() -> None:
    assert _where("default") == "heap"
    assert _where("fixed") == "mapped"


def test_the_cli_fixes_the_threshold_as_it_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import batchrun.cli.app as app

    calls: list[int] = []
    monkeypatch.setattr(app, "fix_mmap_threshold", lambda: bool(calls.append(1)) or True)
    assert app.main(["status", str(tmp_path / "none.runfile")]) == 2
    assert calls == [1]
