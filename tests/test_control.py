"""Unit tests of batchrun.launch.control: the request channel between stop/kill and the launch."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.errors import UsageError
from batchrun.launch import control
from batchrun.launch.control import ControlPoller, request_kill, request_stop
from batchrun.store.rundir import LaunchLock, RunsDir, acquire_lock, launch_holder


@pytest.fixture()
def runs_dir(tmp_path: Path) -> RunsDir:
    runs = RunsDir(tmp_path / "runs" / "exp")
    runs.create()
    return runs


@pytest.fixture()
def locked(runs_dir: RunsDir) -> Iterator[LaunchLock]:
    lock = acquire_lock(runs_dir)
    yield lock
    lock.release()


class Calls:
    def __init__(self) -> None:
        self.stops: list[bool] = []
        self.kills: list[list[str]] = []

    def on_stop(self, now: bool) -> None:
        self.stops.append(now)

    def on_kill(self, job_ids: list[str]) -> list[str]:
        self.kills.append(job_ids)
        return [job_id for job_id in job_ids if job_id.startswith("run")]


@pytest.fixture()
def poller(runs_dir: RunsDir, locked: LaunchLock) -> Iterator[tuple[ControlPoller, Calls]]:
    calls = Calls()
    poll = ControlPoller(runs_dir, calls.on_stop, calls.on_kill, interval=0.01)
    poll.start()
    yield poll, calls
    poll.stop()


def test_launch_holder_is_the_process_holding_the_lock(runs_dir: RunsDir) -> None:
    assert launch_holder(runs_dir) is None
    lock = acquire_lock(runs_dir)
    assert launch_holder(runs_dir) == os.getpid()
    lock.release()
    assert launch_holder(runs_dir) is None  # the pid is still in the file: the lock decides


def test_without_a_launch_stop_and_kill_fail_with_one_line(runs_dir: RunsDir) -> None:
    expected = f"no launch of exp.runfile is running ({runs_dir.path} is not locked); nothing to "
    with pytest.raises(UsageError) as err:
        request_stop(runs_dir, "exp.runfile")
    assert str(err.value) == expected + "stop"
    with pytest.raises(UsageError) as err:
        request_kill(runs_dir, "exp.runfile", ["abc"])
    assert str(err.value) == expected + "kill"
    assert not (runs_dir.path / control.CONTROL_DIR).exists() or not list((runs_dir.path / control.CONTROL_DIR).iterdir())


def test_stop_and_kill_reach_the_callbacks_and_are_answered(runs_dir: RunsDir, poller: tuple[ControlPoller, Calls]) -> None:
    _poll, calls = poller
    answer = request_stop(runs_dir, "exp.runfile")
    assert answer.pid == os.getpid() and calls.stops == [False]
    answer = request_kill(runs_dir, "exp.runfile", ["run1", "idle2", "run3"])
    assert calls.kills == [["run1", "idle2", "run3"]]
    assert answer.killing == ["run1", "run3"] and answer.not_running == ["idle2"]
    assert list((runs_dir.path / control.CONTROL_DIR).iterdir()) == []  # nothing left behind


def test_requests_for_an_earlier_launch_are_dropped_unread(runs_dir: RunsDir, locked: LaunchLock) -> None:
    folder = runs_dir.path / control.CONTROL_DIR
    folder.mkdir()
    (folder / "1-1.req").write_text(json.dumps({"version": 1, "launch": {"pid": os.getpid(), "start": "0"}, "action": "stop"}))
    (folder / "2-1.req").write_text("{torn")
    half = folder / ".3-1.req.tmp"  # a client killed while writing
    half.write_text('{"version"')
    old = folder / "4-1.ans"  # a client killed while waiting
    old.write_text("{}")
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    calls = Calls()
    poll = ControlPoller(runs_dir, calls.on_stop, calls.on_kill)
    assert poll.poll_once() == 0
    assert calls.stops == [] and calls.kills == []
    assert sorted(p.name for p in folder.iterdir()) == [half.name]  # too young to be called dead
    os.utime(half, (long_ago, long_ago))
    poll.poll_once()
    assert list(folder.iterdir()) == []


def test_a_launch_that_does_not_answer(runs_dir: RunsDir, locked: LaunchLock) -> None:
    with pytest.raises(UsageError) as err:
        request_stop(runs_dir, "exp.runfile", timeout=0.2)
    assert str(err.value).startswith(f"the launch of exp.runfile (pid {os.getpid()}) did not answer within 0.2 s")
    assert list((runs_dir.path / control.CONTROL_DIR).iterdir()) == []


def test_a_launch_that_ends_before_acting(runs_dir: RunsDir, locked: LaunchLock) -> None:
    threading.Timer(0.2, locked.release).start()
    with pytest.raises(UsageError) as err:
        request_kill(runs_dir, "exp.runfile", ["run1"], timeout=30)
    assert str(err.value) == f"the launch of exp.runfile (pid {os.getpid()}) ended before it acted on the request"


def test_a_callback_that_raises_does_not_stop_the_poller(runs_dir: RunsDir, locked: LaunchLock) -> None:
    stops: list[bool] = []

    def on_kill(job_ids: list[str]) -> list[str]:
        raise RuntimeError("boom")

    poll = ControlPoller(runs_dir, stops.append, on_kill, interval=0.01)
    poll.start()
    try:
        with pytest.raises(UsageError) as err:
            request_kill(runs_dir, "exp.runfile", ["x"])
        assert str(err.value) == f"the launch of exp.runfile (pid {os.getpid()}) could not act on the request: RuntimeError: boom"
        request_stop(runs_dir, "exp.runfile")
        assert stops == [False]
    finally:
        poll.stop()
