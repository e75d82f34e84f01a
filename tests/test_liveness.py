"""The one liveness probe: pids, their start times, and flocks probed or read from /proc/locks."""

from __future__ import annotations

import builtins
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.liveness import MAX_PID, LockTable, lock_held, pid_alive, start_time

# A child that takes an exclusive flock on argv[1], says so, and waits.
_HOLDER = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    path = tmp_path / "locked"
    path.write_text("")
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    yield path, child
    child.kill()
    child.wait()
    child.stdout.close()


def test_pid_alive_for_the_living_the_dead_and_what_is_no_pid() -> None:
    assert pid_alive(os.getpid())
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not pid_alive(dead.pid)
    # 0 and negative numbers are process groups to os.kill; past pid_max is no pid at all.
    assert not pid_alive(0) and not pid_alive(-1) and not pid_alive(MAX_PID + 1) and not pid_alive(2**64)


def test_start_time_tells_a_process_from_a_later_one_with_its_pid() -> None:
    mine = start_time(os.getpid())
    assert mine.isdigit() and start_time(os.getpid()) == mine
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert start_time(dead.pid) == ""


def test_lock_held_probes_the_flock(held: tuple[Path, subprocess.Popen[str]], tmp_path: Path) -> None:
    path, child = held
    assert lock_held(path)
    free = tmp_path / "free"
    free.write_text("")
    assert not lock_held(free) and not lock_held(tmp_path / "missing")
    child.kill()
    child.wait()
    assert not lock_held(path)


def test_the_lock_table_reads_holders_without_taking_the_lock(held: tuple[Path, subprocess.Popen[str]], tmp_path: Path) -> None:
    path, child = held
    table = LockTable()
    assert table.readable
    assert table.held(path) is True and table.holder(path) == child.pid
    free = tmp_path / "free"
    free.write_text("")
    assert table.held(free) is False and table.holder(free) is None
    assert table.held(tmp_path / "missing") is False
    # Reading the table took nothing: the lock is still the child's alone.
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_without_proc_locks_the_table_says_it_cannot_tell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_open = builtins.open

    def no_proc_locks(file: object, *args: object, **kwargs: object) -> object:
        if file == "/proc/locks":
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", no_proc_locks)
    table = LockTable()
    assert not table.readable
    assert table.held(tmp_path) is None and table.holder(tmp_path) is None
