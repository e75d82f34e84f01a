"""`batchrun run` (a sweep typed on the command line, expanded and launched) and `batchrun sweep`.

`run` expands a command written in bash braces, GNU parallel's `:::` or
Hydra's multirun overrides (`batchrun.sweeps.notation`) into `NAME.runfile`
and launches it through `cli/launch.run`, exactly as `batchrun launch
NAME.runfile` would, with every launch option. The runfile's first line is a
`#` comment naming the command that wrote it; the rest are the lines a
hand-written runfile would hold, so job ids, resume, `status`, `results` and
`launch NAME.runfile` work as for any runfile.

Which runfile, and when it may be rewritten:
- the name is `--name`, else derived from the command's program (`python
  train.py ...` -> `train`), with no value in it, so a widened sweep keeps its
  runfile and records and only its new points run;
- a runfile not written by `batchrun run` is never overwritten;
- one written for the same command, values aside, is rewritten with the new
  lines (lines dropped keep their records and logs);
- one written for another command is refused under the derived name (two
  sweeps of one program would otherwise share it) and replaced under an
  explicit `--name`, saying so;
- nothing is rewritten while a launch runs it.

`sweep` writes a gridspec's runfile, or a command line's (`-o` to choose),
without launching; `--count` counts either, writing nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import batchrun.cli.launch as cli_launch
from batchrun.cli.words import count as count_of
from batchrun.errors import UsageError

__all__ = ["COMMANDS", "add_parsers", "run", "split_command"]

COMMANDS = ("run", "sweep")
# The first line of a runfile `batchrun run` (or `sweep` of a command) wrote; the command follows.
HEADER = "# batchrun run: "
_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


def _add_run(subparsers: Any) -> None:
    run: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="expand a command line's sweep (bash braces, parallel's :::, Hydra's -m) into NAME.runfile and launch it",
        description=(
            "Expand COMMAND into one line per point of its sweep, write them to NAME.runfile and launch it "
            "with every launch option; run it again and only what has not finished runs. Options go before "
            "COMMAND; quote a brace or Hydra sweep so your shell leaves it alone. Notations: bash braces "
            "('--lr={0.1,0.01} --seed={1..5}'), GNU parallel's lists (CMD {1} {2} ::: a b ::: 1 2, :::+ to pair, "
            ":::: FILE), Hydra's multirun (python app.py -m lr=0.1,0.01 'seed=range(1,4)'). "
            "Example: batchrun run -j 4 'python train.py --lr={0.1,0.01} --seed={1..5}'"
        ),
    )
    cli_launch.add_launch_options(run)
    _add_own_options(run)


def _add_own_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--name", default=None, metavar="NAME", help="the runfile NAME.runfile and runs directory runs/NAME (default: from the command's program)")
    run.add_argument("--count", action="store_true", help="print how many lines the command gives, write and run nothing")
    run.add_argument("words", nargs="*", metavar="COMMAND", help="the command, as one quoted word or as several words")


def _add_sweep(subparsers: Any) -> None:
    sweep: argparse.ArgumentParser = subparsers.add_parser(
        "sweep",
        help="turn a YAML gridspec (or a command line's sweep) into a runfile: one command per point",
        description=(
            "Write one command per point of the parameter grid in GRIDSPEC to <gridspec name>.runfile "
            "in the current directory (as the original batchrun did), or one per point of a command line's "
            "sweep (as batchrun run writes them, without launching). --count counts them and writes nothing. "
            "Example: batchrun sweep gridspec.yml && batchrun launch gridspec.runfile -j 4"
        ),
    )
    _add_sweep_options(sweep)


def _add_sweep_options(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("gridspec", nargs="?", type=Path, default=None, metavar="GRIDSPEC|COMMAND", help="YAML file: program and parameters (original batchrun or W&B sweep format), or a quoted command with a sweep")
    sweep.add_argument("-o", "--out", type=Path, default=None, metavar="RUNFILE", help="where to write the runfile (default <gridspec name>.runfile, or NAME.runfile for a command)")
    sweep.add_argument("--count", action="store_true", help="print how many commands the grid (or command line) has, write nothing")


def add_parsers(subparsers: Any) -> None:
    """Add `sweep` and `run` to the CLI's subparsers."""
    _add_sweep(subparsers)
    _add_run(subparsers)


