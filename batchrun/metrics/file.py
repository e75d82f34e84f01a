"""Read one job's metrics: its `metrics.jsonl` (the protocol `batchrun.log` writes) into aggregates and a history.

A metrics file is JSON lines. A history line maps metric names to numbers and
may carry `_step` (a whole number; without it a line's step is one more than
the previous line's, starting at 0). A `{"_summary": {...}}` line records
final values, which override the history's last value. Nested objects are
flattened with dots (`{"train": {"loss": 1}}` is `train.loss`); other keys
starting with `_` are batchrun's and ignored.

Whatever a file holds, reading it never fails: lines that are not JSON
objects (garbage, or objects nested too deep for the JSON parser), values
that are not numbers, NaN and infinities are skipped and counted in a
`Skipped` tally (the CLI prints the counts), and a file over `MAX_BYTES` is
read from its last `MAX_BYTES` only, so one runaway job cannot stall a table
of thousands. Whatever is at the path, reading never blocks: it is opened
non-blocking and anything but a regular file (a FIFO, a directory, a
device) is refused and counted (`open_metrics`), so a FIFO a job made there
stalls no launch, monitor or command. An unterminated last line that does not parse is
a write in progress (or cut by a kill), not an error, and is left out
silently. Histories are thinned to at most `2 * HISTORY_POINTS` evenly spaced
points per metric: the aggregates still see every value.

Pure: no printing, no CLI; `results` builds rows from what this returns.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AGGREGATES",
    "HISTORY_POINTS",
    "MAX_BYTES",
    "METRICS_NAME",
    "NOT_A_FILE",
    "RunMetrics",
    "Series",
    "Skipped",
    "open_metrics",
    "read_metrics_file",
    "read_metrics_snapshot",
]

# How a metric's history becomes one number.
AGGREGATES = ("last", "min", "max", "mean")
# The file, in a job's log directory, its metrics go to (the job's BATCHRUN_METRICS).
METRICS_NAME = "metrics.jsonl"
# Beyond this a file is read from its end: 16 MiB of JSON lines is ~400,000 history points.
MAX_BYTES = 16 * 1024 * 1024
# History points kept per metric and run (between this and twice this): enough for a curve, small in a report.
HISTORY_POINTS = 500
# Whole numbers below this are exact as floats; larger ones go the slow, careful way.
_EXACT = 2**53
# The Skipped reason for a file read from its end ({n}: how many files).
_UNREADABLE = "skipped {n} metrics files that cannot be read"
# The Skipped reason for a metrics path that holds no regular file.
NOT_A_FILE = "skipped {n} metrics paths that are not regular files"
_TAIL_READ = f"read only the last {MAX_BYTES >> 20} MiB of {{n}} metrics files over {MAX_BYTES >> 20} MiB"


class Skipped:
    """What reading left out, by reason (a sentence with `{n}` for the count): a count and the first place it happened."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, reason: str, where: str, count: int = 1) -> None:
        """Count `count` skipped items for `reason`, remembering the first `where`."""
        if reason not in self.counts:
            self.counts[reason] = 0
            self.first[reason] = where
        self.counts[reason] += count

    def lines(self) -> list[str]:
        """One sentence per reason, e.g. `skipped 3 metrics lines that are not JSON objects (first: path:4)`."""
        return [f"{reason.format(n=count)} (first: {self.first[reason]})" for reason, count in self.counts.items()]


@dataclass
class Series:
    """One metric of one run: streaming aggregates over every value, and a thinned history."""

    last: float = math.nan
    min: float = math.inf
    max: float = -math.inf
    total: float = 0.0
    count: int = 0
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    _stride: int = 1

    def add(self, step: int, value: float, keep: bool) -> None:
        """Take one value at `step`; keep it in the history when `keep` and the thinning allows."""
        self.last = value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.total += value
        self.count += 1
        if keep and (self.count - 1) % self._stride == 0:
            self.steps.append(step)
            self.values.append(value)
            if len(self.values) >= 2 * HISTORY_POINTS:
                # Halve, doubling the stride: points stay evenly spaced whatever the length.
                del self.steps[1::2], self.values[1::2]
                self._stride *= 2

    def extend(self, steps: list[int], values: list[float], keep: bool) -> None:
        """Take many values at once (a whole file's): the aggregates by builtins, the history thinned evenly."""
        if not values:
            return
        self.last = values[-1]
        self.min = min(self.min, min(values))
        self.max = max(self.max, max(values))
        self.total += sum(values)
        first = self.count
        self.count += len(values)
        if keep:
            # Keep the points the stride picks, as `add` would have, then halve while too many.
            offset = (-first) % self._stride
            self.steps.extend(steps[offset :: self._stride])
            self.values.extend(values[offset :: self._stride])
            while len(self.values) >= 2 * HISTORY_POINTS:
                del self.steps[1::2], self.values[1::2]
                self._stride *= 2

    def aggregate(self, agg: str) -> float:
        """The history as one number (`last`, `min`, `max` or `mean`)."""
        if agg == "last":
            return self.last
        if agg == "min":
            return self.min
        if agg == "max":
            return self.max
        return self.total / self.count


