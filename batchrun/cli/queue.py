"""The queue subcommands `kill`, `stop` and `wait`, and launch's --follow and --on-finish: parsing and printing.

`cli/app.py` adds these parsers with `add_parsers` and hands their parsed
arguments to `run`, inside its one `except BatchrunError`. Reaching the
launch is `batchrun.launch.control`'s; reading the outcome is `batchrun.status.outcome`'s.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun.cli.logs import jobs_of
from batchrun.cli.target import duration_or_zero, target_of, target_parser
from batchrun.cli.words import count, counts_text
from batchrun.errors import UsageError
from batchrun.launch.control import request_kill, request_stop
from batchrun.status.lookup import find_job
from batchrun.status.outcome import wait_for
from batchrun.store.target import Target

if TYPE_CHECKING:
    from batchrun.launch.livequeue import Follower
    from batchrun.runfile.file import Runfile
    from batchrun.store.rundir import RunsDir

__all__ = ["COMMANDS", "WAIT_TIMED_OUT", "add_launch_options", "add_parsers", "gridspec_follower", "on_finish", "run", "warn"]

COMMANDS = ("kill", "stop", "wait")

# `wait --timeout` expired with the launch still running: as timeout(1), so
# that a script tells it from the launch's own 0, 1, 2 and 130.
WAIT_TIMED_OUT = 124


def add_parsers(subparsers: Any) -> None:
    """Add `kill`, `stop` and `wait` to the CLI's subparsers."""
    where = target_parser()

    kill = subparsers.add_parser(
        "kill",
        parents=[where],
        help="stop running jobs of the running launch; the launch goes on",
        description=(
            "Stop the named running jobs of the launch that runs RUNFILE now: SIGTERM to each job's process group, "
            "SIGKILL after the launch's --grace. They are recorded killed: a plain relaunch does not run them again, "
            "--retry-failed does. JOB is a line number, a job id prefix or a unique part of the command, as for logs. "
            "Example: batchrun kill exp.runfile 12 'lr=0.3'"
        ),
    )
    kill.add_argument("jobs", nargs="+", metavar="JOB", help="line number, job id prefix, or unique part of the command")

    stop = subparsers.add_parser(
        "stop",
        parents=[where],
        help="let the running launch start no new job and end when its running jobs end",
        description=(
            "Ask the launch that runs RUNFILE now (found from its lock) to start no new job, including with --follow, "
            "and to end once its running jobs have ended; it exits 0, or 1 if a job failed. With --now, stop it as "
            "Ctrl-C does. Example: batchrun stop exp.runfile"
        ),
    )
    stop.add_argument("--now", action="store_true", help="as Ctrl-C: stop the running jobs too (SIGTERM, SIGKILL after --grace); exit 130")
    stop.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    wait = subparsers.add_parser(
        "wait",
        parents=[where],
        help="wait until the runfile's launch (or its --detach'ed jobs) has finished; exit as it would",
        description=(
            "Wait while a launch of RUNFILE runs, or jobs it left with --detach (asking squeue for SLURM ones), then "
            "exit as the launch would, from the records: 0 all succeeded, 1 some failed, timed out or were killed, "
            "130 some interrupted; a finished run answers at once. Exit 124 when --timeout expires first, "
            "2 when nothing was ever launched. Example: batchrun wait exp.runfile --timeout 2h (after batchrun launch exp.runfile --detach)"
        ),
    )
    wait.add_argument("--timeout", type=duration_or_zero, default=None, metavar="DURATION", help="give up after this long (90, 30m, 2h) with exit 124")
    wait.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def add_launch_options(launch: argparse.ArgumentParser) -> None:
    """The launch options of the queue: --follow and --on-finish."""
    launch.add_argument(
        "--follow", action="store_true",
        help="after the pending jobs, keep starting the lines appended to (or changed in) the runfile or gridspec, until Ctrl-C or batchrun stop",
    )
    launch.add_argument(
        "--on-finish", default=None, metavar="CMD",
        help="run CMD through the shell once when the launch ends, with BATCHRUN_SUCCEEDED, BATCHRUN_FAILED, ... and BATCHRUN_EXIT_CODE set (e.g. a notification)",
    )


