"""`batchrun launch`: its options, and the launch from the parsed arguments to the exit code.

Parses and prints; the launch itself is `batchrun.launch`'s, its jobs run through doit (`batchrun._doit`).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import batchrun.cli.queue as cli_queue
from batchrun import _signals
from batchrun._memory import freeze_heap
from batchrun.cli.target import add_capacity_options, duration, int_at_least
from batchrun.errors import RunfileError, UsageError

if TYPE_CHECKING:
    from batchrun.launch.chain import LaunchState

__all__ = ["add_launch_options", "add_parsers", "gridspec_warnings", "run", "warn_gridspec"]

_positive_int = int_at_least(1)


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
    launch.add_argument("runfile", type=Path, metavar="RUNFILE|GRIDSPEC", help="file with one shell command per line, or a gridspec (.yml) to sweep first")
    add_launch_options(launch)


def add_launch_options(launch: argparse.ArgumentParser) -> None:
    """Every option of a launch (not its target): `launch` takes them, and so does any command that launches."""
    launch.add_argument(
        "-j", "--n_jobs", "--jobs", dest="n_jobs", type=_positive_int, default=None, metavar="N",
        help="jobs to run at once (default 1, or one per GPU slot with --gpus, or as many as fit when lines ask for resources)",
    )
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
    launch.add_argument("--max-requeues", type=int, default=10, metavar="N", help="run a job that exits 75 (requeue: it saved its state, run it again) up to N more times in this launch, not counted as failures (default 10)")
    launch.add_argument(
        "--checkpoint-signal", type=_checkpoint_signal, default=None, metavar="SIG@SECONDS",
        help="with --timeout: send SIG (e.g. USR1) to the job's process group SECONDS before its timeout; a job that saves its state and exits 75 on it is requeued (on SLURM: sbatch --signal=B:SIG@SECONDS, which batchrun passes on to the job)",
    )
    launch.add_argument("--timeout", type=duration, default=None, metavar="DURATION", help="stop a job that runs longer (90, 30m, 2h): SIGTERM, SIGKILL after --grace; recorded as timeout (on SLURM: sbatch --time, in whole minutes)")
    halt = launch.add_mutually_exclusive_group()
    halt.add_argument("--fail-fast", action="store_true", help="start no new job after the first failure; let running ones finish; exit 1")
    halt.add_argument("--halt-now", action="store_true", help="after the first failure, also stop the running jobs; exit 1")
    add_capacity_options(launch)
    launch.add_argument("--order", choices=["file", "shuffle"], default="file", help="run pending jobs in file order (default) or a random, reproducible order")
    launch.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --order shuffle (default 0)")
    launch.add_argument("--env", type=_env_pair, action="append", default=[], metavar="KEY=VALUE", help="extra environment variable for every job (repeatable)")
    launch.add_argument("--executor", choices=["local", "slurm", "dask"], default="local", help="where jobs run: this machine (default), a SLURM cluster, or a Dask cluster")
    launch.add_argument("--sbatch-args", default="", metavar="ARGS", help='with --executor slurm: extra sbatch options, e.g. "--partition=gpu --gres=gpu:1 --time=02:00:00"')
    launch.add_argument("--scheduler", default=None, metavar="ADDRESS", help="with --executor dask: the scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    launch.add_argument("--snapshot", action="store_true", help="run the jobs from a copy of the git tree's tracked files as they are now (in the runs directory), so editing the code while the launch runs changes no job")
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


def _checkpoint_signal(text: str) -> tuple[int, float]:
    """`USR1@120`, `SIGUSR1@2m`, `10@90`: a signal (name or number) and the seconds before the timeout it comes."""
    import signal

    name, sep, when = text.partition("@")
    try:
        signum = int(name) if name.isdigit() else int(signal.Signals[name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()])
        signal.Signals(signum)
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"expected SIG@SECONDS with a signal name or number as SIG (USR1@120), not {text!r}") from None
    if not sep:
        raise argparse.ArgumentTypeError(f"expected SIG@SECONDS, e.g. USR1@120, not {text!r}")
    return signum, duration(when)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a shell variable name as KEY, not {text!r}")
    return key, value


def _cmd_launch(args: argparse.Namespace) -> int:
    from batchrun.launch import chain

    state = _state_of(args)
    if args.dry_run:
        return _dry_run(state, args)
    steps: list[chain.Step] = [
        chain.take_hold,  # before anything is written: a refused launch changes nothing
        functools.partial(_sweep, args=args),
        chain.quick_answer,
        chain.load,
        functools.partial(_report_lines, args=args),
        _stop_if_signalled,
        chain.prepare,
        functools.partial(_report_plan, args=args),
        functools.partial(_run, args=args),
        functools.partial(_summarize, args=args),
    ]
    return chain.execute(state, steps)


def _state_of(args: argparse.Namespace) -> LaunchState:
    """The launch's options, checked, and its target, resolved (a gridspec's spec read): nothing is written yet."""
    from batchrun.launch.chain import LaunchState
    from batchrun.launch.gpus import resolve_gpus
    from batchrun.launch.options import LaunchOptions, check_options, parse_mode, parse_order
    from batchrun.store.target import is_gridspec, resolve_target

    options = LaunchOptions(
        n_jobs=args.n_jobs or 1,
        auto_jobs=args.n_jobs is None,
        mode=parse_mode(args.mode or "resume"),
        accounting_dir=args.accounting_dir,
        metadata_name=args.state_db_filename,
        grace=args.grace,
        env=dict(args.env),
        retries=args.retries,
        max_requeues=args.max_requeues,
        checkpoint_signal=args.checkpoint_signal,
        snapshot=args.snapshot,
        timeout=args.timeout,
        fail_fast=args.fail_fast,
        halt_now=args.halt_now,
        jobs_per_gpu=args.jobs_per_gpu,
        cpus=args.cpus,
        mem=args.mem,
        order=parse_order(args.order),
        seed=args.seed,
        executor=args.executor,
        sbatch_args=shlex.split(args.sbatch_args),
        scheduler=args.scheduler,
        detach=args.detach,
        follow=args.follow,
    )
    # Before anything else, --dry-run included: both refuse the same options.
    check_options(options)
    target = resolve_target(args.runfile, options.accounting_dir, options.metadata_name, must_exist=False)
    # The GPUs (`--gpus auto`, `--skip-busy-gpus`: nvidia-smi is asked), and -j's default from them.
    options.gpus, options.gpus_from, gpu_env = resolve_gpus(args.gpus or [], args.skip_busy_gpus, os.environ, str(target.runs_dir.path))
    options.env = {**gpu_env, **options.env}
    if args.n_jobs is None and options.gpus:
        options.n_jobs = len(options.gpus) * options.jobs_per_gpu
    if target.runfile is None:
        raise RunfileError("is a directory, not a runfile", args.runfile)
    sweep = None
    if is_gridspec(args.runfile):
        from batchrun.launch.adaptive import load_sweep  # a sweep's rules and the bayes search, only for a gridspec

        loaded = load_sweep(args.runfile)  # the spec is checked (and the bayes extra) before anything runs
        warn_gridspec(args.runfile)
        if loaded.bayes is not None and args.follow:
            raise UsageError(f"{args.runfile}: --follow does not apply to a bayes spec: its launch appends each point itself")
        sweep = loaded if loaded.bayes is not None or loaded.stopper is not None else None
    return LaunchState(target=target, options=options, runfile_path=target.runfile, sweep=sweep)


def gridspec_warnings(gridspec: Any) -> tuple[str, ...]:
    """What a valid gridspec likely did not mean (a W&B `program` with a space: `wandb.program_warnings`)."""
    if not gridspec.is_wandb:
        return ()
    from batchrun.sweeps.wandb import program_warnings

    return program_warnings(gridspec.program, gridspec.command)


def warn_gridspec(path: Path, warnings: Sequence[str] | None = None) -> None:
    """What a valid gridspec likely did not mean (`Gridspec.warnings`), one line each, when it is swept or launched."""
    if warnings is None:
        from batchrun.sweeps.gridspec import load_gridspec

        warnings = gridspec_warnings(load_gridspec(path))
    for text in warnings:
        sys.stderr.write(f"batchrun: warning: {path}: {text}\n")


def _dry_run(state: LaunchState, args: argparse.Namespace) -> int:
    """What the launch would do (as `batchrun plan`), reading only: a gridspec is expanded in memory, not written."""
    from batchrun.cli.plan import dry_run
    from batchrun.runfile.file import Runfile, load_runfile, parse_runfile_text
    from batchrun.sweeps.gridspec import load_gridspec

    gridspec = state.target.gridspec
    path = state.runfile_path
    if gridspec is not None and not state.bayes:
        runfile = parse_runfile_text("".join(f"{line}\n" for line in load_gridspec(gridspec).iter_lines()), path)
    else:
        runfile = load_runfile(path) if path.exists() or not state.bayes else Runfile(path, [])
    _warn_duplicates(path, runfile.duplicates)
    if _signals.take_pending():
        raise KeyboardInterrupt  # nothing written
    return dry_run(runfile, state.options, state.sweep, str(args.runfile))


def _sweep(state: LaunchState, args: argparse.Namespace) -> int | None:
    """`launch grid.yml`: bring grid.runfile up to date under the lock, then launch it; a bayes spec's runfile is created.

    The runfile and runs directory are those `batchrun sweep grid.yml` and
    `batchrun launch grid.runfile` use, so the two spellings are one.
    """
    gridspec = state.target.gridspec
    if gridspec is None:
        return None
    from batchrun._doit.sweep import run_sweep_task
    from batchrun._doit.values import repair_doit_db

    if state.sweep is not None and state.sweep.bayes is not None:
        state.sweep.create_runfile()
        return None
    dep_file = state.target.runs_dir.path / ".sweep.doit.json"
    # run_sweep_task keeps doit's values for the sweep in `<dep_file>.journal`.
    notice = repair_doit_db(dep_file.with_name(dep_file.name + ".journal"))
    if notice is not None:
        sys.stderr.write(f"batchrun: {notice}\n")
    if run_sweep_task(gridspec, state.runfile_path, dep_file) and not args.quiet:
        print(f"batchrun: {gridspec}: wrote {state.runfile_path}")
    return None


def _warn_duplicates(path: Path, duplicates: list[tuple[str, int, int]]) -> None:
    for _command, first, again in duplicates:
        sys.stderr.write(f"batchrun: warning: {path}:{again}: same command as line {first}; it runs once\n")


def _report_lines(state: LaunchState, args: argparse.Namespace) -> int | None:
    """The runfile's repeated lines, one warning each; an empty runfile ends the launch here."""
    _warn_duplicates(state.runfile_path, state.duplicates)
    if not state.total and not args.follow and not state.bayes:
        print(f"batchrun: {state.runfile_path}: no commands (only blank or # lines); nothing to do")
        return 0
    return None


