"""`batchrun results`' rows of a runfile or gridspec, read a window of jobs at a time.

`table.read_results` holds a `Run` and a row per job: at a million jobs that
is gigabytes. Every form of `results` (`cli/resultsstream`) needs only the
names of the parameters and metrics, then the rows in order (or in an order
`results.order` found, or folded into groups by `results.groups`), never all
at once: `read_streamed` reads every job once for the
names (as `read_results` does, the same `RunReader`, the metrics cache
filled as it would be), and `StreamedResults.windows` makes the rows again a
window of jobs at a time (`status.compact`), each as `read_results` makes it.

A runfile target, or a gridspec's whose runfile is there (`compact.usable_for`), or a runs
directory whose runfile is beside it, unchanged (`status.beside`):
a gridspec's jobs take its own values (`table.PointValues`), found by walking
its points in step with the runfile once, then kept pickled in a temporary
file (`_StoredPoints`) for the reads again, in order or not.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchrun.metrics.cache import MetricsCache
from batchrun.metrics.file import Skipped
from batchrun.metrics.scrape import ScrapeRule
from batchrun.results.table import COLUMNS, PointValues, Run, RunReader, note_names, without_gc
from batchrun.status.compact import CompactStatus, read_compact
from batchrun.status.view import JobStatus
from batchrun.store.records import State
from batchrun.store.target import Target

__all__ = ["StreamedResults", "read_streamed"]

# Jobs whose gridspec values are read at a time, reading them in order.
_READ_AHEAD = 2048


@dataclass
class StreamedResults:
    """The runs of a runfile's jobs, to be read again a window at a time."""

    status: CompactStatus
    reader: RunReader
    parameter_names: list[str]
    metric_names: list[str]
    skipped: Skipped
    # Parameters named like a column, and metrics named like a parameter or a column: left out of every row.
    dropped_parameters: list[str] = field(default_factory=list)
    dropped_metrics: list[str] = field(default_factory=list)
    # 1 for each job (in `status.windows` order) whose metrics `read_streamed` found (or a scrape rule may find).
    found: bytearray = field(default_factory=bytearray)
    # A gridspec's values of each job (in `status.windows` order), as `read_streamed` found them.
    points: _StoredPoints | None = None

    def windows(self, agg: str = "last", states: Sequence[str] = ()) -> Iterator[list[dict[str, Any]]]:
        """The rows (`Run.row`) of the jobs in `states` (all when empty), in runfile order, a window of jobs at a time."""
        for window in self.positioned(agg, states):
            yield [row for _, row in window]

    def positioned(self, agg: str = "last", states: Sequence[str] = ()) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        """`windows`, each row with its job's position (in `status.windows` order: the runfile's jobs, then removed ones)."""
        wanted = set(states)
        k = 0
        for window in self.status.windows():
            with without_gc():  # the rows are many small objects, and no cycles
                rows = []
                for job in window:
                    row = self._row(job, k, agg)
                    if not wanted or row["state"] in wanted:
                        rows.append((k, row))
                    k += 1
            yield rows

    def runs(self, agg: str = "last") -> Iterator[list[tuple[Run, dict[str, Any]]]]:
        """Every job's run with its row (`windows`' rows), in `windows` order, a window at a time: for the report, which needs the records too."""
        k = 0
        for window in self.status.windows():
            with without_gc():
                runs = []
                for job in window:
                    run = self._run(self.reader.run(job, Skipped(), not self.found[k]), self.parameter_names)
                    runs.append((run, run.row(self.metric_names, agg)))
                    k += 1
            yield runs

    def rows_at(self, positions: Sequence[int], agg: str = "last") -> list[dict[str, Any]]:
        """The rows of the jobs at these positions (`positioned`), in that order (a window's worth)."""
        jobs = self.status.jobs_at(positions)
        with without_gc():
            return [self._row(job, k, agg) for k, job in zip(positions, jobs, strict=True)]

    def _row(self, job: JobStatus, k: int, agg: str) -> dict[str, Any]:
        # What reading skipped was counted once, by `read_streamed`; a file it did not find is not looked for again.
        values = self.points.at(k) if self.points is not None else None
        return self._run(self.reader.run_with(job, Skipped(), not self.found[k], values), self.parameter_names).row(self.metric_names, agg)

    def _run(self, run: Run, names: list[str]) -> Run:
        """The run as `read_results` leaves it: names that clash left out, and every parameter in every row."""
        for name in self.dropped_parameters:
            run.parameters.pop(name, None)
        for name in self.dropped_metrics:
            run.metrics.drop(name)
        if self.points is None and len(run.parameters) != len(names):  # a gridspec's rows have its values only, as held
            run.parameters = {name: run.parameters.get(name) for name in names}
        return run


