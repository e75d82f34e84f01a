"""The read-only subcommands `status`, `logs`, `failed` and `plan`: parsing and printing.

`cli/app.py` adds these parsers with `add_parsers` and hands their parsed
arguments to `run`, inside its one `except BatchrunError`; `logs` and `plan` are in
their own modules (`cli/logs`, `cli/plan`). The reading is
`batchrun.status.view`'s; this module only chooses what to show and prints it.
The job table is written by hand rather than with rich: a 100,000-row table
has to be formatted in a fraction of a second.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from itertools import repeat
from typing import IO, Any

from batchrun.cli.logs import cmd_logs
from batchrun.cli.plan import PLAN_SHOWN, cmd_plan
from batchrun.cli.target import add_capacity_options, add_state_option, int_at_least, states_of, target_of, target_parser
from batchrun.cli.words import count, counts_text
from batchrun.launch.options import MODES
from batchrun.results.best_so_far import metric_columns
from batchrun.results.tables import format_duration, format_text_cells
from batchrun.status.lookup import job_entry, job_parameters, short_id_length
from batchrun.status.view import JobStatus, RunsStatus, load_status
from batchrun.store.records import USAGE_FIELDS, JobRecord, State
from batchrun.store.target import Target

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("status", "logs", "failed", "plan")



_count_type = int_at_least(0)


def add_parsers(subparsers: Any) -> None:
    """Add `status`, `logs`, `failed` and `plan` to the CLI's subparsers."""
    where = target_parser()

    status = subparsers.add_parser(
        "status",
        parents=[where],
        help="count the jobs by state and list them, even while a launch runs",
        description=(
            "Count the jobs of a runfile by state (succeeded, failed, timeout, interrupted, requeued, running, pending, "
            "removed from the runfile) and list them: id, state, exit code, runtime, start, and the command "
            "(for a sweep, its parameters). Reads the live state without disturbing a running launch. "
            "Example: batchrun status exp.runfile --state failed"
        ),
    )
    add_state_option(status, "list only jobs")
    output = status.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object: counts and each job's metadata.json entry")
    output.add_argument("--csv", action="store_true", help="print the jobs as CSV, one row per job")
    status.add_argument(
        "--resources", action="store_true",
        help="summarise what the jobs used: p50, p95 and max of peak memory, runtime and CPU, and --sbatch-args that fit (with --json: as JSON)",
    )
    status.add_argument(
        "--other-code", action="store_true",
        help="list only the jobs that ran under another code version than the working tree's now (git commit and uncommitted changes)",
    )
    status.add_argument("--command", dest="show_command", action="store_true", help="show the command even for a sweep (default: its parameters)")

    logs = subparsers.add_parser(
        "logs",
        parents=[where],
        help="print a job's output (stdout, or stderr with --err)",
        description=(
            "Print the output of one job. JOB is a line number of the runfile, a job id prefix, or a part of the "
            "command that only one job has; when several jobs match, they are listed. "
            "Example: batchrun logs exp.runfile 12 --err --tail 20"
        ),
    )
    logs.add_argument("job", metavar="JOB", help="line number, job id prefix, or unique part of the command")
    logs.add_argument("--err", action="store_true", help="print stderr (err.log) instead of stdout")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the job ends (waits for a pending job while a launch runs)")
    logs.add_argument("-n", "--tail", type=_count_type, default=None, metavar="N", help="print only the last N lines")

    failed = subparsers.add_parser(
        "failed",
        parents=[where],
        help="print the commands of the failed jobs, as a runfile",
        description=(
            "Print the command of each failed job of the runfile, one per line, in runfile order: "
            "a runfile of just those jobs. "
            "Example: batchrun failed exp.runfile > retry.runfile && batchrun launch retry.runfile"
        ),
    )
    failed.add_argument("--interrupted", action="store_true", help="also print the jobs that were interrupted or requeued (they run again on any launch)")

    plan = subparsers.add_parser(
        "plan",
        parents=[where],
        help="show what a launch would do now, running nothing",
        description=(
            "Show what `batchrun launch` would do now: how many jobs are new, already succeeded, failed "
            "(skipped unless --retry-failed), interrupted (to run again), still running (to adopt), removed; "
            "with the first few of each. Same as `batchrun launch --dry-run`. "
            "Example: batchrun plan exp.runfile --retry-failed"
        ),
    )
    mode = plan.add_mutually_exclusive_group()
    mode.add_argument("--mode", choices=list(MODES), default=None, help="the launch mode to plan for (default resume)")
    mode.add_argument("--retry-failed", action="store_const", dest="mode", const="retry_failed", help="plan a launch with --retry-failed")
    mode.add_argument("--rerun-all", action="store_const", dest="mode", const="overwrite", help="plan a launch with --rerun-all")
    plan.add_argument("--show", type=_count_type, default=PLAN_SHOWN, metavar="N", help=f"list up to N jobs of each kind (default {PLAN_SHOWN})")
    add_capacity_options(plan)  # the launch's, so that plan refuses the jobs the launch would refuse