def gridspec_follower(gridspec: Path, runfile: Runfile, runs_dir: RunsDir) -> Follower:
    """launch grid.yml --follow: each change is swept into its runfile as `launch grid.yml` sweeps it."""
    from batchrun._doit.sweep import run_sweep_task
    from batchrun.launch.livequeue import Follow

    dep_file = runs_dir.path / ".sweep.doit.json"
    return Follow.of_runfile(runfile, gridspec, lambda: run_sweep_task(gridspec, runfile.path, dep_file))


def warn(text: str) -> None:
    """One warning line of a following launch (a repeated line, an unreadable file)."""
    sys.stderr.write(f"batchrun: warning: {text}\n")


def on_finish(command: str, counts: Mapping[str, int], runs_dir: Path, exit_code: int, runfile: Path) -> None:
    """--on-finish: once, after the summary; its failure is one warning line, the exit code stays the launch's."""
    from batchrun.status.outcome import run_on_finish
    from batchrun.store.rundir import RunsDir

    done = run_on_finish(command, counts, RunsDir(runs_dir), exit_code, runfile)
    if done.error is not None or done.status != 0:
        why = done.error or f"exit {done.status}"
        warn(f"--on-finish command {command!r} failed ({why}); its output is in {done.log_path}")


def run(args: argparse.Namespace) -> int:
    """Run one of `COMMANDS`; errors are raised as `BatchrunError`s for `cli.main`."""
    target = target_of(args)
    if args.command == "kill":
        return _cmd_kill(args, target)
    if args.command == "stop":
        return _cmd_stop(args, target)
    return _cmd_wait(args, target)


def _name(target: Target) -> str:
    return str(target.given)


def _cmd_kill(args: argparse.Namespace, target: Target) -> int:
    from batchrun.store.rundir import launch_holder

    if launch_holder(target.runs_dir) is None:
        raise UsageError(f"no launch of {_name(target)} is running ({target.runs_dir.path} is not locked); nothing to kill")
    status = jobs_of(target)
    jobs = {}
    for text in args.jobs:
        job = find_job(status, text)
        jobs[job.job_id] = job
    answer = request_kill(target.runs_dir, _name(target), list(jobs))
    for job_id in answer.killing:
        job = jobs[job_id]
        print(f"batchrun: {_name(target)}: killing job {job_id} (line {job.line}): {job.command}")
    for job_id in answer.not_running:
        job = jobs[job_id]
        sys.stderr.write(f"batchrun: warning: job {job_id} (line {job.line}) is not running (it is {job.category}); not killed\n")
    if not answer.killing:
        raise UsageError(f"none of the named jobs is running in the launch of {_name(target)} (pid {answer.pid}); see batchrun status {shlex.quote(_name(target))}")
    return 0


def _cmd_stop(args: argparse.Namespace, target: Target) -> int:
    answer = request_stop(target.runs_dir, _name(target), now=args.now)
    if not args.quiet:
        if args.now:
            print(f"batchrun: {_name(target)}: stopping the launch (pid {answer.pid}) as Ctrl-C does")
        else:
            print(f"batchrun: {_name(target)}: the launch (pid {answer.pid}) starts no new job and ends when its running jobs end")
    return 0


def _cmd_wait(args: argparse.Namespace, target: Target) -> int:
    def tell(what: str) -> None:
        if not args.quiet:
            print(f"batchrun: {_name(target)}: {what}", flush=True)

    outcome = wait_for(target, args.timeout, tell)
    if outcome is None:
        sys.stderr.write(f"batchrun: {_name(target)}: still running after --timeout {args.timeout:g} s\n")
        return WAIT_TIMED_OUT
    if not args.quiet:
        lost = f"; {count(len(outcome.lost), 'detached job')} ended without an exit record (cancelled outside batchrun?)" if outcome.lost else ""
        print(f"batchrun: {_name(target)}: finished: {counts_text(outcome.counts, terse=True)}{lost} (exit {outcome.exit_code})")
    return outcome.exit_code
