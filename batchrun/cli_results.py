"""`batchrun results` and `batchrun report`: parse, read the results, print (or write the report).

The reading is `results.read_results`; the HTML is `report.build_report`,
imported only by `report` (it needs the `report` extra, plotly).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import IO, Any

from batchrun.errors import UsageError
from batchrun.metadata import DEFAULT_METADATA_NAME
from batchrun.metrics_file import AGGREGATES
from batchrun.status import STATES

__all__ = ["COMMANDS", "add_parsers", "format_value", "run", "warn_skipped", "write_csv", "write_table"]

COMMANDS = ("results", "report")
# Columns of the table besides parameters and metrics (command and log_dir are in --json and --csv).
_SHORT_ID = 8


def _state(text: str) -> str:
    state = text.strip().lower()
    if state not in STATES:
        raise argparse.ArgumentTypeError(f"unknown state {state!r}; choose from {', '.join(STATES)}")
    return state


def _scrape(text: str) -> Any:
    from batchrun.scrape import parse_scrape

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
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("target", type=Path, metavar="RUNFILE|GRIDSPEC|RUNS_DIR", help="a runfile, a gridspec (its runfile <name>.runfile here), or a runs directory")
    where.add_argument("--accounting_dir", "--accounting-dir", dest="accounting_dir", type=Path, default=None, metavar="DIR", help="the runs directory the launch was given with --accounting_dir")
    where.add_argument("--state_db_filename", "--state-db-filename", dest="state_db_filename", default=DEFAULT_METADATA_NAME, metavar="NAME", help="name of the metadata file (default metadata.json)")
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
    results.add_argument("--state", type=_state, action="append", default=None, metavar="STATE", help=f"only jobs in this state (repeatable): {', '.join(STATES)}")
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
            "Write an HTML file that opens from disk with no network: counts by state, a sortable table, a "
            "parallel coordinates plot coloured by the metric, the metric against each parameter, history "
            "curves, the best value so far, and the failed runs with the end of their err.log. "
            "Needs the report extra: pip install 'batchrun[report]'. "
            "Example: batchrun report grid.yml --metric loss -o report.html"
        ),
    )
    report.add_argument("-o", "--out", type=Path, default=Path("report.html"), metavar="FILE", help="where to write it (default report.html)")
    report.add_argument("--metric", default=None, metavar="METRIC[:max]", help="the metric to colour and rank by (default: the gridspec's metric.name, else the first metric); :max when higher is better")


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


def _read(args: argparse.Namespace, keep_history: bool = False) -> Any:
    from batchrun.results import read_results
    from batchrun.status import resolve_target

    target = resolve_target(args.target, args.accounting_dir, args.state_db_filename)
    results = read_results(target, args.scrape, keep_history)
    warn_skipped(results.skipped.lines())
    return results


def warn_skipped(lines: list[str]) -> None:
    """What reading skipped, one warning line per reason, on stderr."""
    for line in lines:
        sys.stderr.write(f"batchrun: warning: {line}\n")


def _cmd_results(args: argparse.Namespace) -> int:
    from batchrun.results import best_row, group_over, sort_rows

    results = _read(args)
    rows = results.rows(args.agg)
    if args.state:
        wanted = set(args.state)
        rows = [row for row in rows if row["state"] in wanted]
    metrics = results.metric_names
    params = results.parameter_names
    for name in args.over:
        if name not in params:
            raise UsageError(f"--over {name}: not a parameter of {args.target} (parameters: {', '.join(params) or 'none'})")
    if args.over:
        rows = group_over(rows, args.over, params, metrics)
        params = [name for name in params if name not in args.over]
    columns = set(rows[0]) if rows else set(params) | set(metrics)
    if args.sort is not None:
        name = args.sort.lstrip("-")
        if name not in columns and name not in metrics:
            raise UsageError(f"--sort {args.sort}: no column {name!r} (metrics: {', '.join(metrics) or 'none'})")
        rows = sort_rows(rows, args.sort)
    if args.best is not None:
        metric, goal = args.best
        if metric not in metrics:
            raise UsageError(f"--best {metric}: no such metric in {args.target} (metrics: {', '.join(metrics) or 'none'})")
        best = best_row(rows, metric, goal)
        if best is None:
            raise UsageError(f"--best {metric}: no run has a value of {metric} yet")
        if args.json:
            print(json.dumps(_json_row(best), indent=2))
        else:
            _write_best(sys.stdout, best, metric, goal, params, bool(args.over))
        return 0
    if args.top is not None:
        rows = rows[: args.top]
    out = sys.stdout
    if args.json:
        out.write(json.dumps([_json_row(row) for row in rows], indent=1) + "\n")
    elif args.csv:
        write_csv(out, rows, params, metrics, bool(args.over))
    else:
        write_table(out, rows, params, metrics, bool(args.over))
    return 0


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    # Non-finite numbers never reach rows (they are skipped on reading); this keeps the JSON strict anyway.
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in row.items()}


def format_value(value: Any) -> str:
    """A cell: numbers with 6 significant digits, None as blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _write_best(out: IO[str], best: dict[str, Any], metric: str, goal: str, params: list[str], grouped: bool) -> None:
    value = format_value(best[metric])
    setting = " ".join(f"{name}={format_value(best.get(name))}" for name in params)
    if grouped:
        out.write(f"best {metric} {_mean_text(best, metric).rsplit(' (', 1)[0]} ({goal}, mean of {best[f'{metric}_n']} runs): {setting}\n")
        return
    out.write(f"best {metric} {value} ({goal}): line {best['line']}, job {best['job_id']}, {best['state']}\n")
    out.write(f"  command: {best['command']}\n")
    out.write(f"  log dir: {best['log_dir']}\n")