def _stop_if_signalled(state: LaunchState) -> int | None:
    if _signals.take_pending():
        raise KeyboardInterrupt  # nothing written yet but the lock (which `execute` releases)
    return None


def _report_plan(state: LaunchState, args: argparse.Namespace) -> int | None:
    """The repairs made, the plan, and what an adaptive sweep or --follow adds to it."""
    from batchrun.cli.display import plan_lines

    for notice in state.notices:
        sys.stderr.write(f"batchrun: {notice}\n")
    if args.quiet:
        return None
    assert state.plan is not None
    path = state.runfile_path
    for line in plan_lines(state.plan, state.total, state.options.mode):
        print(f"batchrun: {args.runfile}: {line}", flush=True)
    if state.sweep is not None and state.runfile is not None and state.launch is not None:
        from batchrun.launch.adaptive import states_of

        print(f"batchrun: {args.runfile}: {state.sweep.plan_line(state.runfile, states_of(state.launch.journal.records))}", flush=True)
    if args.follow:
        followed = state.target.gridspec or path
        print(f"batchrun: {path}: following {followed} for new lines (batchrun stop {shlex.quote(str(followed))} to end)", flush=True)
    return None


def _run(state: LaunchState, args: argparse.Namespace) -> int | None:
    """Run the plan under the live display, with Ctrl-C, SIGTERM and SIGHUP stopping the jobs; always finish."""
    from batchrun.cli.display import Progress
    from batchrun.launch import chain
    from batchrun.launch.options import Mode

    plan, options, launch = state.plan, state.options, state.launch
    assert plan is not None and state.hold is not None
    # Recovered jobs are already among succeeded and failed: the plan is made after recovery.
    done_before = plan.succeeded + plan.failed if options.mode == Mode.RESUME else plan.succeeded
    total = state.total
    if state.sweep is not None and state.runfile is not None and launch is not None:
        from batchrun.launch.adaptive import states_of

        total += state.sweep.to_propose(state.runfile, states_of(launch.journal.records))
    progress = Progress(sys.stdout, total, min(done_before, state.total), plan.failed if options.mode == Mode.RESUME else 0, options.n_jobs, quiet=args.quiet)
    if launch is not None:  # no job starts or ends in a quick answer: nothing to show but the plan
        launch.on_event = progress
        progress.best = _best_so_far(args.runfile, launch.runs_dir)
        launch.on_warning = cli_queue.warn
        if args.follow:
            progress.following = launch.queued
            if state.target.gridspec is not None:
                launch.follower = cli_queue.gridspec_follower(state.target.gridspec, launch.runfile, state.target.runs_dir)
    stopper = launch if launch is not None else state.hold

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopper.request_stop()
        progress.stop_requested()  # "waiting for N jobs to stop (Ctrl-C again to kill now)"

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous: dict[int, Any] = {sig: signal.signal(sig, on_signal) for sig in handled}
    # Signals noted while preparing: stop now, as if they came just after.
    for _ in _signals.take_pending()[:2]:
        stopper.request_stop()
    if launch is not None:
        freeze_heap()  # what is loaded now stays to the end: no collection need walk it again
    try:
        progress.start()
        try:
            if launch is not None and state.sweep is not None:
                state.sweep.run(launch, plan, run_job_tasks)
            elif launch is not None and not launch.should_stop_dispatch():
                launch.run(plan, run_job_tasks)
        finally:
            progress.close()
    finally:
        chain.finish(state)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return None


