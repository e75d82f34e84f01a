"""The arguments several commands share: which runs directory they read, durations and counts.

`status`, `logs`, `failed`, `plan`, `results`, `report`, `kill`, `stop` and
`wait` all name their runfile, gridspec or runs directory the same way, with
the original tool's options for a runs directory kept elsewhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from batchrun.store.records import STATES
from batchrun.store.rundir import DEFAULT_METADATA_NAME
from batchrun.store.target import Target, resolve_target

__all__ = ["add_state_option", "duration", "duration_or_zero", "int_at_least", "states_of", "target_of", "target_parser"]

# How every command names its target in its usage line.
TARGET_METAVAR = "RUNFILE|GRIDSPEC|RUNS_DIR"


def target_parser() -> argparse.ArgumentParser:
    """A parent parser (`parents=[...]`) with the target and its runs-directory options."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("target", type=Path, metavar=TARGET_METAVAR, help="a runfile, a gridspec (its runfile <name>.runfile here), or a runs directory")
    where.add_argument("--accounting_dir", "--accounting-dir", dest="accounting_dir", type=Path, default=None, metavar="DIR", help="the runs directory the launch was given with --accounting_dir")
    where.add_argument("--state_db_filename", "--state-db-filename", dest="state_db_filename", default=DEFAULT_METADATA_NAME, metavar="NAME", help="name of the metadata file (default metadata.json)")
    return where


def _states(text: str) -> list[str]:
    states = [part.strip().lower() for part in text.split(",") if part.strip()]
    for state in states:
        if state not in STATES:
            raise argparse.ArgumentTypeError(f"unknown state {state!r}; choose from {', '.join(STATES)}")
    return states


def add_state_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--state failed,timeout` (or repeated): one syntax for every command that filters by state."""
    parser.add_argument("--state", type=_states, action="append", default=None, metavar="STATE[,STATE]", help=f"{what} in these states (comma-separated or repeated): {', '.join(STATES)}")


def states_of(args: argparse.Namespace) -> list[str]:
    """The states `--state` named, in order, or [] for all."""
    return [state for group in args.state or [] for state in group]


def target_of(args: argparse.Namespace) -> Target:
    """The target a command parsed with `target_parser` names, resolved to its runs directory."""
    return resolve_target(args.target, args.accounting_dir, args.state_db_filename)


# Units of a duration; a bare number is seconds.
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """`90` (seconds), `45s`, `30m`, `2h`, `1h30m`, `1.5h`: more than zero (`launch --timeout`)."""
    return _parse_duration(text, allow_zero=False)


def duration_or_zero(text: str) -> float:
    """A duration, where 0 is meaningful too (`wait --timeout 0`: look once)."""
    return _parse_duration(text, allow_zero=True)


def _parse_duration(text: str, allow_zero: bool) -> float:
    rest = text.strip().lower()
    total = 0.0
    parts = 0
    if rest and rest[-1].isdigit():
        rest += "s"
    number = ""
    for char in rest:
        if char.isdigit() or char == ".":
            number += char
        elif char in _DURATION_UNITS and number:
            try:
                total += float(number) * _DURATION_UNITS[char]
            except ValueError:
                break
            number = ""
            parts += 1
        else:
            break
    else:
        if not number and parts and (total > 0 or allow_zero):
            return total
    raise argparse.ArgumentTypeError(f"expected a duration like 90, 30m, 2h or 1h30m, not {text!r}")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, not {text!r}")
        return value

    return parse
