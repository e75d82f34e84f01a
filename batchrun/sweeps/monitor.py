"""Hyperband as metrics arrive: a thread that reads the running jobs' metrics files and stops the worse runs.

Every `INTERVAL` seconds the monitor reads what each running job's metrics
file gained since the last look (`MetricsTail`: only new bytes, so a long
run's file costs nothing to watch), and when any run logged a new value of
the metric it asks `HyperbandStopper.runs_to_stop` which running runs fell
below their band's threshold. Those the launch stops through its per-job
stop (SIGTERM, --grace, SIGKILL of the group) with the state `stopped`:
finished, not failed. Every run of the runfile counts towards the
thresholds, also those that ended before this launch; only running runs
are judged.

The monitor decides nothing itself and prints nothing.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from batchrun.metrics.file import METRICS_NAME, Skipped, open_metrics
from batchrun.sweeps.hyperband import HyperbandStopper
from batchrun.sweeps.objective import is_number

__all__ = ["INTERVAL", "HyperbandMonitor", "MetricsTail"]

# How often the metrics files are looked at: values are judged within this
# time of being logged.
INTERVAL = 0.25


class MetricsTail:
    """One metric's valid history values in one job's metrics file, read incrementally."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        # Paths that hold no regular file, or cannot be read: counted, never waited on.
        self.skipped = Skipped()
        self.values: list[float] = []
        self._offset = 0
        self._partial = b""
        self._inode: int | None = None

    def poll(self) -> bool:
        """Read what the file gained; True if that added values of the metric.

        A file replaced or cut shorter (a job run again) is read afresh. A
        last line without its newline waits for the rest of it.
        """
        # Never blocking, regular files only: a FIFO or a directory at the path is skipped (`metrics.file`).
        opened = open_metrics(self.path, self.skipped)
        if opened is None:
            return False
        fd, st = opened
        try:
            if st.st_ino != self._inode or st.st_size < self._offset:
                self._inode, self._offset, self._partial, self.values = st.st_ino, 0, b"", []
            if st.st_size == self._offset:
                return False
            data = os.pread(fd, st.st_size - self._offset, self._offset)
        except OSError:
            return False
        finally:
            os.close(fd)
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        before = len(self.values)
        for line in lines:
            value = _value(line, self.name)
            if value is not None:
                self.values.append(value)
        return len(self.values) > before


def _value(line: bytes, name: str) -> float | None:
    """The metric's value in one history line (W&B's filter_invalid), or None."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None  # half a line a killed job left, garbage, or nesting deeper than the parser goes
    if not isinstance(row, dict) or "_summary" in row:
        return None
    value = row.get(name)
    if value is None and "." in name:
        # Nested objects are metrics named with dots, as `metrics.file` flattens them.
        value = row
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and is_number(value) else None


class HyperbandMonitor:
    """Watches a launch's metrics files on a thread and stops runs hyperband says to stop."""

    def __init__(self, stopper: HyperbandStopper, launch: Any, interval: float = INTERVAL) -> None:
        self.stopper = stopper
        self.launch = launch
        self.interval = interval
        self.logs = Path(launch.runs_dir.logs)
        self.tails: dict[str, MetricsTail] = {}
        self.stopped: set[str] = set()  # asked to stop by this monitor
        self._settled: set[str] = set()  # ended, and read after they ended
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batchrun-hyperband", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.check()
            except Exception as error:  # noqa: BLE001 - a bad look must not stop the launch's jobs
                self.errors.append(error)

    def check(self) -> set[str]:
        """One look at the metrics files; the runs asked to stop by it.

        Runs are judged from a view of what runs taken after the files were
        read, not before: a run that ended meanwhile (its last values read
        in this very look) is not stopped. One that ends between this view
        and its stop's note keeps its own end (`launch.settle`).
        """
        launch = self.launch
        with launch.control.lock:
            records = launch.journal.records
            jobs = [(job.job_id, records.get(job.job_id)) for job in launch.runfile.jobs]
            before = set(launch.runner.running)
        changed = False
        for job_id, rec in jobs:
            if job_id in self._settled:
                continue
            tail = self.tails.get(job_id)
            if tail is None:
                tail = self.tails[job_id] = MetricsTail(self.logs / job_id / METRICS_NAME, self.stopper.metric)
            changed = tail.poll() or changed
            if rec is not None and rec.finished and job_id not in before:
                self._settled.add(job_id)
        if not changed:
            return set()
        histories = {job_id: tail.values for job_id, tail in self.tails.items() if tail.values}
        with launch.control.lock:
            running = set(launch.runner.running) - self.stopped
        to_stop = self.stopper.runs_to_stop(histories, running)
        if to_stop:
            self.stopped.update(launch.stop_jobs(sorted(to_stop), _STOPPED))
        return to_stop


# The journal's state for a run hyperband stopped (finished, not failed).
_STOPPED = "stopped"