class _StoredPoints:
    """Each job's gridspec values, pickled one after another in a temporary file: a million jobs' in a few tens of MB of disk."""

    def __init__(self, points: PointValues) -> None:
        self._points = points
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the results are read; gone when closed
        self._ends = array("I", [0])  # where each job's values end: 4 bytes a job up to 4 GB of them
        weakref.finalize(self, self._file.close)
        self._block: tuple[int, int, bytes] = (0, 0, b"")  # the jobs whose values were read last, and their bytes

    def add(self, command: str) -> dict[str, Any] | None:
        """The values of the next job's point (`PointValues.values`), kept for `at`."""
        values = self._points.values(command)
        data = pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        end = self._ends[-1] + len(data)
        if end > 0xFFFFFFFF and self._ends.typecode == "I":
            self._ends = array("q", self._ends)  # past 4 GB of values
        self._ends.append(end)
        return values

    def done(self) -> None:
        self._file.flush()

    def at(self, k: int) -> dict[str, Any] | None:
        """The values `add` found for the job at position `k`: a fresh copy each time."""
        ends = self._ends
        first, last, block = self._block
        if not first <= k < last:
            # Read in order (the windows): the next jobs' values in one read; else (a sort's order) this job's alone.
            last = min(len(ends) - 1, k + _READ_AHEAD) if k == last else k + 1
            first, block = k, os.pread(self._file.fileno(), ends[last] - ends[k], ends[k])
            self._block = (first, last, block)
        base = ends[first]
        loaded: dict[str, Any] | None = pickle.loads(block[ends[k] - base : ends[k + 1] - base])
        return loaded


def read_streamed(target: Target, scrape: Sequence[ScrapeRule] = (), usage: bool = False, status: CompactStatus | None = None) -> StreamedResults:
    """Read every job of a runfile target once for the names of its parameters and metrics (`table.read_results`' rules);
    `status`: its jobs as read already (`status.beside.read_streamable`, which a runs directory's read needs).

    Raises:
        UsageError, InputError, MetadataError: as `status.view.load_status`.
    """
    if status is None:
        status = read_compact(target, usage=usage, indexes=False)  # `usage`: the CSV and JSON show what each run used, the table none of it
    skipped = Skipped()
    cache = MetricsCache(str(status.runs_dir.path))
    names = status.parameter_names  # a gridspec's, else None
    stored = _StoredPoints(PointValues(target.gridspec)) if target.gridspec is not None and names is not None else None
    reader = RunReader(str(status.runs_dir.logs), status.now, cache, list(scrape), names, None, False)
    seen_params: dict[str, None] = dict.fromkeys(names or ())
    seen_metrics: dict[str, None] = {}
    having: dict[str, int] = {}  # metric -> how many runs have it
    found = bytearray()
    with without_gc():
        for window in status.windows():
            for job in window:
                run = reader.run_with(job, skipped, False, stored.add(job.command) if stored is not None else None)
                found.append(1 if scrape or run.metrics.series or run.metrics.summary or job.record is None or job.record.state == State.RUNNING else 0)
                note_names(run, seen_params if names is None else None, seen_metrics)
                metrics = run.metrics
                for name in {*metrics.series, *metrics.summary}:
                    having[name] = having.get(name, 0) + 1
    cache.save()
    if stored is not None:
        stored.done()
    reader.cache = MetricsCache(str(status.runs_dir.path))  # with what this read added, for the reads again
    param_names = [name for name in seen_params if name not in COLUMNS]
    dropped_params = [name for name in seen_params if name in COLUMNS]
    for name in dropped_params:
        skipped.add("skipped {n} parameters named like a column (" + ", ".join(COLUMNS) + ")", name)
    taken = set(COLUMNS) | set(param_names)
    metric_names, dropped_metrics = [], []
    for name in seen_metrics:
        if name in taken:
            skipped.add("skipped {n} values of metrics named like a parameter or a column (rename them)", name, having[name])
            dropped_metrics.append(name)
        else:
            metric_names.append(name)
    return StreamedResults(status, reader, param_names, metric_names, skipped, dropped_params, dropped_metrics, found, stored)
