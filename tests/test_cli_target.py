"""The arguments several commands share: the target parser and durations."""

from __future__ import annotations

import argparse

import pytest

from batchrun.cli.target import duration, duration_or_zero, target_parser


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("1d", 86400)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds
    assert duration_or_zero(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1", "nan", "", "1x", "h", "5q"])
def test_bad_durations_are_refused_by_both(text: str) -> None:
    for parse in (duration, duration_or_zero):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a duration"):
            parse(text)


def test_zero_is_a_duration_only_where_it_means_something() -> None:
    assert duration_or_zero("0") == 0 and duration_or_zero("0s") == 0
    with pytest.raises(argparse.ArgumentTypeError):
        duration("0")


def test_the_target_parser_names_the_runs_directory() -> None:
    args = argparse.ArgumentParser(parents=[target_parser()]).parse_args(["exp.runfile", "--accounting-dir", "d"])
    assert (str(args.target), str(args.accounting_dir), args.state_db_filename) == ("exp.runfile", "d", "metadata.json")
