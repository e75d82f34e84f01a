"""Damaged and missing files of a runs directory, through the real CLI.

Each test damages one file batchrun reads back, exactly (truncated, emptied,
non-UTF-8, garbage, deleted), then runs `python -m batchrun` on it: the
outcome is a clean recovery (said in one line when records were rebuilt) or
one `batchrun: error:` line with exit 2, never a traceback, never a job run
twice or forgotten.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_batchrun

MakeRunfile = Callable[..., Path]


def _no_crash(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def _first_launch(make_runfile: MakeRunfile, workdir: Path, n: int = 3) -> tuple[Path, Path]:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}" for i in range(n)])
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return side, workdir / "runs" / "exp"


_STAMP_DAMAGES: list[object] = [
    pytest.param(lambda good: good.replace(b" ", b"\xff", 1), id="non-utf8"),
    pytest.param(lambda good: good[:7], id="truncated"),
    pytest.param(lambda good: b"", id="empty"),
    pytest.param(lambda good: bytes(range(256)) * 64, id="binary-garbage"),
]


@pytest.mark.parametrize("damage", _STAMP_DAMAGES)
def test_a_damaged_stamp_only_means_the_view_is_rebuilt(make_runfile: MakeRunfile, workdir: Path, damage: Callable[[bytes], bytes]) -> None:
    side, runs = _first_launch(make_runfile, workdir)
    stamp = runs / ".metadata.stamp"
    stamp.write_bytes(damage(stamp.read_bytes()))
    meta_before = (runs / "metadata.json").read_bytes()
    for command in (["launch", "exp.runfile"], ["status", "exp.runfile"], ["plan", "exp.runfile"], ["failed", "exp.runfile"]):
        proc = run_batchrun(*command, cwd=workdir)
        _no_crash(proc)
        assert proc.returncode == 0, (command, proc.stderr)
        assert proc.stderr == "", (command, proc.stderr)
    assert side.read_text().count("\n") == 3  # nothing ran again
    assert (runs / "metadata.json").read_bytes() == meta_before
    # The relaunch wrote a good stamp back.
    assert stamp.read_bytes().startswith(b"1 ")
