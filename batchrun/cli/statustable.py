"""`batchrun status`'s job table and CSV, written a window of jobs at a time.

The table is left-aligned columns two spaces apart, each as wide as its
widest cell: the widths are known only after every row. A million-job table
is not held: the rows are made twice from windows of `JobStatus`es
(`status.compact`), once for the widths and once to print; a list of jobs
(`status.view.RunsStatus`) is one window. Each cell is made by the same code
either way, so the output is the same to the byte.

Written by hand rather than with rich: a 100,000-row table has to be
formatted in a fraction of a second.
"""

from __future__ import annotations

import csv
import shlex
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import IO, Any

from batchrun.results.best_so_far import STATUS_METRICS_LIMIT, metric_cells, metric_lookup
from batchrun.results.tables import format_duration, format_text_cells
from batchrun.status.lookup import job_parameters
from batchrun.status.view import JobStatus
from batchrun.store.records import USAGE_FIELDS, JobRecord, State
from batchrun.store.rundir import RunsDir

__all__ = ["Listing", "Sweep", "sweep_of", "write_columns", "write_csv", "write_table"]

Windows = Callable[[], Iterator[Sequence[JobStatus]]]


@dataclass
class Listing:
    """What the table of `status` lists, from a `RunsStatus` or a `CompactStatus` alike."""

    given: str
    runs_dir: Path
    counts: dict[str, int]
    launch_running: bool
    launch_pid: int | None
    now: float
    running: list[JobStatus]  # every job running now (not only the listed ones)
    id_length: int
    windows: Windows  # the listed jobs, a window at a time (called once per pass)
    every: Windows  # every job, for what the table's columns depend on (a sweep's parameters)
    given_parameters: list[str] | None = None  # a gridspec's parameter names


class Sweep:
    """The parameter names of a sweep, and each job's parameters (made again for each window)."""

    def __init__(self, names: list[str], given: bool) -> None:
        self.names = names
        self.given = given  # a gridspec's: every job's parameters from its entry or command

    def params_of(self, job: JobStatus) -> dict[str, Any]:
        if self.given or job.removed:
            return job_parameters(job)
        found = _params_of_tail(job.command.partition(" --")[2])
        return found if found is not None else {}


def sweep_of(jobs: Iterable[JobStatus], given: list[str] | None) -> Sweep | None:
    """The sweep the jobs are, or None.

    A gridspec's jobs are a sweep by definition. Otherwise the jobs (at least
    two) are one when each is the same program text followed only by
    `--name=value` words: then the parameters say everything.
    """
    if given is not None:
        return Sweep(list(given), True)
    names: dict[str, None] = {}
    program = None
    seen = 0
    for job in jobs:
        if job.removed:
            continue
        head, sep, tail = job.command.partition(" --")
        if not sep or (program is not None and head != program):
            return None
        program = head
        found = _params_of_tail(tail)
        if found is None:
            return None
        if not names.keys() >= found.keys():
            names.update(dict.fromkeys(found))
        seen += 1
    return Sweep(list(names), False) if seen >= 2 else None


def _params_of_tail(tail: str) -> dict[str, Any] | None:
    """The parameters of what follows a sweep's program text and its first ` --`; None when they are not all `--name[=value]` words."""
    if tail.count(" ") == tail.count(" --") and "'" not in tail and '"' not in tail and "\\" not in tail and "\t" not in tail:
        # The common case, split without shlex: every space starts a " --".
        found = {key: value if eq else True for key, eq, value in map(str.partition, tail.split(" --"), repeat("="))}
    else:
        words = _split_words("--" + tail)
        if words is None or not all(word.startswith("--") for word in words):
            return None
        found = {key: value if eq else True for key, eq, value in (word[2:].partition("=") for word in words)}
    return None if "" in found else found


