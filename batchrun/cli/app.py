"""The `batchrun` command line: parse, call the core, print, return an exit code.

All printing and every exit code live here; the core raises `BatchrunError`s
and reports progress through callbacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import batchrun.cli.launch as cli_launch
import batchrun.cli.queue as cli_queue
import batchrun.cli.results as cli_results
import batchrun.cli.run as cli_run
import batchrun.cli.status as cli_status
import batchrun.cli.ui as cli_ui
from batchrun import __version__, _signals
from batchrun._memory import fix_mmap_threshold, quiet_collector
from batchrun.errors import BatchrunError, UsageError

__all__ = ["main"]

_TEMPLATES = ("runfile", "sweep", "pipeline")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `batchrun: error:` line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"batchrun: error: {message} (see {self.prog} --help)\n")


# The top-level --help's closing lines: a first session, and the exit codes (`main`'s docstring says why each).
_EPILOG = """\
examples:
  batchrun launch exp.runfile -j 4       run each line of exp.runfile, 4 at a time; again: only what has not finished
  batchrun status exp.runfile            counts by state and a table of the jobs (works while a launch runs)
  batchrun logs exp.runfile 3 --err      the stderr of the job on line 3
  batchrun sweep grid.yml                a gridspec's points as grid.runfile (batchrun launch grid.yml does both)
  batchrun results grid.yml --over seed  each run's parameters and metrics, repeats averaged

exit codes:
  0    every job succeeded (now or earlier), or there was nothing to do
  1    some job failed, timed out or was killed, or a failure stopped the launch
  2    batchrun could not start: bad usage or input (one "batchrun: error:" line says what)
  124  batchrun wait --timeout expired first
  130  interrupted (Ctrl-C, SIGTERM, batchrun stop --now), after the records were saved

Each command's --help has its options and an example: batchrun COMMAND --help
"""


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """`unrecognized arguments: --retry-faild (did you mean --retry-failed?)`, naming the subcommand's own options."""
    import difflib

    known = [option for action in parser._actions for option in action.option_strings]
    hints = []
    for word in extras:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.75)
            if close:
                hints.append(f"{word.split('=', 1)[0]}: did you mean {close[0]}?")
    return f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else "")


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
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batchrun {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    cli_launch.add_parsers(sub)
    cli_run.add_parsers(sub)
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
    cli_ui.add_parsers(sub)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


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
    fix_mmap_threshold()
    # Usually installed already by `__main__`, before this module's imports.
    if _signals.install():
        _signals.take_pending()  # left from an earlier in-process call
    try:
        with quiet_collector():
            return _main(argv)
    finally:
        _signals.restore()


def _main(argv: Sequence[str] | None) -> int:
    parser = _build_parser()
    # `run` and `sweep` take a command whose words are its own, not batchrun's options.
    head, words = cli_run.split_command(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(_join_option_values(head))
    if extras:
        # Said by the subcommand's parser, so the hint names its --help and its options.
        command = _subparsers(parser).get(args.command) if args.command else None
        (command or parser).error(_unrecognized(command or parser, extras))
    if words is not None:
        args.words = words
    launches = args.command in ("launch", "run")
    if not launches:
        # Only a launch has records to save before it stops; the other
        # commands stop on a signal as they always did.
        _signals.restore()
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if not launches and _signals.take_pending():
            raise KeyboardInterrupt
        if args.command == "launch":
            return cli_launch.run(args)
        if args.command in cli_run.COMMANDS:
            return cli_run.run(args)
        if args.command == "init":
            return _cmd_init(args)
        if args.command in cli_status.COMMANDS:
            return cli_status.run(args)
        if args.command in cli_results.COMMANDS:
            return cli_results.run(args)
        if args.command in cli_queue.COMMANDS:
            return cli_queue.run(args)
        if args.command in cli_ui.COMMANDS:
            return cli_ui.run(args)
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
