"""The `batchrun` command line: parse, call the core, print, return an exit code.

All printing and every exit code live here; the core raises `BatchrunError`s
and reports progress through callbacks.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import batchrun.cli.queue as cli_queue
import batchrun.cli.results as cli_results
import batchrun.cli.status as cli_status
from batchrun import __version__, _signals
from batchrun.cli.target import duration, int_at_least
from batchrun.errors import BatchrunError, RunfileError, UsageError

if TYPE_CHECKING:
    from batchrun.launch.feed import JobQueue
    from batchrun.launch.launch import Launch
    from batchrun.runfile.file import Job

__all__ = ["main"]

_GRIDSPEC_SUFFIXES = (".yml", ".yaml")
_TEMPLATES = ("runfile", "sweep", "pipeline")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_positive_int = int_at_least(1)


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


# Options whose value usually starts with "-" (argparse would take it for an option).
_DASHED_VALUE_OPTIONS = ("--sbatch-args", "--sort")


def _join_option_values(argv: list[str]) -> list[str]:
    """`--sbatch-args "--time=2:00:00"` -> `--sbatch-args=--time=2:00:00`."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _DASHED_VALUE_OPTIONS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batchrun",
        description="Launch, track and resume batches of shell commands and parameter sweeps.",
    )
    parser.add_argument("--version", action="version", version=f"batchrun {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    launch = sub.add_parser(
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
    sweep = sub.add_parser(
        "sweep",
        help="turn a YAML gridspec into a runfile: one command per point of the grid",
        description=(
            "Write one command per point of the parameter grid in GRIDSPEC to <gridspec name>.runfile "
            "in the current directory (as the original batchrun did). "
            "Example: batchrun sweep gridspec.yml && batchrun launch gridspec.runfile -j 4"
        ),
    )
    sweep.add_argument("gridspec", type=Path, help="YAML file: program and parameters (original batchrun or W&B sweep format)")
    sweep.add_argument("-o", "--out", type=Path, default=None, metavar="RUNFILE", help="where to write the runfile (default <gridspec name>.runfile)")
    sweep.add_argument("--count", action="store_true", help="print how many commands the grid has, write nothing")
    init = sub.add_parser(
        "init",
        help="write a dodo.py template (and its example inputs) into the current directory",
        description=(
            "Write a working dodo.py that runs batchrun tasks with plain doit, with the runfile or "
            "gridspec it uses. Templates: runfile, sweep, pipeline (prepare -> sweep -> aggregate). "
            "Example: batchrun init sweep && doit -n 4"
        ),
    )
    init.add_argument("template", nargs="?", default="runfile", choices=_TEMPLATES, help="which template (default runfile)")
    init.add_argument("--force", action="store_true", help="overwrite an existing dodo.py")
    cli_status.add_parsers(sub)
    cli_results.add_parsers(sub)
    cli_queue.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batchrun CLI and return its exit code.

    Exit codes:
        0: every job of the runfile has succeeded (now or earlier), or there
           was nothing to do.
        1: one or more jobs failed.
        2: batchrun could not start or go on: bad usage, bad input, a busy or
           unwritable runs directory.
        130: interrupted (Ctrl-C, SIGTERM, SIGHUP), after the state was saved.
        124: `batchrun wait --timeout` expired while the launch still ran.
    """
    # Usually installed already by `__main__`, before this module's imports.
    if _signals.install():
        _signals.take_pending()  # left from an earlier in-process call
    try:
        return _main(argv)
    finally:
        _signals.restore()


def _main(argv: Sequence[str] | None) -> int:
    parser = _build_parser()
    args = parser.parse_args(_join_option_values(list(sys.argv[1:] if argv is None else argv)))
    if args.command != "launch":
        # Only a launch has records to save before it stops; the other
        # commands stop on a signal as they always did.
        _signals.restore()
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command != "launch" and _signals.take_pending():
            raise KeyboardInterrupt
        if args.command == "launch":
            return _cmd_launch(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "init":
            return _cmd_init(args)
        if args.command in cli_status.COMMANDS:
            return cli_status.run(args)
        if args.command in cli_results.COMMANDS:
            return cli_results.run(args)
        if args.command in cli_queue.COMMANDS:
            return cli_queue.run(args)
        raise AssertionError(args.command)
    except BatchrunError as err:
        sys.stderr.write(f"batchrun: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("batchrun: interrupted\n")
        return 130
    except BrokenPipeError:
        # Output piped into `head` or `grep -q`, which stopped reading: not
        # an error. Point stdout at /dev/null so the final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:  # noqa: BLE001 - the one place bugs are reported
        if args.debug:
            raise
        sys.stderr.write(f"batchrun: internal error: {type(err).__name__}: {err} (rerun with --debug for a traceback)\n")
        return 3


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
    from batchrun.store.metadata import RunsDir
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


def _cmd_sweep(args: argparse.Namespace) -> int:
    from batchrun.sweeps.gridspec import default_runfile_path, load_gridspec, write_runfile

    gridspec = load_gridspec(args.gridspec)
    if args.count:
        print(gridspec.count())
        return 0
    out = args.out or default_runfile_path(args.gridspec)
    count = write_runfile(gridspec, out)
    print(f"Runfile generated: {out} ({count} commands)")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from importlib.resources import files

    source = files("batchrun.templates").joinpath(args.template)
    names = sorted(item.name for item in source.iterdir() if item.is_file() and not item.name.startswith((".", "__")))
    target = Path.cwd()
    if (target / "dodo.py").exists() and not args.force:
        raise UsageError(f"{target / 'dodo.py'} exists; use --force to overwrite it")
    for name in names:
        path = target / name
        if path.exists() and name != "dodo.py":
            print(f"batchrun: kept {name} (exists)")
            continue
        try:
            path.write_text(source.joinpath(name).read_text())
        except OSError as err:
            raise UsageError(f"{path}: cannot write: {err.strerror}") from err
        print(f"batchrun: wrote {name}")
    print(f"batchrun: run it with: doit -n 4   (template {args.template}; see the docstring of dodo.py)")
    return 0