def _summarize(state: LaunchState, args: argparse.Namespace) -> int | None:
    """The summary, then --on-finish; the exit code is the result's (`result.exit_code_of`)."""
    from batchrun.cli.display import summary_lines

    result = state.result
    assert result is not None and state.plan is not None
    if result.error is not None:
        sys.stderr.write(f"batchrun: error: {result.error}\n")
    for line in summary_lines(result, str(args.runfile), state.plan.failed_skipped):
        print(line)
    if args.on_finish:
        cli_queue.on_finish(args.on_finish, result.counts, result.runs_dir, result.exit_code, state.runfile_path)
    return None


def run_job_tasks(launch: Any, jobs: Any, n_jobs: int) -> int:
    """doit runs the launch's jobs; doit is imported only when there are jobs to run (a quick answer has none)."""
    from batchrun._doit.runner import run_job_tasks as run_with_doit

    return run_with_doit(launch, jobs, n_jobs)


def _best_so_far(given: Path, runs_dir: Any) -> Any:
    """The live display's `best loss 0.123, line 17`: the gridspec's metric, else the first reported."""
    from batchrun.results.best_so_far import BestSoFar
    from batchrun.results.table import gridspec_metric
    from batchrun.store.target import is_gridspec

    metric, goal = gridspec_metric(given) if is_gridspec(given) else (None, "min")
    return BestSoFar(runs_dir.logs, metric, goal)
