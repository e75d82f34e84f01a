"""A sweep as the dashboard keeps it: its document, a version per change, and what changed since any version.

`SweepWatch.refresh` reads the runs directory again (`read_results`, the
same reading as `batchrun results`, without the launch's lock) when
something may have changed: its journal, metadata.json, runfile or gridspec,
the launch holding it, or a running job's metrics file. Each refresh that
changes anything is a new version; every row remembers the version it last
changed in, so `changes(since)` is the rows changed after `since` (only what
changed travels), or the whole document when the columns or axes changed.

Threads: `refresh` runs in a worker thread, one at a time per sweep;
`changes` and the readers run on the server's thread. A refresh builds its
new state apart and swaps it in under the lock.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.liveness import start_time
from batchrun.metrics.file import METRICS_NAME
from batchrun.results.plots import rows_document, sweep_document
from batchrun.results.reportdata import long_runfile, read_report_data
from batchrun.results.table import Results, read_results, without_gc
from batchrun.results.targets import sweep_target, target_spec, target_title
from batchrun.store.journal import JOURNAL_NAME
from batchrun.store.rundir import launch_holder
from batchrun.store.target import Target

__all__ = ["SweepWatch", "launch_since", "sweep_id"]

# The document's fields that are not rows, sent with every change.
_HEADER = ("title", "counts", "launch", "metric", "goal", "sampled")


def sweep_id(path: Path) -> str:
    """A sweep's id in URLs: a hash of its runs directory's path (never the path itself)."""
    import hashlib

    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def launch_since(pid: int) -> float | None:
    """When a process started, in seconds since the epoch (None if unknown)."""
    ticks = start_time(pid)
    if not ticks:
        return None
    try:
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError):
        return None


@dataclass
class _State:
    """One version of a sweep: its document without rows, the rows by job id, and when each changed."""

    version: int
    structure: int  # the version its columns or axes last changed in
    header: dict[str, Any]
    columns: list[str]
    params: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    rows: dict[str, list[Any]] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)


class SweepWatch:
    """One runs directory, read when it may have changed; its versions of the sweep document."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.sid = sweep_id(runs_dir)
        self.target: Target = sweep_target(runs_dir)
        self.title = target_title(self.target)
        self.results: Results | None = None
        # A long runfile is shown by a sample of its runs (`_sampled_document`): no `results` then.
        self.sampled = False
        self.state: _State | None = None
        self.error: str | None = None
        self.last_refresh = 0.0  # monotonic time the last refresh ended
        self.refresh_seconds = 0.0  # how long it took
        self.watched = 0.0  # monotonic time a page last asked
        self._signature: Any = None
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    # -- reading ------------------------------------------------------------------------------
    def _files_signature(self) -> Any:
        def stat(path: Path | None) -> tuple[int, int] | None:
            if path is None:
                return None
            try:
                st = os.stat(path)
            except OSError:
                return None
            return (st.st_size, st.st_mtime_ns)

        target = self.target
        running: list[Any] = []
        results = self.results
        state = self.state
        if self.sampled:
            # A sample keeps no runs; its counts are of all of them: while one runs, its runtime and metrics change.
            if state is not None and state.header.get("counts", {}).get("running"):
                running.append(time.time())
        elif results is not None:
            for run in results.runs:
                if run.job.state == "running":
                    running.append(stat(Path(run.log_dir) / METRICS_NAME))
                    running.append(time.time())  # its runtime grows: a running job always changes
        holder = launch_holder(target.runs_dir)
        files = (stat(self.runs_dir / JOURNAL_NAME), stat(target.runs_dir.metadata), stat(target.runfile), stat(target.gridspec))
        return (files, holder, running)

    def refresh(self, force: bool = False) -> bool:
        """Read the runs directory again if it may have changed; True when a new version came of it."""
        with self._refreshing:
            started = time.monotonic()
            try:
                return self._refresh(force)
            finally:
                self.last_refresh = time.monotonic()
                self.refresh_seconds = self.last_refresh - started

    def _refresh(self, force: bool) -> bool:
        from batchrun.errors import BatchrunError

        signature = self._files_signature()
        if not force and signature == self._signature and self.state is not None:
            return False
        results = None
        try:
            with without_gc():
                if long_runfile(self.target):
                    doc = self._sampled_document()
                    holder = signature[1]
                else:
                    results = read_results(self.target)
                    doc = sweep_document(results, self.title, target_spec(self.target))
                    holder = results.status.launch_pid if results.status.launch_running else None
        except (BatchrunError, OSError) as err:
            self.error = str(err)
            self._signature = signature
            return False
        self.error = None
        self.sampled = results is None
        doc["launch"] = {"running": holder is not None, "pid": holder, "since": launch_since(holder) if holder else None}
        doc["path"] = str(self.runs_dir)
        changed = self._swap_in(doc)
        self.results = results
        # What was seen before reading: a change made while reading shows in the next look, never hides.
        self._signature = signature
        return changed

    def _sampled_document(self) -> dict[str, Any]:
        """A long runfile's document, read a window at a time: exact counts, the rows of a sample (`results.reportdata`)."""
        data = read_report_data(self.target, usage=False)  # the page shows no usage
        doc = rows_document(self.title, data.counts, data.parameter_names, data.metric_names, (data.metric, data.goal), data.rows, target_spec(self.target))
        doc["sampled"] = {"total": data.total, "shown": len(data.rows), "every": data.stride} if data.stride > 1 else None
        return doc

    def _swap_in(self, doc: dict[str, Any]) -> bool:
        old = self.state
        header = {key: doc.get(key) for key in (*_HEADER, "path") if key in doc}  # "sampled" only in a sample's
        job_at = doc["columns"].index("job_id")
        rows = {row[job_at]: row for row in doc["rows"]}
        if old is None:
            version = 1
            state = _State(version, version, header, doc["columns"], doc["params"], doc["metrics"], rows, dict.fromkeys(rows, version))
            with self._lock:
                self.state = state
            return True
        version = old.version + 1
        structure = old.structure if (doc["columns"], doc["params"], doc["metrics"]) == (old.columns, old.params, old.metrics) else version
        changed = dict(old.changed)
        removed = dict(old.removed)
        differs = structure == version or header != old.header
        for job_id, row in rows.items():
            if old.rows.get(job_id) != row:
                changed[job_id] = version
                removed.pop(job_id, None)
                differs = True
        for job_id in old.rows.keys() - rows.keys():
            removed[job_id] = version
            changed.pop(job_id, None)
            differs = True
        if not differs:
            return False
        state = _State(version, structure, header, doc["columns"], doc["params"], doc["metrics"], rows, changed, removed)
        with self._lock:
            self.state = state
        return True

    # -- what pages ask ------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        state = self.state
        return state.version if state is not None else 0

    def document(self) -> dict[str, Any] | None:
        """The whole document of the current version, or None before the first reading."""
        state = self.state
        if state is None:
            return None
        return {"version": state.version, "full": True, **state.header, "columns": state.columns, "params": state.params,
                "metrics": state.metrics, "rows": list(state.rows.values())}

    def changes(self, since: int) -> dict[str, Any] | None:
        """What changed after version `since`: the rows changed and removed, with the header; the whole document when the columns or axes changed."""
        state = self.state
        if state is None:
            return None
        if since <= 0 or since < state.structure or since > state.version:
            return self.document()
        rows = [state.rows[job_id] for job_id, version in state.changed.items() if version > since]
        removed = [job_id for job_id, version in state.removed.items() if version > since]
        return {"version": state.version, "full": False, **state.header, "params": state.params, "metrics": state.metrics, "rows": rows, "removed": removed}

    def rows_as_dicts(self) -> list[dict[str, Any]]:
        """The current rows as plain dicts (column name -> value)."""
        state = self.state
        if state is None:
            return []
        columns = state.columns
        return [dict(zip(columns, row, strict=True)) for row in state.rows.values()]

    def row(self, job_id: str) -> dict[str, Any] | None:
        """A job's row (column name -> value), for a job id of this sweep's document only."""
        state = self.state
        if state is None or job_id not in state.rows:
            return None
        return dict(zip(state.columns, state.rows[job_id], strict=True))

    def log_dir(self, job_id: str) -> str | None:
        """A job's log directory, for a job id of this sweep only (None for any other text)."""
        state = self.state
        if state is None or job_id not in state.rows:
            return None
        return str(self.target.runs_dir.log_dir(job_id))
