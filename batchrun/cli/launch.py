"""`batchrun launch`: its options, and the launch from the parsed arguments to the exit code.

Parses and prints; the launch itself is `batchrun.launch`'s, its jobs run through doit (`batchrun._doit`).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import batchrun.cli.queue as cli_queue
from batchrun import _signals
from batchrun.cli.target import duration, int_at_least
from batchrun.errors import RunfileError, UsageError

if TYPE_CHECKING:
    from batchrun.launch.feed import JobQueue
    from batchrun.launch.launch import Launch
    from batchrun.runfile.file import Job

__all__ = ["add_launch_options", "add_parsers", "run"]

_positive_int = int_at_least(1)
# A target with one of these suffixes is a gridspec, swept before it launches.
_GRIDSPEC_SUFFIXES = (".yml", ".yaml")


def add_parsers(subparsers: Any) -> None:
    """Add `launch` to the CLI's subparsers."""
    launch = subparsers.add_parser(
        "launch",
        help="run every line of a runfile as a job, resuming where the last launch stopped",
        description=(
            "Run every non-blank, non-# line of RUNFILE as a shell job, N at a time. "
            "Logs go to runs/<runfile name>/logs/<job id>/, records to runs/<runfile name>/metadata.json. "
            "A job that already finished is never run again unless asked. "
            "Example: batchrun launch exp.runfile -j 4"
        ),
    )
    launch.add_argument("runfile", type=Path, help="file with one shell command per line, or a gridspec (.yml) to sweep first")
    add_launch_options(launch)


