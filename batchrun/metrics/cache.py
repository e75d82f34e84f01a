"""A cache of each job's metrics aggregates, so `batchrun results` need not parse 100,000 metrics files.

`runs/<stem>/.metrics-cache.v1.jsonl` holds one JSON line per job end: the
job id, the inode, size and mtime (ns) of its `metrics.jsonl` as read, and
what `metrics.file` made of exactly those bytes: `[job_id, ino, size,
mtime_ns, [metric names], [last, min, max, total, count of each], {summary
values}]`, plus `[[reason, first place, count], ...]` when something was
skipped. A flat list, not an object: 100,000 of them parse in a third of
the time. The
launch's runner appends a line as each job ends (`record_job_metrics`), and
`batchrun results`, reading a finished job's file the cache did not cover
(a job that ran before the cache existed, or a file changed since), appends
one too, so only the first read of an old runs directory is slow.

It is only a cache, so it can never give a wrong answer: an entry counts
only while the file's inode, size and mtime are still those it records
(a line appended, a retry's new file, a rewrite all change them), and a
line that is torn (a crash mid-append), garbled or of another format is
ignored; anything not covered is read from the file itself. Lines are
appended with O_APPEND in one write each (batches from `results` too), so
launches and readers may append at once; no fsync, since losing a line only
costs a read. The last valid line of a job wins. The version in the file
name changes whenever `metrics.file` would read the same bytes differently.

Pure: no printing; `results` and `runner` call it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from batchrun.metrics.file import RunMetrics, Series, Skipped, read_metrics_file, read_metrics_snapshot

__all__ = ["CACHE_NAME", "MetricsCache", "record_job_metrics"]

# In the runs directory, beside metadata.json; hidden, as it is no record anyone needs to read.
CACHE_NAME = ".metrics-cache.v1.jsonl"
# Filled entries are appended in writes of about this size: few calls, no huge buffer.
_APPEND_CHUNK = 1 << 20


def record_job_metrics(runs_path: str, job_id: str, metrics_path: str, skipped: Skipped | None = None) -> None:
    """Append the cache line of a job that just ended; never raises (a cache never fails a launch).

    A job without a metrics file costs one failed open. `skipped`, if
    given, counts what was left out (a path that is no regular file).
    """
    try:
        line = _entry_line(job_id, metrics_path, Skipped() if skipped is None else skipped)
        if line is not None:
            _append(f"{runs_path}/{CACHE_NAME}", [line])
    except Exception:  # noqa: BLE001, S110 - any failure only means results read the file later
        pass


class MetricsCache:
    """The cache of one runs directory, as read at one instant, and the entries to add to it."""

    def __init__(self, runs_path: str) -> None:
        self.path = f"{runs_path}/{CACHE_NAME}"
        self.entries = _load(self.path)
        self._new: list[str] = []
        self.hits = 0

    def read(self, job_id: str, metrics_path: str, skipped: Skipped, finished: bool) -> RunMetrics | None:
        """A job's metrics, as `read_metrics_file` gives them, from the cache when it still covers the file.

        `finished`: the job has ended, so a file read now may be cached
        (a running job's file changes until it ends).
        """
        try:
            stat = os.stat(metrics_path)
        except FileNotFoundError:
            return None
        except OSError:
            return read_metrics_file(metrics_path, skipped)  # it says why, as without a cache
        entry = self.entries.get(job_id)
        if entry is not None and entry[1] == stat.st_ino and entry[2] == stat.st_size and entry[3] == stat.st_mtime_ns:
            metrics = _decode(entry, skipped)
            if metrics is not None:
                self.hits += 1
                return metrics
        if not finished:
            return read_metrics_file(metrics_path, skipped)
        local = Skipped()
        snapshot = read_metrics_snapshot(metrics_path, local)
        _merge(skipped, local)
        if snapshot is None:
            return None
        metrics, stat = snapshot
        self._new.append(_encode(job_id, stat, metrics, local))
        return metrics

    def save(self) -> int:
        """Append the entries `read` made; how many. Best effort: a runs directory one cannot write to keeps its cache."""
        new, self._new = self._new, []
        if new:
            try:
                _append(self.path, new)
            except OSError:
                return 0
        return len(new)


def _entry_line(job_id: str, metrics_path: str, skipped: Skipped) -> str | None:
    snapshot = read_metrics_snapshot(metrics_path, skipped)
    if snapshot is None:
        return None
    metrics, stat = snapshot
    return _encode(job_id, stat, metrics, skipped)


def _encode(job_id: str, stat: os.stat_result, metrics: RunMetrics, skipped: Skipped) -> str:
    numbers = [x for s in metrics.series.values() for x in (s.last, s.min, s.max, s.total, s.count)]
    entry: list[Any] = [job_id, stat.st_ino, stat.st_size, stat.st_mtime_ns, list(metrics.series), numbers, metrics.summary]
    if skipped.counts:
        entry.append([[reason, skipped.first[reason], count] for reason, count in skipped.counts.items()])
    # json writes floats exactly (repr) and reads them back the same: a hit equals a read.
    return json.dumps(entry, separators=(",", ":")) + "\n"


def _decode(entry: list[Any], skipped: Skipped) -> RunMetrics | None:
    try:
        metrics = RunMetrics()
        names, numbers, summary = entry[4], entry[5], entry[6]
        if len(numbers) != 5 * len(names) or type(summary) is not dict:
            return None
        series = metrics.series
        for i, name in enumerate(names):
            series[name] = Series(*numbers[5 * i : 5 * i + 5])
        metrics.summary.update(summary)
        reasons = [(str(reason), str(where), int(count)) for reason, where, count in entry[7]] if len(entry) > 7 else []
    except (IndexError, TypeError, ValueError):
        return None  # not a line this version wrote: read the file
    for reason, where, count in reasons:
        skipped.add(reason, where, count)
    return metrics


def _merge(skipped: Skipped, local: Skipped) -> None:
    for reason, count in local.counts.items():
        skipped.add(reason, local.first[reason], count)


def _load(path: str) -> dict[str, list[Any]]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return {}
    end = data.rfind(b"\n") + 1  # an unterminated last line is an append in progress or torn
    if not end:
        return {}
    try:
        # One parse for the whole file; any bad line falls back to line by line.
        objects = json.loads(b"[" + data[: end - 1].replace(b"\n", b",") + b"]")
    except ValueError:
        objects = []
        for line in data[:end].split(b"\n"):
            try:
                objects.append(json.loads(line))
            except ValueError:
                continue
    entries: dict[str, list[Any]] = {}
    for obj in objects:
        if type(obj) is list and len(obj) >= 7 and type(obj[0]) is str:
            entries[obj[0]] = obj
    return entries


def _append(path: str, lines: list[str]) -> None:
    # 0o666: the umask decides, as for any new file.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _APPEND_CHUNK:
                _write_all(fd, "".join(chunk).encode())
                chunk, size = [], 0
        if chunk:
            _write_all(fd, "".join(chunk).encode())
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