@dataclass
class RunMetrics:
    """Every metric one run reported: history series and summary values."""

    series: dict[str, Series] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)

    def names(self) -> Iterable[str]:
        """Metric names, history first, in the order they first appeared."""
        yield from self.series
        yield from (name for name in self.summary if name not in self.series)

    def value(self, name: str, agg: str = "last") -> float | None:
        """One number for a metric: the summary's for `last` (it overrides), else the history's aggregate."""
        if agg == "last" and name in self.summary:
            return self.summary[name]
        series = self.series.get(name)
        if series is not None and series.count:
            return series.aggregate(agg)
        return self.summary.get(name)

    def drop(self, name: str) -> None:
        """Forget a metric (its name is taken by a parameter or column)."""
        self.series.pop(name, None)
        self.summary.pop(name, None)


def read_metrics_file(path: str, skipped: Skipped, keep_history: bool = False, into: RunMetrics | None = None) -> RunMetrics | None:
    """Read a metrics file, or None when there is none (or it cannot be read: counted)."""
    opened = open_metrics(path, skipped)
    if opened is None:
        return None
    fd, _ = opened
    try:
        # Unbuffered: one read says whether it is over the limit (it may have grown since the stat).
        data = os.read(fd, MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            data = _tail(fd, os.fstat(fd).st_size, path, skipped)
    except OSError as err:
        skipped.add(_UNREADABLE, f"{path}: {err.strerror}")
        return None
    finally:
        os.close(fd)
    metrics = into if into is not None else RunMetrics()
    if data:
        _parse(data, path, metrics, skipped, keep_history)
    return metrics


def read_metrics_snapshot(path: str, skipped: Skipped) -> tuple[RunMetrics, os.stat_result] | None:
    """Read a metrics file as of one instant: its stat, and the metrics of exactly the bytes that stat counts.

    What `metrics.cache` records: were the file stat()ed after reading, a
    line appended in between would be counted in its size but not in its
    metrics, and the cache would take the stale answer for the current one.
    None (as `read_metrics_file`) when there is no file or it cannot be read.
    """
    opened = open_metrics(path, skipped)
    if opened is None:
        return None
    fd, info = opened
    try:
        size = info.st_size
        if size > MAX_BYTES:
            data = _tail(fd, size, path, skipped)
        else:
            data = os.read(fd, size)
            while len(data) < size and (more := os.read(fd, size - len(data))):
                data += more
            data = data[:size]
    except OSError as err:
        skipped.add(_UNREADABLE, f"{path}: {err.strerror}")
        return None
    finally:
        os.close(fd)
    metrics = RunMetrics()
    if data:
        _parse(data, path, metrics, skipped, False)
    return metrics, info


def open_metrics(path: str | os.PathLike[str], skipped: Skipped) -> tuple[int, os.stat_result] | None:
    """A metrics file opened for reading, never blocking, and its stat; None when there is none, or it cannot be read or is no regular file (counted).

    Opened with O_NONBLOCK: opening a FIFO for reading otherwise waits for
    a writer, forever. Anything but a regular file is refused after the
    open (its fstat, no race with a rename); that one fstat is the
    caller's snapshot of the file's size.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        skipped.add(_UNREADABLE, f"{path}: {err.strerror}")
        return None
    try:
        info = os.fstat(fd)
    except OSError as err:
        os.close(fd)
        skipped.add(_UNREADABLE, f"{path}: {err.strerror}")
        return None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        skipped.add(NOT_A_FILE, f"{path}: {_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}")
        return None
    return fd, info


# What a metrics path that holds no regular file holds, as the warning says it.
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _tail(fd: int, size: int, path: str, skipped: Skipped) -> bytes:
    """The last `MAX_BYTES` of a file of `size` bytes, from its first whole line."""
    data = os.pread(fd, MAX_BYTES, size - MAX_BYTES)
    skipped.add(_TAIL_READ, f"{path} ({size >> 20} MiB)")
    return data[data.find(b"\n") + 1 :]


def _parse(data: bytes, path: str, metrics: RunMetrics, skipped: Skipped, keep: bool) -> None:
    lines: list[bytes] = []
    end = data.rfind(b"\n") + 1
    unterminated = data[end:]  # b"" when the file ends with a newline
    objects: list[Any]
    numbered: list[int] | None = None
    try:
        # One parse for the whole file is several times faster than one per line; any bad
        # line (a blank one too: it makes ",,") falls back to line by line.
        objects = json.loads(b"[" + data[: end - 1].replace(b"\n", b",") + b"]") if end else []
    except (ValueError, RecursionError):
        lines = data[:end].split(b"\n")[:-1]
        objects, numbered = [], []
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                objects.append(json.loads(line))
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
                objects.append(None)
            numbered.append(lineno)
    if unterminated.strip():
        try:
            objects.append(json.loads(unterminated))
            if numbered is not None:
                numbered.append(len(lines) + 1)
        except (ValueError, RecursionError):
            pass  # a line being written, or cut short by a kill
    step = -1
    # Values are gathered per metric and handed over in one piece: per value, only a type test and an append.
    gathered: dict[str, tuple[list[int], list[float]]] = {}
    summary = metrics.summary
    for index, obj in enumerate(objects):
        if type(obj) is not dict:
            if numbered is None and not lines:
                lines = data[:end].split(b"\n")[:-1]
            lineno = numbered[index] if numbered is not None else _nth_line(lines, index)
            skipped.add("skipped {n} metrics lines that are not JSON objects", f"{path}:{lineno}")
            continue
        if "_summary" in obj:
            values = obj["_summary"]
            if isinstance(values, dict):
                for name, value in _flat(values, ""):
                    number = _number(value, name, path, skipped)
                    if number is not None:
                        summary[name] = number
            continue
        given = obj.get("_step")
        step = given if type(given) is int else step + 1
        for name, value in obj.items():
            kind = type(value)
            if name[:1] == "_":
                continue
            if (kind is float and value - value == 0.0) or (kind is int and -_EXACT < value < _EXACT):
                number = value
            elif kind is dict:
                for flat_name, flat_value in _flat(value, f"{name}."):
                    flat_number = _number(flat_value, flat_name, path, skipped)
                    if flat_number is not None:
                        _gather(gathered, flat_name, step, flat_number)
                continue
            else:
                number = _number(value, name, path, skipped)
                if number is None:
                    continue
            pair = gathered.get(name)
            if pair is None:
                pair = gathered[name] = ([], [])
            if keep:
                pair[0].append(step)
            pair[1].append(number)
    series = metrics.series
    for name, (steps, values) in gathered.items():
        s = series.get(name)
        if s is None:
            s = series[name] = Series()
        s.extend(steps, values, keep)


def _gather(gathered: dict[str, tuple[list[int], list[float]]], name: str, step: int, number: float) -> None:
    pair = gathered.get(name)
    if pair is None:
        pair = gathered[name] = ([], [])
    pair[0].append(step)  # steps unused without history: harmless on this rare (nested) path
    pair[1].append(number)


def _nth_line(lines: list[bytes], index: int) -> int:
    """The line number of the index-th non-blank line (only computed for a line being reported)."""
    seen = -1
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            seen += 1
            if seen == index:
                return lineno
    return len(lines) + 1


def _flat(obj: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    """(dotted name, value) of every leaf, in order; a stack, not recursion: nesting as deep as the parser allows costs no RecursionError."""
    stack = [(iter(obj.items()), prefix)]
    while stack:
        items, at = stack[-1]
        for key, value in items:
            if key.startswith("_"):
                continue
            if isinstance(value, dict):
                stack.append((iter(value.items()), f"{at}{key}."))
                break
            yield f"{at}{key}", value
        else:
            stack.pop()


def _number(value: Any, name: str, path: str, skipped: Skipped) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        skipped.add("skipped {n} metric values that are not numbers", f"{path}: {name}={json.dumps(value, default=repr)[:40]}")
        return None
    try:
        number = float(value)
    except OverflowError:  # a whole number beyond any float
        number = math.inf
    if not math.isfinite(number):
        skipped.add("skipped {n} NaN or infinite metric values", f"{path}: {name}")
        return None
    return value if isinstance(value, int) else number