def add_launch_options(launch: argparse.ArgumentParser) -> None:
    """Every option of a launch (not its target): `launch` takes them, and so does any command that launches."""
    launch.add_argument("-j", "--n_jobs", "--jobs", dest="n_jobs", type=_positive_int, default=None, metavar="N", help="jobs to run at once (default 1, or one per GPU slot with --gpus)")
    mode = launch.add_mutually_exclusive_group()
    mode.add_argument(
        "--mode",
        choices=["resume", "retry_failed", "overwrite"],
        default=None,
        help="resume (default): run only unfinished jobs; retry_failed: also failed ones; overwrite: everything",
    )
    mode.add_argument("--retry-failed", action="store_const", dest="mode", const="retry_failed", help="also rerun jobs that failed or were interrupted")
    mode.add_argument("--rerun-all", action="store_const", dest="mode", const="overwrite", help="rerun every job (same as --mode overwrite)")
    launch.add_argument("--accounting_dir", "--accounting-dir", dest="accounting_dir", type=Path, default=None, metavar="DIR", help="keep this runfile's logs/ and metadata.json in DIR instead of runs/<runfile name>/")
    launch.add_argument("--state_db_filename", "--state-db-filename", dest="state_db_filename", default="metadata.json", metavar="NAME", help="name of the metadata file (default metadata.json)")
    launch.add_argument("--grace", type=_seconds, default=10.0, metavar="SECONDS", help="on Ctrl-C or SIGTERM, how long jobs get to exit after SIGTERM before SIGKILL (default 10)")
    launch.add_argument("--retries", type=int, default=0, metavar="N", help="retry a failed job up to N more times in this launch (earlier attempts' logs are kept as out.<n>.log)")
    launch.add_argument("--timeout", type=duration, default=None, metavar="DURATION", help="stop a job that runs longer (90, 30m, 2h): SIGTERM, SIGKILL after --grace; recorded as timeout")
    halt = launch.add_mutually_exclusive_group()
    halt.add_argument("--fail-fast", action="store_true", help="start no new job after the first failure; let running ones finish; exit 1")
    halt.add_argument("--halt-now", action="store_true", help="after the first failure, also stop the running jobs; exit 1")
    launch.add_argument("--gpus", type=_gpu_list, default=None, metavar="IDS", help="GPU ids, e.g. 0,1,2,3: each job gets CUDA_VISIBLE_DEVICES of its slot's GPU")
    launch.add_argument("--jobs-per-gpu", type=_positive_int, default=1, metavar="K", help="jobs sharing one GPU (default 1); -j defaults to GPUs x K")
    launch.add_argument("--order", choices=["file", "shuffle"], default="file", help="run pending jobs in file order (default) or a random, reproducible order")
    launch.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --order shuffle (default 0)")
    launch.add_argument("--env", type=_env_pair, action="append", default=[], metavar="KEY=VALUE", help="extra environment variable for every job (repeatable)")
    launch.add_argument("--executor", choices=["local", "slurm", "dask"], default="local", help="where jobs run: this machine (default), a SLURM cluster, or a Dask cluster")
    launch.add_argument("--sbatch-args", default="", metavar="ARGS", help='with --executor slurm: extra sbatch options, e.g. "--partition=gpu --gres=gpu:1 --time=02:00:00"')
    launch.add_argument("--scheduler", default=None, metavar="ADDRESS", help="with --executor dask: the scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    launch.add_argument("--detach", action="store_true", help="start (or submit) the pending jobs and exit; a later launch collects them (batchrun status shows them meanwhile)")
    cli_queue.add_launch_options(launch)
    launch.add_argument("--dry-run", action="store_true", help="show what this launch would do (as batchrun plan) and run nothing")
    launch.add_argument("-q", "--quiet", action="store_true", help="print only the final summary and errors")


def run(args: argparse.Namespace) -> int:
    """Run `batchrun launch`; errors are raised as `BatchrunError`s for `cli.main`."""
    return _cmd_launch(args)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a shell variable name as KEY, not {text!r}")
    return key, value


def _gpu_list(text: str) -> list[str]:
    gpus = [part.strip() for part in text.split(",")]
    if not all(gpus):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of GPU ids like 0,1,2,3, not {text!r}")
    return gpus


def _cmd_launch(args: argparse.Namespace) -> int:
    from batchrun.cli.display import Progress, plan_lines, summary_lines
    from batchrun.launch.options import LaunchOptions, check_options
    from batchrun.launch.quickresume import QuickLaunch
    from batchrun.runfile.file import Runfile, load_runfile

    gpus = args.gpus or []
    n_jobs = args.n_jobs or (len(gpus) * args.jobs_per_gpu if gpus else 1)
    options = LaunchOptions(
        n_jobs=n_jobs,
        mode=args.mode or "resume",
        accounting_dir=args.accounting_dir,
        metadata_name=args.state_db_filename,
        grace=args.grace,
        env=dict(args.env),
        retries=args.retries,
        timeout=args.timeout,
        fail_fast=args.fail_fast,
        halt_now=args.halt_now,
        gpus=gpus,
        jobs_per_gpu=args.jobs_per_gpu,
        order=args.order,
        seed=args.seed,
        executor=args.executor,
        sbatch_args=shlex.split(args.sbatch_args),
        scheduler=args.scheduler,
        detach=args.detach,
        follow=args.follow,
    )
    # Before anything else, --dry-run included: both refuse the same options.
    check_options(options)
    path: Path = args.runfile
    gridspec = None
    adaptive = None  # a bayes search, hyperband, or both: from a W&B spec only
    if path.suffix.lower() in _GRIDSPEC_SUFFIXES:
        from batchrun.launch.adaptive import load_sweep, states_of

        gridspec = path
        sweep = load_sweep(path)
        if sweep.bayes is None:
            path = _sweep_for_launch(path, args)
        elif args.follow:
            raise UsageError(f"{gridspec}: --follow does not apply to a bayes spec: its launch appends each point itself")
        else:
            path = sweep.runfile
            if not args.dry_run:
                sweep.create_runfile()
        adaptive = sweep if sweep.bayes is not None or sweep.stopper is not None else None
    bayes = adaptive is not None and adaptive.bayes is not None
    # A relaunch with nothing to do is answered from what the last launch
    # left, without parsing the runfile or replaying the journal; it holds
    # the lock from here (see batchrun.launch.quickresume).
    quick = QuickLaunch.open(path, options) if gridspec is None and not args.dry_run else None
    if quick is not None:
        runfile = Runfile(path, [])
        duplicates, n_lines = quick.duplicates, quick.total
    else:
        runfile = load_runfile(path) if not bayes or path.exists() else Runfile(path, [])
        duplicates, n_lines = runfile.duplicates, len(runfile.jobs)
    for _command, first, again in duplicates:
        sys.stderr.write(f"batchrun: warning: {path}:{again}: same command as line {first}; it runs once\n")
    if not n_lines and not args.follow and not bayes:
        print(f"batchrun: {path}: no commands (only blank or # lines); nothing to do")
        return 0
    if _signals.take_pending():
        if quick is not None:
            quick.release()
        raise KeyboardInterrupt  # nothing written yet
    if args.dry_run:
        from batchrun.cli.plan import dry_run

        return dry_run(runfile, options, adaptive, str(args.runfile))
    full: Launch | None = None
    launch: Launch | QuickLaunch
    if quick is None:
        from batchrun.launch.launch import Launch

        launch = full = Launch(runfile, options)
        if gridspec is not None and args.follow:
            full.follower = cli_queue.gridspec_follower(gridspec, runfile, args.accounting_dir, args.state_db_filename)
    else:
        launch = quick
    plan = launch.prepare()
    # What an adaptive sweep reads (a quick launch is never one).
    records = full.journal.records if full is not None else {}
    for notice in launch.notices:
        sys.stderr.write(f"batchrun: {notice}\n")
    out = sys.stdout
    if not args.quiet:
        for line in plan_lines(plan, n_lines, options.mode):
            print(f"batchrun: {path}: {line}", file=out, flush=True)
        if adaptive is not None:
            print(f"batchrun: {args.runfile}: {adaptive.plan_line(runfile, states_of(records))}", file=out, flush=True)
        if args.follow:
            followed = shlex.quote(str(gridspec or path))
            print(f"batchrun: {path}: following {gridspec or path} for new lines (batchrun stop {followed} to end)", file=out, flush=True)
    failed_before = plan.failed
    # Recovered jobs are already among succeeded and failed: the plan is made after recovery.
    done_before = plan.succeeded + plan.failed if options.mode == "resume" else plan.succeeded
    total = n_lines + (adaptive.to_propose(runfile, states_of(records)) if adaptive is not None else 0)
    progress = Progress(out, total, min(done_before, n_lines), failed_before if options.mode == "resume" else 0, options.n_jobs, quiet=args.quiet)
    launch.on_event = progress
    if quick is None:  # no job ends in a quick launch: there is no best value to show
        progress.best = _best_so_far(args.runfile, launch.runs_dir)
    if args.follow and full is not None:
        progress.following = full.queued
        full.on_warning = cli_queue.warn

    def on_signal(signum: int, frame: FrameType | None) -> None:
        launch.request_stop()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous: dict[int, Any] = {sig: signal.signal(sig, on_signal) for sig in handled}
    # Signals noted while preparing: stop now, as if they came just after.
    for _ in _signals.take_pending()[:2]:
        launch.request_stop()
    try:
        progress.start()
        try:
            if adaptive is not None:
                adaptive.run(launch, plan, _run_job_tasks)
            elif not launch.should_stop_dispatch():
                launch.run(plan, _run_job_tasks)
        finally:
            progress.close()
    finally:
        result = launch.finish()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if result.error is not None:
        sys.stderr.write(f"batchrun: error: {result.error}\n")
    skipped_failed = plan.failed_skipped
    for line in summary_lines(result, str(path), skipped_failed):
        print(line, file=out)
    if args.on_finish:
        cli_queue.on_finish(args.on_finish, result.counts, result.runs_dir, result.exit_code, path)
    return result.exit_code


def _run_job_tasks(launch: Launch, jobs: list[Job] | JobQueue, n_jobs: int) -> int:
    """doit runs the launch's jobs; doit is imported only when there are jobs to run."""
    from batchrun._doit.runner import run_job_tasks

    return run_job_tasks(launch, jobs, n_jobs)


def _best_so_far(given: Path, runs_dir: Any) -> Any:
    """The live display's `best loss 0.123, line 17`: the gridspec's metric, else the first reported."""
    from batchrun.results.best_so_far import BestSoFar
    from batchrun.results.table import gridspec_metric

    metric, goal = gridspec_metric(given) if given.suffix.lower() in _GRIDSPEC_SUFFIXES else (None, "min")
    return BestSoFar(runs_dir.logs, metric, goal)


def _sweep_for_launch(gridspec: Path, args: argparse.Namespace) -> Path:
    """`batchrun launch grid.yml`: bring grid.runfile up to date, then launch it.

    The runfile and runs directory are those `batchrun sweep grid.yml` and
    `batchrun launch grid.runfile` use, so the two spellings are one.
    """
    from batchrun._doit.sweep import run_sweep_task
    from batchrun._doit.values import repair_doit_db
    from batchrun.store.rundir import RunsDir
    from batchrun.sweeps.gridspec import default_runfile_path

    if not gridspec.is_file():
        raise RunfileError("no such gridspec" if not gridspec.exists() else "not a file", gridspec)
    runfile = default_runfile_path(gridspec)
    runs_dir = RunsDir.for_runfile(runfile, args.accounting_dir, args.state_db_filename)
    runs_dir.create()
    dep_file = runs_dir.path / ".sweep.doit.json"
    # run_sweep_task keeps doit's values for the sweep in `<dep_file>.journal`.
    notice = repair_doit_db(dep_file.with_name(dep_file.name + ".journal"))
    if notice is not None:
        sys.stderr.write(f"batchrun: {notice}\n")
    if run_sweep_task(gridspec, runfile, dep_file) and not args.quiet:
        print(f"batchrun: {gridspec}: wrote {runfile}")
    return runfile
