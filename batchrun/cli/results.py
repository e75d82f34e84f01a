"""`batchrun results` and `batchrun report`: parse, read the results, print (or write the report).

The reading is `results.table.read_results`; the HTML is `results.report.build_report`,
imported only by `report` (it needs the `report` extra, plotly).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from batchrun.cli.resultsstream import answer_best, check_over, check_sort, json_row, streamed_results
from batchrun.cli.target import add_state_option, states_of, target_of, target_parser
from batchrun.cli.words import count
from batchrun.errors import UsageError
from batchrun.metrics.file import AGGREGATES
from batchrun.results.tables import warn_skipped, write_csv, write_table

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("results", "report")


def _scrape(text: str) -> Any:
    from batchrun.metrics.scrape import parse_scrape

    try:
        return parse_scrape(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _best(text: str) -> tuple[str, str]:
    name, _, goal = text.rpartition(":") if text.endswith((":max", ":min")) else (text, "", "min")
    if not name:
        raise argparse.ArgumentTypeError(f"expected METRIC or METRIC:max, not {text!r}")
    return name, goal


def add_parsers(subparsers: Any) -> None:
    """Add `results` and `report` to the CLI's subparsers."""
    where = target_parser()
    where.add_argument("--scrape", type=_scrape, action="append", default=[], metavar="NAME=REGEX", help="also read metric NAME from each job's out.log: every match of REGEX (its group) is one value (repeatable)")
    where.add_argument("--agg", choices=AGGREGATES, default="last", help="a metric's history as one number: last (default; a summary value wins), min, max or mean")

    results = subparsers.add_parser(
        "results",
        parents=[where],
        help="table every run's parameters and metrics; the best run; means over seeds",
        description=(
            "One row per job: line, id, state, parameters, each metric (logged with batchrun.log, appended to "
            "$BATCHRUN_METRICS, or scraped from out.log) and runtime. Works while a launch runs. "
            "Example: batchrun results grid.yml --over seed --sort loss"
        ),
    )
    results.add_argument("--sort", metavar="[-]COLUMN", default=None, help="sort by a metric or parameter; -COLUMN for descending; runs without a value go last")
    results.add_argument("--top", type=_positive, default=None, metavar="K", help="show only the first K rows (after --sort)")
    add_state_option(results, "only jobs")
    results.add_argument("--best", type=_best, default=None, metavar="METRIC[:max]", help="print the run with the lowest METRIC (highest with :max): its command, id and log directory")
    results.add_argument("--over", action="append", default=[], metavar="PARAM", help="collapse repeats over PARAM (e.g. seed): mean ± std and count per combination of the other parameters (repeatable)")
    output = results.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the rows as a JSON list of objects")
    output.add_argument("--csv", action="store_true", help="print the rows as CSV")

    report = subparsers.add_parser(
        "report",
        parents=[where],
        help="write one self-contained HTML report: table, parallel coordinates, metric plots, failures",
        description=(
            "Write an HTML file that opens from disk with no network: counts by state, a sortable, filterable table, a "
            "parallel coordinates plot coloured by the metric, the metric against each parameter, parameter importance, "
            "history curves, the best value so far, means over seeds, and the failed runs with the end of their err.log; "
            "plotly.js is written once beside it (plotly-VERSION.min.js) unless --embed. "
            "Needs the report extra: pip install 'batchrun[report]'. "
            "Example: batchrun report grid.yml --metric loss -o report.html"
        ),
    )
    report.add_argument("-o", "--out", type=Path, default=Path("report.html"), metavar="FILE", help="where to write it (default report.html)")
    report.add_argument("--metric", default=None, metavar="METRIC[:max]", help="the metric to colour and rank by (default: the gridspec's metric.name, else the first metric); :max when higher is better")
    report.add_argument("--embed", action="store_true", help="put plotly.js in the page (a file to send alone, a few MB) instead of writing it once beside the report")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run `results` or `report`; errors are raised as `BatchrunError`s for `cli.main`."""
    try:
        return _cmd_results(args) if args.command == "results" else _cmd_report(args)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _read(args: argparse.Namespace, keep_history: bool = False, warn: bool = True) -> Any:
    from batchrun.results.table import read_results

    target = target_of(args)
    results = read_results(target, args.scrape, keep_history)
    if warn:  # else already said, by a streamed read that left the rest to this one
        warn_skipped(results.skipped.lines())
    return results


def _cmd_results(args: argparse.Namespace) -> int:
    from batchrun.results.table import without_gc

    with without_gc():  # the rows and the table are as many small objects as the reading
        return _results(args)


def _results(args: argparse.Namespace) -> int:
    from batchrun.results.table import best_row, group_over, sort_rows
    target = target_of(args)
    streamed = streamed_results(args, target)
    if streamed:
        return 0
    warned = streamed is False
    results = _read(args, warn=not warned)
    rows = results.rows(args.agg)
    if args.state:
        wanted = set(states_of(args))
        rows = [row for row in rows if row["state"] in wanted]
    metrics = results.metric_names
    params = results.parameter_names
    check_over(args, params)
    if args.over:
        rows = group_over(rows, args.over, params, metrics)
        params = [name for name in params if name not in args.over]
    columns = set(rows[0]) if rows else set(params) | set(metrics)
    if args.sort is not None:
        check_sort(args.sort, columns, metrics)
        rows = sort_rows(rows, args.sort)
    if args.best is not None:
        answer_best(args, metrics, params, bool(args.over), lambda metric, goal: best_row(rows, metric, goal))
        return 0
    if args.top is not None:
        rows = rows[: args.top]
    out = sys.stdout
    if args.json:
        out.write(json.dumps([json_row(row) for row in rows], indent=1) + "\n")
    elif args.csv:
        write_csv(out, rows, params, metrics, bool(args.over))
    else:
        write_table(out, rows, params, metrics, bool(args.over))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        import plotly  # noqa: F401 - only to tell a missing extra apart from a bug
    except ImportError:
        raise UsageError("batchrun report needs plotly: pip install 'batchrun[report]'") from None
    from batchrun.results.report import write_report
    from batchrun.results.reportdata import read_report_data

    metric, goal = (None, None) if args.metric is None else _best(args.metric)
    # Past `reportdata.ROWS` runs the page shows a sample and says so; a long runfile is read a window at a time.
    data = read_report_data(target_of(args), args.scrape, args.agg, metric, goal)
    warn_skipped(data.skipped.lines())
    try:
        report = write_report(data, args.out, embed=args.embed)
    except OSError as err:
        raise UsageError(f"{err.filename or args.out}: cannot write: {err.strerror}") from err
    beside = f"; plotly.js beside it: {report.plotly_path.name}" if report.plotly_path is not None else ""
    print(f"batchrun: wrote {args.out} ({count(data.total, 'run')}, {_size(report.size)}{beside})")
    return 0


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
