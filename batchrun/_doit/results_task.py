"""`results_task`: a doit task that gathers a sweep's results into results.csv and report.html.

    from batchrun.dodo import DOIT_CONFIG, results_task, sweep_tasks

    task_grid_sweep, task_grid = sweep_tasks("grid.yml")

    def task_results():
        return results_task("grid.yml", after="grid", over=["seed"])

After every point of `grid` has run, `doit` writes `results.csv` (one row
per run, as `batchrun results grid.yml --csv`), `report.html` (as
`batchrun report grid.yml`) and prints the results table (with `over`, as
`batchrun results grid.yml --over seed`). Without the report extra
(plotly), the report is left out with a one-line hint and the rest is done.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["results_task"]


def results_task(
    target: str | Path,
    *,
    after: str | Sequence[str] = (),
    csv: str | Path | None = "results.csv",
    report: str | Path | None = "report.html",
    over: Sequence[str] = (),
    metric: str | None = None,
    scrape: Sequence[str] = (),
    show: bool = True,
) -> dict[str, Any]:
    """A doit task dict; `after` names the task(s) it waits for (the sweep's runs)."""
    targets = [str(path) for path in (csv, report) if path is not None]

    def gather() -> None:
        _gather(Path(target), csv, report, list(over), metric, list(scrape), show)

    return {
        "actions": [gather],
        "task_dep": [after] if isinstance(after, str) else list(after),
        "targets": targets,
        # The runs' metrics are not files doit tracks: gather each time (it takes a moment).
        "uptodate": [False],
        "verbosity": 2,
        "doc": f"gather the results of {target} into {', '.join(targets) or 'a table'}",
    }


def _gather(target: Path, csv: str | Path | None, report: str | Path | None, over: list[str], metric: str | None, scrape: list[str], show: bool) -> None:
    from batchrun.atomic import write_atomic
    from batchrun.metrics.scrape import parse_scrape
    from batchrun.results.table import group_over, read_results
    from batchrun.results.tables import warn_skipped, write_csv, write_table
    from batchrun.store.target import resolve_target

    results = read_results(resolve_target(target), [parse_scrape(text) for text in scrape], keep_history=report is not None)
    warn_skipped(results.skipped.lines())
    rows = results.rows()
    params, metrics = results.parameter_names, results.metric_names
    wrote = []
    if csv is not None:
        text = io.StringIO()
        write_csv(text, rows, params, metrics, grouped=False)
        write_atomic(Path(csv), text.getvalue())
        wrote.append(str(csv))
    if report is not None:
        try:
            import plotly  # noqa: F401 - the report extra
        except ImportError:
            sys.stderr.write(f"batchrun: {report} not written: it needs plotly: pip install 'batchrun[report]'\n")
        else:
            from batchrun.results.report import write_report

            # plotly.js beside the report, once, as `batchrun report` writes it: a report of a few runs weighs kilobytes.
            write_report(results, Path(report), metric=metric)
            wrote.append(str(report))
    if show:
        if over:
            write_table(sys.stdout, group_over(rows, over, params, metrics), [p for p in params if p not in over], metrics, grouped=True)
        else:
            write_table(sys.stdout, rows, params, metrics, grouped=False)
    print(f"batchrun: {len(rows)} runs of {target} -> {', '.join(wrote) or 'nothing written'}")