def _split_words(command: str) -> list[str] | None:
    """Shell words as `parse_parameters` splits them; None when unbalanced."""
    if not any(c in command for c in "'\"\\"):
        return command.split()
    lexer = shlex.shlex(command, posix=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


# -- the table -------------------------------------------------------------------


def write_table(out: IO[str], listing: Listing, states: Sequence[str], show_command: bool, counts_text: Callable[[dict[str, int]], str], count: Callable[[int, str], str]) -> None:
    """The counts, the launch, and the table of the listed jobs."""
    out.write(f"{listing.given}: {counts_text(listing.counts)}\n")
    out.write(f"runs directory: {listing.runs_dir}\n")
    running = listing.running
    if listing.launch_running:
        pid = f" (pid {listing.launch_pid})" if listing.launch_pid else ""
        out.write(f"a launch{pid} is running: {count(len(running), 'job')} running now\n")
    elif running:
        out.write(f"{count(len(running), 'job')} still running with no launch watching; the next launch adopts {'it' if len(running) == 1 else 'them'}\n")
    listed = 0
    started: list[str] = []
    for window in listing.windows():
        listed += len(window)
        if len(started) <= STATUS_METRICS_LIMIT:
            started.extend(job.job_id for job in window if job.record is not None)
        elif not states:
            break  # no metric columns past the limit, and only a filtered table says how many it lists: this pass is done
    if states:
        out.write(f"showing {count(listed, 'job')}: {' or '.join(states)}\n")
    if not listed:
        return
    sweep = None if show_command else sweep_of((job for window in listing.every() for job in window), listing.given_parameters)
    columns = _Columns(listing, sweep, started)
    widths = [len(name) for name in columns.header]
    for window in listing.windows():
        for k, column in enumerate(columns.of(window)):
            widths[k] = max(widths[k], max(map(len, column), default=0))
    write_columns(out, columns.header, (columns.of(window) for window in listing.windows()), widths)


class _Columns:
    """The table's header, and the text columns of any window of its jobs."""

    def __init__(self, listing: Listing, sweep: Sweep | None, started: list[str]) -> None:
        self.id_len = listing.id_length
        self.now = listing.now
        self.starts = _StartFormatter(listing.now)
        self.sweep = sweep
        self.header = ["LINE", "ID", "STATE", "EXIT", "RUNTIME", "START"]
        self.slots = bool(listing.running)
        self.holds = self.slots and any(job.record is not None and job.record.holds for job in listing.running)
        if self.slots:
            self.header.append("SLOT")
            if self.holds:
                self.header.append("HOLDS")  # what each running job holds beside its slot: its GPUs, CPUs, memory
        if sweep is not None:
            self.header += sweep.names
        # As `batchrun results` orders and formats them: parameters, then metrics (the last value of each).
        self.metrics, self.found = ([], {}) if not started or len(started) > STATUS_METRICS_LIMIT else metric_lookup(RunsDir(listing.runs_dir).logs, started)
        self.header += self.metrics
        if sweep is None:
            self.header.append("COMMAND")

    def of(self, jobs: Sequence[JobStatus]) -> list[list[str]]:
        # Built column by column with comprehensions: this runs for every job.
        id_len, now, starts = self.id_len, self.now, self.starts
        recs = [job.record for job in jobs]
        running_state = State.RUNNING
        columns: list[list[str]] = [
            ["-" if job.removed or job.line is None else str(job.line) for job in jobs],
            [job.job_id[:id_len] for job in jobs],
            [job.category for job in jobs],  # as counted above (`records.category_of`): an ignored job is listed ignored
            ["-" if rec is None or rec.status is None else str(rec.status) for rec in recs],
            [_runtime_text(rec, now) for rec in recs],
            [starts(rec.start) if rec is not None else "-" for rec in recs],
        ]
        if self.slots:
            columns.append([str(rec.slot) if rec is not None and rec.state == running_state and rec.slot is not None else "" for rec in recs])
            if self.holds:
                columns.append([rec.holds.replace(";", " ") if rec is not None and rec.state == running_state and rec.holds else "" for rec in recs])
        if self.sweep is not None:
            values = [self.sweep.params_of(job) for job in jobs]
            for name in self.sweep.names:
                columns.append(format_text_cells([v.get(name) for v in values]))
        if self.metrics:
            columns += metric_cells(self.metrics, self.found, jobs)
        if self.sweep is None:
            columns.append([job.command for job in jobs])
        return columns


def _runtime_text(rec: JobRecord | None, now: float) -> str:
    """The runtime, or for a running job the time it has run so far."""
    if rec is None:
        return "-"
    if rec.state == State.RUNNING:
        return format_duration(now - rec.start) if rec.start is not None else "-"
    runtime = rec.runtime
    # format_duration's most common case, inline.
    return f"{runtime:.2f}s" if runtime is not None and 0 <= runtime < 10 else format_duration(runtime)


def write_columns(out: IO[str], header: list[str], windows: Iterable[list[list[str]]], widths: list[int]) -> None:
    """Left-aligned columns two spaces apart, each `widths` wide; the last one (the command) is not
    padded and, on a terminal, lines are cut at its width."""
    fmt = "".join(f"{{:<{width}}}  " for width in widths[:-1]) + "{}"
    limit = shutil.get_terminal_size().columns if out.isatty() else 0
    first = True
    for columns in chain([None], windows):
        lines = [fmt.format(*header).rstrip()] if columns is None else [line.rstrip() for line in map(fmt.format, *columns)]
        if limit:
            lines = [line if len(line) <= limit else line[: limit - 3] + "..." for line in lines]
        if not lines:
            continue
        if not first:
            out.write("\n")
        out.write("\n".join(lines))
        first = False
    out.write("\n")


class _StartFormatter:
    """Today's times as `13:02:11`, older ones with their date; cached per second."""

    def __init__(self, now: float) -> None:
        t = time.localtime(now)
        self.day_start = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
        self.cache: dict[int, str] = {}

    def __call__(self, start: float | None) -> str:
        if start is None:
            return "-"
        second = int(start)
        text = self.cache.get(second)
        if text is None:
            if len(self.cache) > 100_000:
                self.cache.clear()  # a million distinct seconds would be a million strings held
            fmt = "%H:%M:%S" if second >= self.day_start else "%Y-%m-%d %H:%M"
            text = self.cache[second] = time.strftime(fmt, time.localtime(second))
        return text


# -- CSV -------------------------------------------------------------------------


def write_csv(out: IO[str], listing: Listing) -> None:
    """The listed jobs as CSV, one row per job: every field of their records."""
    sweep = sweep_of((job for window in listing.every() for job in window), listing.given_parameters)
    names = sweep.names if sweep is not None else []
    fixed = ["job_id", "line", "state", "status", "runtime", "start", "end", "attempts", "slot", "holds", "host", *USAGE_FIELDS, "code", "removed", "command"]
    header = fixed + [name if name not in fixed else f"parameters.{name}" for name in names]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for window in listing.windows():
        for job in window:
            rec = job.record
            running = rec is not None and rec.state == State.RUNNING
            values = sweep.params_of(job) if sweep is not None else {}
            writer.writerow([
                job.job_id,
                job.line if job.line is not None else "",
                job.category,  # as the table lists it and the counts count it
                _blank(rec.status if rec is not None else None),
                _blank(rec.runtime if rec is not None else None),
                _blank(rec.start if rec is not None else None),
                _blank(rec.end if rec is not None else None),
                rec.attempts if rec is not None else 0,
                _blank(rec.slot if rec is not None and running else None),
                _blank(rec.holds.replace(";", " ") if rec is not None and running and rec.holds else None),
                _blank(rec.host if rec is not None else None),
                *[_blank(getattr(rec, name) if rec is not None else None) for name in USAGE_FIELDS],
                _blank(rec.code if rec is not None else None),
                "true" if job.removed else "false",
                job.command,
                *[_param_text(values.get(name)) for name in names],
            ])


def _blank(value: object) -> object:
    return "" if value is None else value


def _param_text(value: object) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
