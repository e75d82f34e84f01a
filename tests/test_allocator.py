"""The CLI fixes glibc's mmap threshold, so growing arrays get mappings of their own (`cli.allocator`)."""

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
    from batchrun.cli.allocator import fix_mmap_threshold

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


def test_the_cli_collects_cycles_less_often_and_gives_the_collector_back_as_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gc

    import batchrun.cli.app as app
    from batchrun.cli.allocator import YOUNG_THRESHOLD

    seen: list[tuple[int, int, int]] = []
    real = app._main
    monkeypatch.setattr(app, "_main", lambda argv: seen.append(gc.get_threshold()) or real(argv))
    before = gc.get_threshold()
    assert app.main(["status", str(tmp_path / "none.runfile")]) == 2
    assert seen == [(max(before[0], YOUNG_THRESHOLD), *before[1:])] and seen[0] != before
    assert gc.get_threshold() == before


def test_a_launch_freezes_its_loaded_heap_before_the_jobs_and_the_cli_unfreezes_it_after(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gc

    import batchrun.cli.app as app
    import batchrun.cli.launch as cli_launch

    frozen: list[int] = []
    real = cli_launch.freeze_heap
    monkeypatch.setattr(cli_launch, "freeze_heap", lambda: real() or frozen.append(gc.get_freeze_count()))
    runfile = tmp_path / "exp.runfile"
    runfile.write_text("true 1\ntrue 2\n")
    monkeypatch.chdir(tmp_path)
    assert gc.get_freeze_count() == 0
    assert app.main(["launch", str(runfile), "-q"]) == 0
    assert len(frozen) == 1 and frozen[0] > 1000  # the modules, the runfile, the records: all left out of collections
    assert gc.get_freeze_count() == 0
    assert app.main(["launch", str(runfile), "-q"]) == 0  # nothing to run: nothing frozen
    assert len(frozen) == 1