def run(args: argparse.Namespace) -> int:
    """Run one of `COMMANDS`; errors are raised as `BatchrunError`s for `cli.main`."""
    handlers = {"status": _cmd_status, "logs": cmd_logs, "failed": _cmd_failed, "plan": cmd_plan}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:
        # `batchrun status x | head`: the reader left; exit quietly, and keep
        # the interpreter's final flush from failing too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# -- status ----------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    target = target_of(args)
    status = load_status(target, need_entries=args.json)
    states = states_of(args)
    jobs = status.select(states)
    if args.other_code:
        jobs = _under_other_code(jobs)
    out = sys.stdout
    if args.resources:
        from batchrun.cli.resources import write_resources
        from batchrun.status.resources import COUNTED

        # By the state each job is counted under, as every command counts it (a removed line's job is not among them).
        write_resources(out, target.given, [job.record for job in jobs if job.category in COUNTED], args.json, args.csv)
        return 0
    if args.json:
        _write_json(out, target, status, jobs)
    elif args.csv:
        _write_csv(out, status, jobs)
    else:
        _write_table(out, target, status, jobs, states, show_command=args.show_command)
    return 0


def _write_json(out: IO[str], target: Target, status: RunsStatus, jobs: list[JobStatus]) -> None:
    doc = {
        "runs_dir": str(status.runs_dir.path),
        "runfile": str(target.runfile) if target.runfile is not None else None,
        "launch": {"running": status.launch_running, "pid": status.launch_pid},
        "counts": status.counts(),
        # `category`: the state the job is counted and listed under (`ignored`, `removed`, or its `state`), as in the counts.
        "jobs": {job.job_id: {**job_entry(status, job), "removed": job.removed, "category": job.category} for job in jobs},
    }
    # dumps, not dump: dump encodes in many small Python-level chunks.
    out.write(json.dumps(doc, ensure_ascii=False))
    out.write("\n")


def _write_csv(out: IO[str], status: RunsStatus, jobs: list[JobStatus]) -> None:
    sweep = _sweep_columns(status)
    names, params = sweep if sweep is not None else ([], {})
    fixed = ["job_id", "line", "state", "status", "runtime", "start", "end", "attempts", "slot", "holds", "host", *USAGE_FIELDS, "code", "removed", "command"]
    header = fixed + [name if name not in fixed else f"parameters.{name}" for name in names]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for job in jobs:
        rec = job.record
        running = rec is not None and rec.state == State.RUNNING
        values = params.get(job.job_id, {})
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


def _under_other_code(jobs: list[JobStatus]) -> list[JobStatus]:
    """The jobs whose last attempt ran under a known code version other than the working directory's now."""
    from batchrun.store.codeversion import current_version

    now = current_version(os.getcwd())
    name = now.name if now is not None else None
    return [job for job in jobs if job.record is not None and job.record.code is not None and job.record.code != name]


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


def _write_table(out: IO[str], target: Target, status: RunsStatus, jobs: list[JobStatus], states: Sequence[str], show_command: bool) -> None:
    out.write(f"{target.given}: {counts_text(status.counts())}\n")
    out.write(f"runs directory: {status.runs_dir.path}\n")
    running = [job for job in status.jobs if job.record is not None and job.record.state == State.RUNNING and not job.removed]
    if status.launch_running:
        pid = f" (pid {status.launch_pid})" if status.launch_pid else ""
        out.write(f"a launch{pid} is running: {count(len(running), 'job')} running now\n")
    elif running:
        out.write(f"{count(len(running), 'job')} still running with no launch watching; the next launch adopts {'it' if len(running) == 1 else 'them'}\n")
    if states:
        out.write(f"showing {count(len(jobs), 'job')}: {' or '.join(states)}\n")
    if not jobs:
        return
    sweep = None if show_command else _sweep_columns(status)
    id_len = short_id_length(status.jobs)
    # Built column by column with comprehensions: this runs for every job,
    # and a 100,000-job table must take well under a second.
    now = status.now
    starts = _StartFormatter(now)
    recs = [job.record for job in jobs]
    running_state = State.RUNNING
    header = ["LINE", "ID", "STATE", "EXIT", "RUNTIME", "START"]
    columns: list[list[str]] = [
        ["-" if job.removed or job.line is None else str(job.line) for job in jobs],
        [job.job_id[:id_len] for job in jobs],
        [job.category for job in jobs],  # as counted above (`records.category_of`): an ignored job is listed ignored
        ["-" if rec is None or rec.status is None else str(rec.status) for rec in recs],
        [_runtime_text(rec, now) for rec in recs],
        [starts(rec.start) if rec is not None else "-" for rec in recs],
    ]
    if running:
        header.append("SLOT")
        columns.append([str(rec.slot) if rec is not None and rec.state == running_state and rec.slot is not None else "" for rec in recs])
        if any(job.record is not None and job.record.holds for job in running):
            header.append("HOLDS")  # what each running job holds beside its slot: its GPUs, CPUs, memory
            columns.append([rec.holds.replace(";", " ") if rec is not None and rec.state == running_state and rec.holds else "" for rec in recs])
    # As `batchrun results` orders and formats them: parameters, then metrics (the last value of each).
    if sweep is not None:
        names, params = sweep
        empty: dict[str, Any] = {}
        values = [params.get(job.job_id, empty) for job in jobs]
        for name in names:
            header.append(name)
            columns.append(format_text_cells([v.get(name) for v in values]))
    metric_header, metric_cells = metric_columns(status, jobs)  # batchrun.results.best_so_far
    header, columns = header + metric_header, columns + metric_cells
    if sweep is None:
        header.append("COMMAND")
        columns.append([job.command for job in jobs])
    _write_columns(out, header, columns)


