"""The dashboard's answers, as JSON-ready dicts: overview, curves, groups, importance, one run, its logs, actions.

Each function is plain blocking Python, run by the server in a worker
thread. A job is always named by its id and looked up among the sweep's own
jobs (`SweepWatch.log_dir`), and a log by one of two fixed names: no text
from a request ever becomes a path.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

from batchrun.errors import BatchrunError
from batchrun.launch.control import request_kill, request_stop
from batchrun.metrics.file import RunMetrics
from batchrun.results.history import HistoryReader
from batchrun.results.importance import parameter_importance
from batchrun.results.plots import curve, group_document, history_axes
from batchrun.status.lookup import job_entry
from batchrun.store.metadata import entry_of_line
from batchrun.ui.registry import Registry
from batchrun.ui.watch import SweepWatch

__all__ = ["LOG_NAMES", "Api"]

# The logs a run page shows, by the name a request gives.
LOG_NAMES = {"out": "out.log", "err": "err.log"}
# A log's first look is its last bytes; each later look takes at most this many more.
_TAIL_BYTES = 64 * 1024
_MORE_BYTES = 256 * 1024
# Curves a request may ask for at once.
MAX_CURVES = 200
# What a job's metadata.json entry may say about the resources it used, and how the run page names them.
RESOURCES = {"max_rss_kb": "peak memory (kB)", "user_cpu_s": "user CPU (s)", "sys_cpu_s": "system CPU (s)", "max_gpu_mem_mb": "peak GPU memory (MB)"}


class ApiError(Exception):
    """A request the dashboard cannot answer: `status` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """Everything the pages ask for, over one registry of runs directories."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.histories = HistoryReader()
        self._importance: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def sweep(self, sid: str) -> SweepWatch:
        watch = self.registry.get(sid)
        if watch is None:
            raise ApiError(404, "no such runs directory")
        return watch

    def overview(self) -> dict[str, Any]:
        watches = self.registry.scan()
        return {"root": str(self.registry.root), "sweeps": [self.registry.summary(watch) for watch in watches]}

    def curves(self, watch: SweepWatch, job_ids: list[str], metric: str) -> dict[str, Any]:
        """History curves of `metric` for these jobs (those that have one), with their axes."""
        curves = {}
        for job_id in job_ids[:MAX_CURVES]:
            metrics = self._metrics(watch, job_id)
            series = metrics.series.get(metric) if metrics is not None else None
            if series is not None and series.count > 1:
                curves[job_id] = curve(series)
        return history_axes(curves)

    def _metrics(self, watch: SweepWatch, job_id: str) -> RunMetrics | None:
        log_dir = watch.log_dir(job_id)
        return self.histories.metrics(log_dir) if log_dir is not None else None

    def groups(self, watch: SweepWatch, over: str, metric: str) -> dict[str, Any]:
        """Repeats collapsed over `over`, as `batchrun results --over`, with mean curves."""
        state = watch.state
        if state is None:
            raise ApiError(503, "not read yet")
        swept = [p["name"] for p in state.params if p["kind"] != "constant"]
        if over not in swept:
            return {"error": f"{over!r} is not a parameter that varies"}
        goal = state.header["goal"] if metric == state.header["metric"] else "min"

        def series_of(ids: list[str]) -> dict[str, Any]:
            found = {}
            for job_id in ids:
                metrics = self._metrics(watch, job_id)
                if metrics is not None and metric in metrics.series:
                    found[job_id] = metrics.series[metric]
            return found

        return group_document(watch.rows_as_dicts(), [over], swept, metric, goal, series_of)

    def importance(self, watch: SweepWatch, metric: str) -> dict[str, Any]:
        """Parameter importance for `metric`, computed again only when more runs have ended."""
        state = watch.state
        if state is None:
            raise ApiError(503, "not read yet")
        goal = state.header["goal"] if metric == state.header["metric"] else "min"
        state_at = state.columns.index("state")
        ended = sum(1 for row in state.rows.values() if row[state_at] in ("succeeded", "failed", "timeout", "killed", "stopped"))
        key = (watch.sid, metric, goal, ended)
        with self._lock:
            found = self._importance.get(key)
        if found is None:
            found = parameter_importance(state.columns, list(state.rows.values()), state.params, metric, goal)
            with self._lock:
                self._importance[key] = found
        return found

    def run(self, watch: SweepWatch, job_id: str) -> dict[str, Any]:
        """One run: its row, metadata.json entry, resources, every metric's aggregates and curve."""
        results = watch.results
        row = watch.row(job_id)
        if row is None:
            raise ApiError(404, "no such job in this runs directory")
        if results is not None:
            run = next((r for r in results.runs if r.job.job_id == job_id), None)
            if run is None:
                raise ApiError(404, "no such job in this runs directory")
            line, state, command, parameters = run.job.line, run.job.category, run.job.command, run.parameters
            entry = job_entry(results.status, run.job)
        else:
            # A sample of a long runfile: the row the page has, and the job's metadata.json entry, found alone.
            state_now = watch.state
            names = [p["name"] for p in state_now.params] if state_now is not None else []
            line, state, command, parameters = row["line"], row["state"], row["command"], {name: row.get(name) for name in names}
            entry = _entry_in(watch.target.runs_dir.metadata, job_id)
        metrics = self._metrics(watch, job_id) or RunMetrics()
        summary = []
        curves = {}
        for name in metrics.names():
            series = metrics.series.get(name)
            summary.append({
                "name": name,
                "value": _finite(metrics.value(name)),
                "min": _finite(series.min) if series is not None and series.count else None,
                "max": _finite(series.max) if series is not None and series.count else None,
                "count": series.count if series is not None else 0,
            })
            if series is not None and series.count > 1:
                curves[name] = curve(series)
        return {
            "sweep": watch.sid,
            "title": watch.title,
            "job_id": job_id,
            "line": line,
            "state": state,
            "command": command,
            "parameters": {name: _plain(value) for name, value in parameters.items()},
            "metrics": summary,
            "curves": curves,
            "record": {key: _plain(entry.get(key)) for key in ("status", "exit_codes", "attempts", "start", "end", "runtime", "host", "slot", "log_dir") if key in entry},
            "resources": {label: entry[key] for key, label in RESOURCES.items() if isinstance(entry.get(key), (int, float))},
            "launch": watch.state.header["launch"] if watch.state is not None else None,
        }

    def log(self, watch: SweepWatch, job_id: str, name: str, offset: int) -> dict[str, Any]:
        """Bytes of a job's out.log or err.log from `offset` (its last bytes for a negative one)."""
        log_dir = watch.log_dir(job_id)
        if log_dir is None or name not in LOG_NAMES:
            raise ApiError(404, "no such log")
        path = os.path.join(log_dir, LOG_NAMES[name])
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = max(0, size - _TAIL_BYTES) if offset < 0 or offset > size else offset
                f.seek(start)
                data = f.read(min(size - start, _MORE_BYTES))
        except FileNotFoundError:
            return {"offset": 0, "size": 0, "text": "", "missing": True}
        except OSError as err:
            raise ApiError(500, f"cannot read the log: {err.strerror}") from err
        data = data[: _whole_utf8(data)]
        return {"offset": start + len(data), "size": size, "text": data.decode("utf-8", "replace"), "skipped": start > 0 and offset < 0}

    def kill(self, watch: SweepWatch, job_id: str) -> dict[str, Any]:
        """Ask the running launch to kill one job, as `batchrun kill` does."""
        if watch.log_dir(job_id) is None:
            raise ApiError(404, "no such job in this runs directory")
        try:
            answer = request_kill(watch.target.runs_dir, watch.title, [job_id])
        except BatchrunError as err:
            raise ApiError(409, str(err)) from err
        return {"pid": answer.pid, "killing": answer.killing, "not_running": answer.not_running}

    def stop(self, watch: SweepWatch, now: bool) -> dict[str, Any]:
        """Ask the running launch to stop, as `batchrun stop [--now]` does."""
        try:
            answer = request_stop(watch.target.runs_dir, watch.title, now=now)
        except BatchrunError as err:
            raise ApiError(409, str(err)) from err
        return {"pid": answer.pid, "now": now}


def _entry_in(metadata: Path, job_id: str) -> dict[str, Any]:
    """One job's metadata.json entry, found by reading the file a line at a time (nothing else of it held); {} when it has none."""
    key = f'  "{job_id}": '.encode()
    try:
        with open(metadata, "rb") as f:
            for line in f:
                if line.startswith(key):
                    found = entry_of_line(line)
                    return found[1] if found is not None else {}
    except OSError:
        pass
    return {}


def _whole_utf8(data: bytes) -> int:
    """How many bytes of `data` end on a whole UTF-8 character (a read may stop inside one)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)