def write_csv(out: IO[str], rows: list[dict[str, Any]], params: list[str], metrics: list[str], grouped: bool) -> None:
    """Rows as CSV: every column, floats to the last digit (`repr`), None as empty."""
    writer = csv.writer(out, lineterminator="\n")
    if grouped:
        header = [*params, "runs", *(f"{m}{suffix}" for m in metrics for suffix in ("", "_std", "_n"))]
    else:
        header = ["line", "job_id", "state", *params, *metrics, "runtime", "command", "log_dir"]
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row.get(name) is None else (repr(row[name]) if isinstance(row[name], float) else row[name]) for name in header])


def write_table(out: IO[str], rows: list[dict[str, Any]], params: list[str], metrics: list[str], grouped: bool) -> None:
    """Rows as aligned columns (grouped rows: mean ± std (count) per metric)."""
    if grouped:
        header = [*params, "runs", *metrics]
        cells = [
            [*(format_value(row.get(p)) for p in params), str(row["runs"]), *(_mean_text(row, m) for m in metrics)]
            for row in rows
        ]
    else:
        header = ["line", "id", "state", *params, *metrics, "runtime"]
        cells = [
            [format_value(row["line"]), row["job_id"][:_SHORT_ID], row["state"], *(format_value(row.get(p)) for p in params), *(format_value(row.get(m)) for m in metrics), _runtime(row["runtime"])]
            for row in rows
        ]
    widths = [max([len(name), *(len(line[i]) for line in cells)]) for i, name in enumerate(header)]
    # Numbers right-aligned, as in any table of figures; texts left.
    numeric = [all(_is_number_text(line[i]) for line in cells) for i in range(len(header))]
    for line in [header, *cells]:
        out.write("  ".join((cell.rjust(w) if num else cell.ljust(w)) for cell, w, num in zip(line, widths, numeric, strict=True)).rstrip() + "\n")


def _mean_text(row: dict[str, Any], metric: str) -> str:
    if row.get(metric) is None:
        return ""
    # Two significant digits of spread say how far to trust the mean's digits.
    std = row[f"{metric}_std"]
    return f"{format_value(row[metric])} ± {'' if std is None else f'{std:.2g}'} ({row[f'{metric}_n']})"


def _runtime(seconds: float | None) -> str:
    from batchrun.display import format_duration

    if seconds is None:
        return ""
    return f"{seconds:.2f}s" if seconds < 10 else format_duration(seconds)


def _is_number_text(text: str) -> bool:
    if not text:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        import plotly  # noqa: F401 - only to tell a missing extra apart from a bug
    except ImportError:
        raise UsageError("batchrun report needs plotly: pip install 'batchrun[report]'") from None
    from batchrun.metadata import write_atomic
    from batchrun.report import build_report

    results = _read(args, keep_history=True)
    metric, goal = (None, None) if args.metric is None else _best(args.metric)
    if metric is not None and metric not in results.metric_names:
        raise UsageError(f"--metric {metric}: no such metric in {args.target} (metrics: {', '.join(results.metric_names) or 'none'})")
    html = build_report(results, metric=metric, goal=goal, agg=args.agg)
    try:
        write_atomic(args.out, html)
    except OSError as err:
        raise UsageError(f"{args.out}: cannot write: {err.strerror}") from err
    print(f"batchrun: wrote {args.out} ({len(results.runs)} runs, {len(html.encode()) / 1e6:.1f} MB)")
    return 0