def _runtime_text(rec: JobRecord | None, now: float) -> str:
    """The runtime, or for a running job the time it has run so far."""
    if rec is None:
        return "-"
    if rec.state == State.RUNNING:
        return format_duration(now - rec.start) if rec.start is not None else "-"
    runtime = rec.runtime
    # format_duration's most common case, inline.
    return f"{runtime:.2f}s" if runtime is not None and 0 <= runtime < 10 else format_duration(runtime)


def _write_columns(out: IO[str], header: list[str], columns: list[list[str]]) -> None:
    """Left-aligned columns two spaces apart; the last one (the command) is not
    padded and, on a terminal, lines are cut at its width."""
    widths = [max(len(name), max(map(len, column), default=0)) for name, column in zip(header[:-1], columns[:-1], strict=True)]
    fmt = "".join(f"{{:<{width}}}  " for width in widths) + "{}"
    lines = [line.rstrip() for line in (fmt.format(*header), *map(fmt.format, *columns))]
    limit = shutil.get_terminal_size().columns if out.isatty() else 0
    if limit:
        lines = [line if len(line) <= limit else line[: limit - 3] + "..." for line in lines]
    out.write("\n".join(lines))
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
            fmt = "%H:%M:%S" if second >= self.day_start else "%Y-%m-%d %H:%M"
            text = self.cache[second] = time.strftime(fmt, time.localtime(second))
        return text


# -- sweeps ----------------------------------------------------------------------


def _sweep_columns(status: RunsStatus) -> tuple[list[str], dict[str, dict[str, Any]]] | None:
    """The parameter names of a sweep and each job's parameters, or None if not a sweep.

    A gridspec's jobs are a sweep by definition. Otherwise the jobs (at least
    two) are one when each is the same program text followed only by
    `--name=value` words: then the parameters say everything.
    """
    params: dict[str, dict[str, Any]] = {}
    if status.parameter_names is not None:
        for job in status.jobs:
            params[job.job_id] = job_parameters(job)
        return list(status.parameter_names), params
    jobs = [job for job in status.jobs if not job.removed]
    if len(jobs) < 2:
        return None
    names: dict[str, None] = {}
    program = None
    for job in jobs:
        head, sep, tail = job.command.partition(" --")
        if not sep or (program is not None and head != program):
            return None
        program = head
        if tail.count(" ") == tail.count(" --") and "'" not in tail and '"' not in tail and "\\" not in tail and "\t" not in tail:
            # The common case, split without shlex: every space starts a " --".
            found = {key: value if eq else True for key, eq, value in map(str.partition, tail.split(" --"), repeat("="))}
        else:
            words = _split_words("--" + tail)
            if words is None or not all(word.startswith("--") for word in words):
                return None
            found = {key: value if eq else True for key, eq, value in (word[2:].partition("=") for word in words)}
        if "" in found:
            return None
        if not names.keys() >= found.keys():
            names.update(dict.fromkeys(found))
        params[job.job_id] = found
    for job in status.jobs:
        if job.removed:
            params[job.job_id] = job_parameters(job)
    return list(names), params


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


# -- failed ----------------------------------------------------------------------


def _cmd_failed(args: argparse.Namespace) -> int:
    target = target_of(args)
    status = load_status(target)
    # What --retry-failed runs again (killed too); interrupted ones any launch runs again.
    wanted = {State.FAILED, State.TIMEOUT, State.KILLED}
    if args.interrupted:
        wanted |= {State.INTERRUPTED, State.REQUEUED}
    lines = [job.command + "\n" for job in status.jobs if job.category in wanted and job.command]
    sys.stdout.write("".join(lines))
    return 0

