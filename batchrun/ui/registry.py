"""The runs directories under the dashboard's folder, and a line about each for the overview.

`Registry.scan` walks the folder again (`results.targets.find_runs_dirs`) at
most every `_RESCAN` seconds, so a launch started after the server shows up.
`summary` reads a runs directory's state as `batchrun status` does
(`status.view.load_status`, without the launch's lock) when its records or
its launch changed since the last look: counts by state, the launch holding
it (pid, since when) and the last time a job started or ended.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from batchrun.results.reportdata import long_runfile
from batchrun.results.targets import find_runs_dirs
from batchrun.status.compact import read_compact
from batchrun.status.view import RunsStatus, load_status
from batchrun.store.journal import JOURNAL_NAME
from batchrun.store.rundir import launch_holder
from batchrun.ui.watch import SweepWatch, launch_since

__all__ = ["Registry"]

# How often the folder is walked again for new runs directories, at most.
_RESCAN = 2.0


class Registry:
    """Every runs directory under `root`, by sweep id."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._watches: dict[str, SweepWatch] = {}
        self._order: list[str] = []
        self._scanned = -_RESCAN
        self._summaries: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def scan(self, force: bool = False) -> list[SweepWatch]:
        """The runs directories, walking the folder again when the last walk is old."""
        now = time.monotonic()
        if force or now - self._scanned >= _RESCAN:
            found = find_runs_dirs(self.root)
            with self._lock:
                order = []
                for path in found:
                    watch = SweepWatch(path)
                    self._watches.setdefault(watch.sid, watch)
                    order.append(watch.sid)
                self._order = order
                self._scanned = now
        with self._lock:
            return [self._watches[sid] for sid in self._order]

    def known(self) -> list[SweepWatch]:
        """The runs directories of the last walk (walks none)."""
        with self._lock:
            return [self._watches[sid] for sid in self._order]

    def get(self, sid: str) -> SweepWatch | None:
        """The sweep with this id, or None (an id the scan never gave)."""
        with self._lock:
            watch = self._watches.get(sid)
        if watch is None:
            self.scan(force=True)
            with self._lock:
                watch = self._watches.get(sid)
        return watch

    def summary(self, watch: SweepWatch) -> dict[str, Any]:
        """One runs directory for the overview: counts, launch, last activity (read again only when it changed)."""
        target = watch.target
        try:
            stat = os.stat(watch.runs_dir / JOURNAL_NAME)
            journal: Any = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            journal = None
        holder = launch_holder(target.runs_dir)
        signature = (journal, _mtime(target.runs_dir.metadata), _mtime(target.runfile), holder)
        cached = self._summaries.get(watch.sid)
        # A running launch's jobs start and end between journal writes only rarely; its counts are read each time.
        if cached is not None and cached[0] == signature and holder is None:
            return cached[1]
        base: dict[str, Any] = {"sid": watch.sid, "title": watch.title, "path": _relative(watch.runs_dir, self.root)}
        summary: dict[str, Any]
        try:
            # A long runfile's jobs are held by column and walked a window at a time (a million would be gigabytes).
            status: Any = read_compact(target, ask_cluster=False, usage=False) if long_runfile(target) else load_status(target, need_launched=False)
        except Exception as err:  # noqa: BLE001 - one unreadable runs directory must not hide the others
            summary = {**base, "error": str(err), "counts": {}, "total": 0, "launch": {"running": False}, "last_activity": None}
        else:
            counts = {state: count for state, count in status.counts().items() if count}
            jobs = status.jobs if isinstance(status, RunsStatus) else (job for window in status.windows() for job in window)
            last = max((t for job in jobs if job.record is not None for t in (job.record.start, job.record.end) if t is not None), default=None)
            pid = status.launch_pid if status.launch_running else None
            summary = {
                **base,
                "counts": counts,
                "total": len(status.jobs) if isinstance(status, RunsStatus) else len(status),
                "launch": {"running": status.launch_running, "pid": pid, "since": launch_since(pid) if pid else None},
                "last_activity": last,
            }
        self._summaries[watch.sid] = (signature, summary)
        return summary


def _mtime(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
