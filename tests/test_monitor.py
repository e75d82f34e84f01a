"""The hyperband monitor: incremental metrics reading, and which runs it asks the launch to stop."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

from batchrun.runfile.file import Job
from batchrun.store.records import JobRecord
from batchrun.sweeps.hyperband import HyperbandStopper, parse_early_terminate
from batchrun.sweeps.monitor import HyperbandMonitor, MetricsTail
from batchrun.sweeps.objective import Goal


def _fail(message: str, line: int | None = None) -> NoReturn:
    raise AssertionError(message)


def _line(**row: Any) -> str:
    return json.dumps(row) + "\n"


def test_a_tail_reads_only_new_bytes_and_waits_for_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path, "loss")
    assert tail.poll() is False and tail.values == []  # no file yet
    path.write_text(_line(loss=3, _step=0) + _line(acc=1) + '{"loss": 2')
    assert tail.poll() is True and tail.values == [3.0]
    with path.open("a") as f:
        f.write(', "_step": 1}\n' + _line(loss=float("nan")) + _line(loss=True) + _line(_summary={"loss": 0.1}) + "not json\n")
    assert tail.poll() is True and tail.values == [3.0, 2.0]  # invalid values, summaries and junk skipped
    assert tail.poll() is False
    with path.open("a") as f:
        f.write(_line(loss=1.5))
    assert tail.poll() is True and tail.values == [3.0, 2.0, 1.5]


def test_a_tail_reads_nested_metrics_by_their_dotted_names(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(val={"loss": 2}) + _line(**{"val.loss": 1}) + _line(val=3))
    tail = MetricsTail(path, "val.loss")
    assert tail.poll() is True and tail.values == [2.0, 1.0]


def test_a_tail_rereads_a_file_that_was_replaced(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(loss=5) + _line(loss=4))
    tail = MetricsTail(path, "loss")
    tail.poll()
    replacement = tmp_path / "new"
    replacement.write_text(_line(loss=9))
    replacement.replace(path)
    assert tail.poll() is True and tail.values == [9.0]


class FakeLaunch:
    """What the monitor reads of a launch: records, the runfile's jobs, the running jobs, and the stop it calls."""

    def __init__(self, logs: Path, ids: list[str]) -> None:
        self.runs_dir = SimpleNamespace(logs=logs)
        self.control = SimpleNamespace(lock=threading.RLock())
        self.runfile = SimpleNamespace(jobs=[Job(f"cmd {i}", i, n) for n, i in enumerate(ids, 1)])
        self.journal = SimpleNamespace(records={})
        self.runner = SimpleNamespace(running={})
        self.stops: list[tuple[str, str]] = []

    @property
    def running(self) -> set[str]:
        return set(self.runner.running)

    @running.setter
    def running(self, ids: set[str]) -> None:
        self.runner.running = dict.fromkeys(ids, "123")

    def stop_jobs(self, job_ids: list[str], state: str) -> list[str]:
        self.stops += [(job_id, state) for job_id in job_ids]
        return job_ids

    def log(self, job_id: str, *values: float) -> None:
        path = self.runs_dir.logs / job_id / "metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            for value in values:
                f.write(_line(loss=value))


def _monitor(tmp_path: Path, ids: list[str], raw: dict[str, Any] | None = None) -> tuple[HyperbandMonitor, FakeLaunch]:
    launch = FakeLaunch(tmp_path, ids)
    config = parse_early_terminate(raw or {"type": "hyperband", "min_iter": 2, "eta": 2}, None, _fail)
    return HyperbandMonitor(HyperbandStopper(config, "loss", Goal.MINIMIZE), launch), launch


def test_the_monitor_stops_the_worse_running_run_once_with_state_stopped(tmp_path: Path) -> None:
    monitor, launch = _monitor(tmp_path, ["a", "b", "c"])
    done = JobRecord("a")
    done.state = "succeeded"
    launch.journal.records["a"] = done
    launch.running = {"b", "c"}
    launch.log("a", 5, 1)  # ended before: counts towards the band-2 threshold
    launch.log("b", 5)
    launch.log("c", 5)
    assert monitor.check() == set()  # nobody running reached band 2 yet
    launch.log("b", 0.5)  # better than a's 1: goes on
    launch.log("c", 4)  # worse than the threshold (1 of [0.5, 1, 4] at int(3/2))
    assert monitor.check() == {"c"}
    assert launch.stops == [("c", "stopped")]
    launch.log("b", 0.4)
    monitor.check()
    assert launch.stops == [("c", "stopped")], "a run is asked to stop once; the better one never"


def test_a_run_that_is_not_running_is_never_stopped(tmp_path: Path) -> None:
    monitor, launch = _monitor(tmp_path, ["a", "b"])
    launch.log("a", 9, 9)
    launch.log("b", 1, 1)
    assert monitor.check() == set() and launch.stops == []


def test_the_thread_checks_as_metrics_arrive(tmp_path: Path) -> None:
    monitor, launch = _monitor(tmp_path, ["a", "b", "c"])
    launch.running = {"a", "b", "c"}
    monitor.interval = 0.01
    monitor.start()
    try:
        launch.log("a", 1, 1)
        launch.log("c", 1, 1)
        launch.log("b", 1, 7)
        deadline = threading.Event()
        for _ in range(500):
            if launch.stops:
                break
            deadline.wait(0.01)
    finally:
        monitor.stop()
    assert launch.stops == [("b", "stopped")] and monitor.errors == []
