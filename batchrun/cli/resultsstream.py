"""`batchrun results` of a runfile, a window of jobs at a time (`results.stream`): a million jobs in flat memory.

Every form: the plain table, `--state`, `--sort` (the key column held
compactly, `results.order`), `--top`, `--best`, `--json`, `--csv` and
`--over` (per group accumulators, `results.groups`, sorted as the rows are), each to the byte what `cli/results` makes of every row held.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, islice
from typing import IO, Any

from batchrun.cli.target import states_of
from batchrun.cli.words import count
from batchrun.errors import UsageError
from batchrun.results.tables import format_value, mean_text, warn_skipped, write_csv_windows, write_table_windows
from batchrun.store.target import Target

__all__ = ["answer_best", "check_over", "check_sort", "json_row", "streamed_results", "write_best"]

Windows = Callable[[], Iterator[list[dict[str, Any]]]]


def streamed_results(args: argparse.Namespace, target: Target) -> bool | None:
    """Print the results as `cli/results` does; False, having printed nothing but what reading skipped, when the held rows must do it;
    None, having printed nothing, when the target cannot be streamed (`status.beside.read_streamable`)."""
    from batchrun.results.order import sorted_positions
    from batchrun.results.stream import read_streamed
    from batchrun.status.beside import read_streamable

    # The CSV and JSON (and --best's JSON) show what each run used; the table none of it.
    usage = (args.json or args.csv) and not args.over
    status = read_streamable(target, usage=usage, indexes=False)
    if status is None:
        return None
    streamed = read_streamed(target, args.scrape, usage=usage, status=status)
    warn_skipped(streamed.skipped.lines())
    states = states_of(args) if args.state else []
    params, metrics = streamed.parameter_names, streamed.metric_names
    rows: Windows = lambda: streamed.windows(args.agg, states)  # noqa: E731
    if args.over:
        check_over(args, params)
        rows, params = _grouped(args, streamed, states)
    elif args.sort is not None:
        any_row = any(window for window in streamed.windows(args.agg, states))
        from batchrun.results.table import COLUMNS

        check_sort(args.sort, {*COLUMNS, *params, *metrics} if any_row else {*params, *metrics}, metrics)
        order = sorted_positions(streamed.positioned(args.agg, states), args.sort)
        if order is None:
            return False  # not numbers: sorted as the held rows are

        def rows() -> Iterator[list[dict[str, Any]]]:
            positions = order()
            while chunk := list(islice(positions, 2048)):
                yield streamed.rows_at(chunk, args.agg)

    if args.best is not None:
        from batchrun.results.table import best_row

        answer_best(args, metrics, params, bool(args.over), lambda metric, goal: best_row(chain.from_iterable(rows()), metric, goal))
        return True
    shown = rows if args.top is None else _top(rows, args.top)
    out = sys.stdout
    if args.json:
        _write_json(out, shown)
    elif args.csv:
        write_csv_windows(out, shown(), params, metrics, bool(args.over))
    else:
        write_table_windows(out, shown, params, metrics, bool(args.over))
    return True


def check_over(args: argparse.Namespace, params: Sequence[str]) -> None:
    """`results --over NAME`: refused when NAME is not a parameter."""
    for name in args.over:
        if name not in params:
            raise UsageError(f"--over {name}: not a parameter of {args.target} (parameters: {', '.join(params) or 'none'})")


def _grouped(args: argparse.Namespace, streamed: Any, states: Sequence[str]) -> tuple[Windows, list[str]]:
    """`--over`: the groups' rows (`results.groups`), sorted when asked (the groups held: one row each), and the parameters kept."""
    from batchrun.results.groups import Groups
    from batchrun.results.order import sorted_positions
    from batchrun.results.table import sort_rows

    metrics = streamed.metric_names
    groups = Groups(args.over, streamed.parameter_names, metrics)
    for window in streamed.windows(args.agg, states):
        groups.add(window)
    if args.sort is None:
        return groups.windows, groups.kept
    columns = {*groups.kept, "runs", *(f"{m}{suffix}" for m in metrics for suffix in ("", "_std", "_n"))} if len(groups) else {*groups.kept, *metrics}
    check_sort(args.sort, columns, metrics)
    order = sorted_positions(groups.positioned(), args.sort)
    if order is None:  # not all numbers nor all texts: the groups' rows held, as `cli/results` sorts them
        held = sort_rows([row for window in groups.windows() for row in window], args.sort)
        return (lambda: iter([held])), groups.kept

    def rows() -> Iterator[list[dict[str, Any]]]:
        positions = order()
        while chunk := list(islice(positions, 2048)):
            yield [groups.row(g) for g in chunk]

    return rows, groups.kept


def _top(rows: Windows, top: int) -> Windows:
    def first() -> Iterator[list[dict[str, Any]]]:
        left = top
        for window in rows():
            if left <= 0:
                return
            yield window[:left]
            left -= len(window)

    return first


def check_sort(sort: str, columns: set[str], metrics: Sequence[str]) -> None:
    """`results --sort [-]NAME`: refused when no column (or metric) has that name."""
    name = sort.lstrip("-")
    if name not in columns and name not in metrics:
        raise UsageError(f"--sort {sort}: no column {name!r} (metrics: {', '.join(metrics) or 'none'})")


def answer_best(
    args: argparse.Namespace, metrics: Sequence[str], params: Sequence[str], over: bool, find: Callable[[str, str], dict[str, Any] | None]
) -> None:
    """`results --best METRIC[:GOAL]`: the run `find` gives for the metric and goal, printed (a table, or JSON with --json)."""
    metric, goal = args.best
    if metric not in metrics:
        raise UsageError(f"--best {metric}: no such metric in {args.target} (metrics: {', '.join(metrics) or 'none'})")
    best = find(metric, goal)
    if best is None:
        raise UsageError(f"--best {metric}: no run has a value of {metric} yet")
    if args.json:
        print(json.dumps(json_row(best), indent=2))
    else:
        write_best(sys.stdout, best, metric, goal, params, over)


def _write_json(out: IO[str], rows: Windows) -> None:
    """`json.dumps(rows, indent=1)`, a row at a time: each one's text indented one level more, as the list's items are."""
    first = True
    for window in rows():
        for row in window:
            out.write(("[\n " if first else ",\n ") + json.dumps(json_row(row), indent=1).replace("\n", "\n "))
            first = False
        # json's encoder with an indent is Python closures that refer to each other: a cycle a row, and
        # `results` runs with the collector off (`table.without_gc`). 2.8 GB at a million rows, without this.
        gc.collect(0)
    out.write("[]\n" if first else "\n]\n")


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    # Non-finite numbers never reach rows (they are skipped on reading); this keeps the JSON strict anyway.
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in row.items()}


def write_best(out: IO[str], best: dict[str, Any], metric: str, goal: str, params: Sequence[str], grouped: bool) -> None:
    value = format_value(best[metric])
    setting = " ".join(f"{name}={format_value(best.get(name))}" for name in params)
    if grouped:
        out.write(f"best {metric} {mean_text(best, metric).rsplit(' (', 1)[0]} ({goal}, mean of {count(best[f'{metric}_n'], 'run')}): {setting}\n")
        return
    out.write(f"best {metric} {value} ({goal}): line {best['line']}, job {best['job_id']}, {best['state']}\n")
    out.write(f"  command: {best['command']}\n")
    out.write(f"  log dir: {best['log_dir']}\n")
