"""One run's metrics with their histories, read on demand and kept while its file is unchanged.

`read_results` gives a table (aggregates, through the launch's cache) or,
for a report, every history at once; a live page wants the histories of a
few runs at a time (the 20 best, one run's page) among thousands. This reads
just those files (`metrics.file.read_metrics_file`, the one reader) and
keeps each until the file's size or mtime changes, so a running job's curve
is read again as it grows and a finished one never.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from batchrun.metrics.file import METRICS_NAME, RunMetrics, Skipped, read_metrics_file

__all__ = ["HistoryReader"]

# Runs whose metrics are kept: a page's curves, groups and run pages, many times over.
_KEPT = 4096


class HistoryReader:
    """Metrics with histories of single runs by log directory; safe to share between threads."""

    def __init__(self, kept: int = _KEPT) -> None:
        self._kept = kept
        self._cache: OrderedDict[str, tuple[tuple[int, int], RunMetrics]] = OrderedDict()
        self._lock = threading.Lock()

    def metrics(self, log_dir: str) -> RunMetrics | None:
        """The run's metrics with histories, or None when it has no metrics file (yet)."""
        path = os.path.join(log_dir, METRICS_NAME)
        try:
            stat = os.stat(path)
        except OSError:
            return None
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            found = self._cache.get(path)
            if found is not None and found[0] == key:
                self._cache.move_to_end(path)
                return found[1]
        metrics = read_metrics_file(path, Skipped(), keep_history=True)
        if metrics is None:
            return None
        with self._lock:
            self._cache[path] = (key, metrics)
            self._cache.move_to_end(path)
            while len(self._cache) > self._kept:
                self._cache.popitem(last=False)
        return metrics
