"""Unit tests of the stopper: nothing of a job's process group is left when it returns, and it returns in bounded time.

The jobs sleep far longer than any test may take (pytest-timeout): a stop that
waited for a job's natural end would fail the test instead of passing slowly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kill_all, live_pids_with_env, wait_for

from batchrun.executors import ExecutorOptions
from batchrun.executors.local.executor import LocalExecutor
from batchrun.launch.stopper import GroupStopper, end_group, stop_job

JOB_ID = "0123456789abcdef"


class _LateKill(LocalExecutor):
    """A SIGKILL that has not reached the group yet the first time it is sent."""

    dropped = False

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        if sig == signal.SIGKILL and not self.dropped:
            self.dropped = True
            return True
        return super().signal(job_id, ref, sig)


@pytest.fixture()
def marker() -> Iterator[str]:
    name = f"BRSTOP{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


def _start(executor: LocalExecutor, tmp_path: Path, marker: str, command: str) -> str:
    log_dir = tmp_path / "log"
    env = dict(os.environ, BATCHRUN_JOB_ID=JOB_ID, BATCHRUN_LOG_DIR=str(log_dir), BATCHRUN_ATTEMPT="1", **{marker: "1"})
    return executor.start(JOB_ID, command, str(log_dir), env)


@pytest.mark.parametrize("executor_class", [LocalExecutor, _LateKill])
def test_stop_job_returns_only_when_the_group_is_gone(tmp_path: Path, marker: str, executor_class: type[LocalExecutor]) -> None:
    """The wrapper dies on SIGTERM; its child ignores SIGTERM and outlives it."""
    executor = executor_class(ExecutorOptions())
    ready = tmp_path / "ready"
    ref = _start(executor, tmp_path, marker, f"trap '' TERM; (touch {ready}; sleep 1000) & wait")
    wait_for(ready.exists, what="the child to start")
    stop_job(executor, JOB_ID, ref, grace=0.3)
    assert live_pids_with_env(marker) == []


def test_the_group_stopper_waits_for_watched_jobs_and_stops_unwatched_ones(tmp_path: Path, marker: str) -> None:
    executor = LocalExecutor(ExecutorOptions())
    ready = tmp_path / "ready"
    ref = _start(executor, tmp_path, marker, f"touch {ready}; sleep 1000")
    wait_for(ready.exists, what="the job to start")
    watched: list[tuple[str, str | None, bool]] = [("f" * 16, "starting", True)]
    targets = [(JOB_ID, ref, False), *watched]
    noted: list[tuple[str, str, bool]] = []

    def first_signal(job_id: str, ref: str | None, sig: int, state: str) -> bool:
        noted.append((job_id, state, executor.alive(job_id, ref)))
        return executor.signal(job_id, ref, sig)

    stopper = GroupStopper(executor, 5.0, lambda: list(targets), threading.Event(), first_signal)
    stopper.start()
    wait_for(lambda: live_pids_with_env(marker) == [], what="the unwatched job to be stopped")
    time.sleep(0.2)
    assert stopper._thread.is_alive(), "returned while a watched job was still starting"
    targets.remove(watched[0])
    stopper.join()
    assert executor.wait(ref) == -signal.SIGTERM
    assert noted[0] == (JOB_ID, "interrupted", True), "the stop was not noted before its first signal"


@pytest.mark.parametrize("executor_class", [LocalExecutor, _LateKill])
def test_end_group_leaves_nothing_of_the_group_and_leaves_the_wrapper_to_its_waiter(tmp_path: Path, marker: str, executor_class: type[LocalExecutor]) -> None:
    """`batchrun kill`: the job's own thread waits for its wrapper; end_group only ends the group."""
    executor = executor_class(ExecutorOptions())
    ready = tmp_path / "ready"
    ref = _start(executor, tmp_path, marker, f"trap '' TERM; (trap '' TERM; touch {ready}; sleep 1000) & wait")
    wait_for(ready.exists, what="the child to start")
    status: list[int | None] = []
    waiter = threading.Thread(target=lambda: status.append(executor.wait(ref)))
    waiter.start()
    end_group(executor, JOB_ID, ref, grace=0.3)
    assert live_pids_with_env(marker) == []
    waiter.join(30)
    assert len(status) == 1 and status[0] in (-signal.SIGTERM, -signal.SIGKILL)


def test_a_job_ending_as_its_stop_begins_finds_the_stop_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's thread calls `JobEnds.wait` between the stop's record and its thread's start."""
    import batchrun.launch.stopper as stopper

    lock = threading.RLock()
    running: dict[str, str | None] = {}  # the job has just ended: nothing to signal
    ends = stopper.JobEnds(None, 0.0, lock, running, lambda: False, lambda job_id, ref, sig, state: True)  # type: ignore[arg-type]
    seen: list[object] = []
    start = threading.Thread.start

    waiter = threading.Thread(target=lambda: seen.append(_wait_or_error(ends, "j")))

    def late_start(self: threading.Thread) -> None:
        start(waiter)
        waiter.join(0.3)  # the job's thread runs first, wherever it can
        start(self)
        running.pop("j")  # and its wrapper is gone: the stop has nothing to signal

    running["j"] = "123"
    monkeypatch.setattr(stopper.threading.Thread, "start", late_start)
    assert ends.start(["j", "j"], "stopped") == ["j"]
    monkeypatch.undo()
    waiter.join(10)
    assert seen == ["stopped"]


def _wait_or_error(ends: object, job_id: str) -> object:
    try:
        return ends.wait(job_id)  # type: ignore[attr-defined]
    except RuntimeError as error:
        return error


class _Unkillable:
    """An executor whose job never ends and whose group never goes (a process in uninterruptible sleep)."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        self.signals.append(sig)
        return True

    def alive(self, job_id: str, ref: str | None) -> bool:
        return True

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        assert timeout is not None, "an unbounded wait for a job being stopped"
        time.sleep(min(timeout, 0.01))
        return None


def test_every_wait_for_a_stopped_job_is_bounded_and_sigkill_is_sent_again_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    import batchrun.launch.stopper as stopper

    monkeypatch.setattr(stopper, "KILL_WAIT", 0.3)
    executor = _Unkillable()
    assert stop_job(executor, JOB_ID, "123", grace=0.05) == -signal.SIGKILL  # type: ignore[arg-type]
    assert executor.signals[0] == signal.SIGTERM and executor.signals.count(signal.SIGKILL) > 1
    # The job's own wait: unbounded while the launch runs, KILL_WAIT once a stop-now was pressed.
    stop_now = threading.Event()
    waited: list[int | None] = []
    waiter = threading.Thread(target=lambda: waited.append(stopper.wait_job(executor, "123", stop_now.is_set)))  # type: ignore[arg-type]
    waiter.start()
    waiter.join(1.5)
    assert waiter.is_alive(), "the wait ended while nothing stopped the job"
    stop_now.set()
    waiter.join(5)
    assert waited == [-signal.SIGKILL]
    assert stopper.wait_job(executor, "123", lambda: False, deadline=time.monotonic() + 0.1) is None  # type: ignore[arg-type]