def _value_options(command: str) -> dict[str, bool]:
    """Each option string of `run` or `sweep` -> whether it takes a value."""
    parser = argparse.ArgumentParser(add_help=True)
    if command == "run":
        cli_launch.add_launch_options(parser)
        _add_own_options(parser)
    else:
        _add_sweep_options(parser)
    return {option: action.nargs != 0 for action in parser._actions for option in action.option_strings}


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Cut a `run` (or `sweep`) command line into batchrun's part and the swept command's words.

    batchrun's options come first; the first word that is not one of them (or
    the word after `--`) starts the command, whose words are kept exactly
    (argparse would take a command's own `-m` or `--lr` for options).
    Returns (argv, None) for every other command, and for `sweep GRIDSPEC`.
    """
    argv = list(argv)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1  # --debug and friends, before the command's name
    if i >= len(argv) or argv[i] not in COMMANDS:
        return argv, None
    command = argv[i]
    takes_value = _value_options(command)
    j = i + 1
    while j < len(argv):
        word = argv[j]
        if word == "--":
            return argv[:j], argv[j + 1 :]
        if not word.startswith("-") or word == "-":
            break
        name = word.split("=", 1)[0] if word.startswith("--") else word[:2]
        attached = "=" in word if word.startswith("--") else len(word) > 2
        j += 2 if takes_value.get(name) and not attached else 1
    rest = argv[j:]
    if command == "sweep" and (not rest or _is_gridspec(rest[0]) or (len(rest) == 1 and not any(c in " \t" for c in rest[0]))):
        return argv, None  # `sweep grid.yml [--count]`: the gridspec, parsed as it always was
    return argv[:j], rest


def _is_gridspec(word: str) -> bool:
    return not any(c in " \t" for c in word) and (word.lower().endswith((".yml", ".yaml")) or Path(word).is_file())


def run(args: argparse.Namespace) -> int:
    """Run `batchrun run` or `batchrun sweep`; errors are raised as `BatchrunError`s for `cli.main`."""
    if args.command == "sweep":
        return _cmd_sweep(args)
    return _cmd_run(args)


def _cmd_sweep(args: argparse.Namespace) -> int:
    words = getattr(args, "words", None)
    if words is None:
        return _sweep_gridspec(args)
    from batchrun.sweeps.notation import expand_command
    from batchrun.sweeps.notation.expansion import default_name

    expansion = expand_command(words)
    if args.count:
        print(expansion.count())
        return 0
    out = args.out or Path(f"{default_name(words)}.runfile")
    count = _write(out, expansion, words, explicit=args.out is not None)
    print(f"batchrun: wrote {out} ({count_of(count, 'command')})")
    return 0


def _sweep_gridspec(args: argparse.Namespace) -> int:
    from batchrun.sweeps.gridspec import default_runfile_path, load_gridspec, write_runfile

    if args.gridspec is None:
        raise UsageError("sweep needs a gridspec (grid.yml) or a command with a sweep ('python train.py --lr={0.1,0.01}')")
    gridspec = load_gridspec(args.gridspec)
    cli_launch.warn_gridspec(args.gridspec, cli_launch.gridspec_warnings(gridspec))
    if args.count:
        print(gridspec.count())
        return 0
    out = args.out or default_runfile_path(args.gridspec)
    count = write_runfile(gridspec, out)
    print(f"batchrun: wrote {out} ({count_of(count, 'command')})")
    return 0


def _name_of(args: argparse.Namespace) -> str:
    from batchrun.sweeps.notation.expansion import default_name

    if args.name is None:
        return default_name(args.words)
    name: str = args.name.removesuffix(".runfile")
    if not name or name.startswith((".", "-")) or not set(name) <= _NAME:
        raise UsageError(f"--name {args.name!r}: a name is letters, digits and _ . + - (not a path), e.g. --name lr-sweep")
    return name


def _cmd_run(args: argparse.Namespace) -> int:
    from batchrun.sweeps.notation import expand_command

    expansion = expand_command(args.words)
    if args.count:
        print(expansion.count())
        return 0
    name = _name_of(args)
    runfile = Path(f"{name}.runfile")
    how = "" if args.name else " (name from the command; --name to choose)"
    if args.dry_run:
        return _dry_run(args, expansion, runfile, how)
    count = _write(runfile, expansion, args.words, explicit=args.name is not None, args=args)
    if not args.quiet:
        print(f"batchrun: {runfile}: {count_of(count, 'line')} from {_notation(expansion.notation)}{how}", flush=True)
    args.runfile = runfile
    return cli_launch.run(args)


def _notation(notation: str) -> str:
    return {"braces": "bash braces", "parallel": "parallel's ::: lists", "hydra": "Hydra's multirun overrides",
            "none": "a command with no sweep"}[notation]


def _dry_run(args: argparse.Namespace, expansion: Any, runfile: Path, how: str) -> int:
    """Print the lines (stdout, as `parallel --dry-run`) and what a launch would do (stderr); write nothing."""
    from batchrun.store.rundir import RunsDir

    runs_dir = RunsDir.for_runfile(runfile, args.accounting_dir, args.state_db_filename)
    keep = runs_dir.path.is_dir()  # records to plan against: keep the lines for the plan
    kept: list[str] = []
    out = sys.stdout
    for line in expansion.lines():
        out.write(line + "\n")
        if keep:
            kept.append(line)
    out.flush()
    sys.stderr.write(f"batchrun: {runfile}: {count_of(expansion.count(), 'line')} from {_notation(expansion.notation)}{how}; "
                     "dry run: nothing written, nothing run\n")
    if keep:
        from batchrun.cli.display import plan_lines
        from batchrun.runfile.file import parse_runfile_text
        from batchrun.status.preview import preview_launch

        shown = preview_launch(parse_runfile_text("".join(line + "\n" for line in kept), runfile), runs_dir, args.mode or "resume")
        for line in plan_lines(shown.plan, shown.total, shown.mode):
            sys.stderr.write(f"batchrun: {runfile}: {line}\n")
    return 0


def _write(out: Path, expansion: Any, words: Sequence[str], explicit: bool, args: argparse.Namespace | None = None) -> int:
    """Write the expansion to `out` after the checks of the module docstring; return how many lines."""
    from batchrun.sweeps.lines import write_lines

    _check_replace(out, expansion, explicit)
    if args is not None:
        _check_not_running(out, args)
    return write_lines(out, expansion.lines(), HEADER + shlex.join(words))


def _recorded_command(out: Path) -> list[str] | None:
    """The command a runfile written by `batchrun run` names on its first line, else None."""
    try:
        with open(out, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().rstrip("\n")
    except OSError:
        return None
    if not first.startswith(HEADER):
        return None
    try:
        return shlex.split(first[len(HEADER) :])
    except ValueError:
        return None


def _check_replace(out: Path, expansion: Any, explicit: bool) -> None:
    from batchrun.errors import BatchrunError
    from batchrun.sweeps.notation import expand_command

    if not out.exists():
        return
    recorded = _recorded_command(out)
    if recorded is None:
        raise UsageError(f"{out} exists and was not written by batchrun run; it is left alone: "
                         f"choose another name{' with --name' if not explicit else ''}, or remove it")
    try:
        before = expand_command(recorded).skeleton
    except BatchrunError:
        before = None
    if before == expansion.skeleton:
        return  # the same sweep, widened or narrowed: rewritten, finished lines keep their records
    if not explicit:
        raise UsageError(f"{out} holds the sweep of another command ({shlex.join(recorded)}); name this one with "
                         f"--name NAME, or give --name {out.stem} to replace it (its records stay in its runs directory)")
    sys.stderr.write(f"batchrun: {out}: replaces the sweep of {shlex.join(recorded)}; its lines keep their records and logs "
                     "(shown as removed by status)\n")


def _check_not_running(runfile: Path, args: argparse.Namespace) -> None:
    from batchrun.store.rundir import RunsDir, launch_holder

    runs_dir = RunsDir.for_runfile(runfile, args.accounting_dir, args.state_db_filename)
    if not runs_dir.path.is_dir():
        return
    pid = launch_holder(runs_dir)
    if pid is not None:
        raise UsageError(f"{runfile}: a launch (pid {pid}) is running it; wait for it (batchrun wait {runfile}) "
                         "or choose another --name; the runfile is left as it is")
