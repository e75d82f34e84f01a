"""The read-only subcommands `status`, `logs`, `failed` and `plan`: parsing and printing.

`cli/app.py` adds these parsers with `add_parsers` and hands their parsed
arguments to `run`, inside its one `except BatchrunError`; `logs` and `plan` are in
their own modules (`cli/logs`, `cli/plan`). The reading is
`batchrun.status.view`'s, or for a runfile `batchrun.status.compact`'s (streamed,
for a million lines); this module only chooses what to show and prints it, the
table and CSV through `cli/statustable`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from batchrun.cli.logs import cmd_logs
from batchrun.cli.plan import PLAN_SHOWN, cmd_plan
from batchrun.cli.statustable import Listing, sweep_of, write_csv, write_table
from batchrun.cli.target import add_capacity_options, add_state_option, int_at_least, states_of, target_of, target_parser
from batchrun.cli.words import count, counts_text
from batchrun.launch.options import MODES
from batchrun.status.beside import read_streamable
from batchrun.status.compact import WINDOW, CompactStatus
from batchrun.status.lookup import job_entry, short_id_length
from batchrun.status.resources import COUNTED
from batchrun.status.view import JobStatus, RunsStatus, load_status
from batchrun.store.records import JobRecord, State
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
    states = states_of(args)
    out = sys.stdout
    # What each run used is in the CSV, the JSON and the resources only, and whole ids: only the table
    # shows each id's shortest distinct prefix (which sorts every id).
    whole = args.csv or args.json or args.resources
    source: RunsStatus | CompactStatus | None = None
    # Streamed: a window of jobs at a time (`status.compact`), for runfiles of a million lines, and runs
    # directories whose runfile is beside them (`status.beside`). Only the table looks jobs up by id:
    # the others leave the ids' sorted indexes unread.
    compact = read_streamable(target, usage=whole, entries=args.json and not args.resources, indexes=not whole)
    if compact is not None:
        # Jobs that share an id are one key of the JSON object: the held path says which wins.
        if not (args.json and compact.runfile.jobs.ids_repeat()):
            # A job's entry is a few kB as dicts: JSON's windows are smaller.
            # The resources summarise only the jobs counted as ran to an end: only those are made.
            shown = states or (list(COUNTED) if args.resources else [])
            source = compact
            listing = _compact_listing(target, compact, shown, args.other_code, size=512 if args.json else WINDOW, table=not whole)
    if source is None:
        status = load_status(target, need_entries=args.json)
        jobs = status.select(states)
        if args.other_code:
            code = _code_now()
            jobs = [job for job in jobs if _other_code(job, code)]
        source = status
        listing = _listing(target, status, jobs, table=not whole)
    if args.resources:
        _write_resources(out, target, listing, args)
    elif args.json:
        _write_json_windows(out, target, source, listing)
    else:
        _write_listing(out, args, listing, states)
    return 0


def _write_resources(out: IO[str], target: Target, listing: Listing, args: argparse.Namespace) -> None:
    from batchrun.cli.resources import write_resources

    # By the state each job is counted under, as every command counts it (a removed line's job is not among them).
    def records() -> Iterator[JobRecord | None]:
        return (job.record for window in listing.windows() for job in window if job.category in COUNTED)

    write_resources(out, target.given, records, args.json, args.csv)


def _write_listing(out: IO[str], args: argparse.Namespace, listing: Listing, states: Sequence[str]) -> None:
    if args.csv:
        write_csv(out, listing)
    else:
        write_table(out, listing, states, args.show_command, counts_text, count)


def _listing(target: Target, status: RunsStatus, jobs: list[JobStatus], table: bool = True) -> Listing:
    """What the table lists, from every job held (`RunsStatus`): the listed jobs are one window.

    `table=False`: for what shows whole ids (no shortest prefix made: it sorts every id).
    """
    running = [job for job in status.jobs if job.record is not None and job.record.state == State.RUNNING and not job.removed]
    return Listing(
        given=str(target.given),
        runs_dir=status.runs_dir.path,
        counts=status.counts(),
        launch_running=status.launch_running,
        launch_pid=status.launch_pid,
        now=status.now,
        running=running,
        id_length=short_id_length(status.jobs) if table else 16,
        windows=lambda: iter([jobs]),
        every=lambda: iter([status.jobs]),
        given_parameters=status.parameter_names,
    )


def _compact_listing(target: Target, status: CompactStatus, states: Sequence[str], other_code: bool, size: int = WINDOW, table: bool = True) -> Listing:
    """What the table lists, from jobs held by column (`CompactStatus`): the listed jobs are made a window at a time.

    `table=False`: for what shows whole ids (no shortest prefix made: it sorts every id).
    """
    indices, removed = status.indices(states), status.select_removed(states)
    now = _code_now() if other_code else None

    def windows() -> Iterator[Sequence[JobStatus]]:
        for window in status.windows(indices, removed, size):
            yield [job for job in window if _other_code(job, now)] if other_code else window

    return Listing(
        given=str(target.given),
        runs_dir=status.runs_dir.path,
        counts=status.counts(),
        launch_running=status.launch_running,
        launch_pid=status.launch_pid,
        now=status.now,
        running=status.running_jobs(),
        id_length=status.id_length() if table else 16,
        windows=windows,
        every=lambda: status.windows(size=256),  # small windows: a sweep is told apart from other commands by its first jobs
        given_parameters=status.parameter_names,
    )


def _write_json_windows(out: IO[str], target: Target, status: RunsStatus | CompactStatus, listing: Listing) -> None:
    """One JSON object, the jobs' entries written a window at a time: the bytes `json.dumps` makes of it whole."""
    head = {
        "runs_dir": str(status.runs_dir.path),
        "runfile": str(target.runfile) if target.runfile is not None else None,
        "launch": {"running": status.launch_running, "pid": status.launch_pid},
        "counts": status.counts(),
    }
    out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "jobs": {')
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    sep = ""
    for window in listing.windows():
        # `category`: the state the job is counted and listed under (`ignored`, `removed`, or its `state`), as in the counts.
        # A dict, as the whole object was: jobs that share an id are one key (streamed windows never share one).
        entries = {job.job_id: {**job_entry(status, job), "removed": job.removed, "category": job.category} for job in window}
        if entries:
            out.write(sep + ", ".join([f"{dumps(job_id)}: {dumps(entry)}" for job_id, entry in entries.items()]))
            sep = ", "
    out.write("}}\n")


def _code_now() -> str | None:
    """The name of the working directory's code version now (`--other-code`)."""
    from batchrun.store.codeversion import current_version

    now = current_version(os.getcwd())
    return now.name if now is not None else None


def _other_code(job: JobStatus, name: str | None) -> bool:
    """Whether the job's last attempt ran under a known code version other than `name`."""
    return job.record is not None and job.record.code is not None and job.record.code != name


# -- sweeps ----------------------------------------------------------------------


def _sweep_columns(status: RunsStatus) -> tuple[list[str], dict[str, dict[str, Any]]] | None:
    """The parameter names of a sweep and each job's parameters, or None if not a sweep (`statustable.sweep_of`)."""
    sweep = sweep_of(status.jobs, status.parameter_names)
    if sweep is None:
        return None
    return sweep.names, {job.job_id: sweep.params_of(job) for job in status.jobs}


# -- failed ----------------------------------------------------------------------


def _cmd_failed(args: argparse.Namespace) -> int:
    target = target_of(args)
    # What --retry-failed runs again (killed too); interrupted ones any launch runs again.
    wanted = {State.FAILED, State.TIMEOUT, State.KILLED}
    if args.interrupted:
        wanted |= {State.INTERRUPTED, State.REQUEUED}
    status = read_streamable(target, usage=False)
    if status is not None:
        for window in status.windows(status.indices(sorted(wanted)), status.select_removed(sorted(wanted))):
            sys.stdout.write("".join([job.command + "\n" for job in window if job.command]))
        return 0
    status_all = load_status(target)
    lines = [job.command + "\n" for job in status_all.jobs if job.category in wanted and job.command]
    sys.stdout.write("".join(lines))
    return 0
