"""`batchrun report`: one HTML file of a sweep's results, drawn as `batchrun ui` draws a sweep.

It opens from disk with no network and no server. The page is the sweep
document of `results.plots` (rows, axes, the metric) plus what a live page
would fetch: the histories of the best `_HISTORY_RUNS` runs of each metric,
the importance of parameters, and the groups over a seed; the same
`static/sweep.js` draws it. What the page holds is read by
`results.reportdata` (past 10,000 runs, a sample of the rows, said so in
the page; counts, failures and usage of every run). plotly's JavaScript (the `report` extra; only
this module and `batchrun ui` touch it) is written once per directory beside
the report, as plotly's own `write_html(include_plotlyjs="directory")`
does, so a report of a few runs weighs kilobytes; `embed` puts it in the page
instead, for a file sent alone (a few MB).

Everything a user wrote (commands, parameter values, metric names, err.log
lines) reaches the page only as escaped text: in HTML through `html.escape`,
in the JSON document with `<`, `>` and `&` as JSON escapes (so `</script>`
cannot close it), and in the page through textContent (see sweep.js).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from batchrun.results import reportdata
from batchrun.results.importance import parameter_importance
from batchrun.results.plots import curve, group_document, history_axes, rows_document
from batchrun.results.reportdata import HISTORY_METRICS, ReportData, report_data
from batchrun.results.table import Results
from batchrun.results.tables import format_duration, format_value
from batchrun.results.targets import sweep_target, target_spec, target_title
from batchrun.results.usage import UsageRow

__all__ = ["Report", "build_report", "plotly_js", "static_text", "write_report"]

# History curves for this many runs of each metric (the best; `reportdata.HISTORY_METRICS` metrics).
_HISTORY_RUNS = 30
# Lines of err.log shown per failed run.
_ERR_LINES = 15
_ERR_BYTES = 8192


@dataclass(frozen=True)
class Report:
    """A report written: its size, and the plotly file beside it (None when embedded)."""

    path: Path
    size: int
    plotly_path: Path | None


def static_text(name: str) -> str:
    """One of the files in `results/static/` (the sweep page's JavaScript and CSS)."""
    return files("batchrun.results").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def plotly_js() -> tuple[str, str]:
    """plotly.js as the installed plotly ships it: (its version, its text)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version  # the report extra

    return get_plotlyjs_version(), get_plotlyjs()


def write_report(
    source: Results | ReportData, out: Path, metric: str | None = None, goal: str | None = None, agg: str = "last", embed: bool = False,
) -> Report:
    """Write the report to `out` and, unless `embed`, plotly.js beside it (once: kept while it is the same version).

    `source`: the runs read whole, or `reportdata.read_report_data`'s (then
    `metric`, `goal` and `agg` are its own).

    Raises:
        OSError: a file cannot be written.
        UsageError: `metric` is not one of the sweep's.
    """
    from batchrun.atomic import write_atomic

    data = report_data(source, agg, metric, goal) if isinstance(source, Results) else source
    plotly_path = None
    if embed:
        text = build_report(data)
    else:
        version, js = plotly_js()
        plotly_path = out.parent / f"plotly-{version}.min.js"
        if not plotly_path.exists() or plotly_path.stat().st_size != len(js.encode()):
            write_atomic(plotly_path, js)
        text = build_report(data, plotly_src=plotly_path.name)
    write_atomic(out, text)
    return Report(out, len(text.encode()), plotly_path)


def build_report(data: ReportData, plotly_src: str | None = None) -> str:
    """The report's HTML text, of the metric `data` was read for.

    `plotly_src`: a path, relative to the report, of plotly.js; None puts
    plotly.js in the page.
    """
    target = data.target
    if target.gridspec is None and target.runfile is None:
        target = sweep_target(target.runs_dir.path)  # a runs directory: the gridspec or runfile beside its runs/ names it and gives the axes
    title = target_title(target)
    metric, goal = data.metric, data.goal
    doc = rows_document(title, data.counts, data.parameter_names, data.metric_names, (metric, goal), [dict(row) for row in data.rows], target_spec(target))
    swept = [p["name"] for p in doc["params"] if p["kind"] != "constant"]
    extras = _extras(data, doc, swept)
    if plotly_src is None:
        plotly_tag = f"<script>{plotly_js()[1]}</script>"
    else:
        plotly_tag = f"<script src='{_e(plotly_src)}'></script>"
    parts = [
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}: batchrun report</title>",
        f"<style>{static_text('sweep.css')}</style>",
        plotly_tag,
        "</head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='br-note'>{_e(data.target.runs_dir.path)}</p>",
        _counts_html(doc["counts"]),
        *([_sampled_html(data)] if data.stride > 1 else []),
        _best_html(data.best, metric, goal, swept),
        "<div id='sweep'></div>",
        _failed_html(data),
        _usage_html(data.usage),
        f"<script type='application/json' id='batchrun-data'>{_json_for_script({'doc': doc, **extras})}</script>",
        f"<script>{static_text('parcoords.js')}</script>",
        f"<script>{static_text('sweep.js')}</script>",
        f"<script>{_BOOT}</script></body></html>\n",
    ]
    return "\n".join(parts)


def _extras(data: ReportData, doc: dict[str, Any], swept: list[str]) -> dict[str, Any]:
    """What a live page fetches, computed once: histories of the best runs, importance, groups over a seed."""
    goal = doc["goal"]
    rows = data.rows
    histories: dict[str, Any] = {}
    importance: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    seed = next((name for name in swept if "seed" in name.lower()), None)
    for metric in data.metric_names[:HISTORY_METRICS]:
        metric_goal = goal if metric == doc["metric"] else "min"
        ranked = [row for row in rows if isinstance(row.get(metric), (int, float))]
        ranked.sort(key=lambda row: row[metric], reverse=metric_goal == "max")
        curves = {}
        for row in ranked:
            series = data.history(row["job_id"], metric)
            if series is not None and series.count > 1:
                curves[row["job_id"]] = curve(series)
                if len(curves) == _HISTORY_RUNS:
                    break
        histories[metric] = history_axes(curves)
        importance[metric] = parameter_importance(doc["columns"], doc["rows"], doc["params"], metric, metric_goal)
        if seed is not None:

            def series_of(ids: list[str], metric: str = metric) -> dict[str, Any]:
                found = {job_id: data.history(job_id, metric) for job_id in ids}
                return {job_id: series for job_id, series in found.items() if series is not None}

            groups[f"{seed}|{metric}"] = group_document(rows, [seed], swept, metric, metric_goal, series_of)
    return {"histories": histories, "importance": importance, "groups": groups}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _counts_html(counts: dict[str, int]) -> str:
    # As sweep.js writes them (it keeps them there): the page reads right before any script ran.
    spans = "".join(f"<span class='st s-{_e(state)}'>{count} {_e(state)}</span>" for state, count in counts.items())
    return f"<p class='counts' id='counts'>{sum(counts.values())} runs: {spans}</p>"


def _best_html(best: dict[str, Any] | None, metric: str | None, goal: str, params: list[str]) -> str:
    if best is None or metric is None:
        return "" if metric else "<p>No run reported a metric yet (batchrun.log, $BATCHRUN_METRICS, or --scrape).</p>"
    setting = ", ".join(f"{_e(name)}={_e(format_value(best.get(name)))}" for name in params)
    return (
        f"<p class='best'>Best {_e(metric)} ({_e(goal)}): <b>{_e(format_value(best[metric]))}</b> at line {_e(best['line'])} ({setting})<br>"
        f"{_command_html(best['command'])}<br>log dir <code>{_e(best['log_dir'])}</code></p>"
    )


def _command_html(command: str) -> str:
    # sweep.js splits it into words that wrap between flags only (_BOOT), as everywhere else.
    return f"<code class='cmd-text'>{_e(command)}</code>"


def _sampled_html(data: ReportData) -> str:
    """Says plainly that the table and plots show some of the runs, which ones, and what is still of all of them."""
    return (
        f"<p class='br-note sampled' id='sampled'>This sweep has {data.total:,} runs: too many for one page. The table and plots show "
        f"{len(data.rows):,} of them: every {_ordinal(data.stride)} run in runfile order, and the best {reportdata.BEST_KEPT} of each of the first "
        f"{HISTORY_METRICS} metrics. The counts, the best run, the failed runs and what the runs used are of all {data.total:,} runs; "
        f"<code>batchrun results {_e(data.target.given)}</code> lists every one.</p>"
    )


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _failed_html(data: ReportData) -> str:
    if not data.failed_count:
        return ""
    parts = [f"<h2>Failed runs ({data.failed_count})</h2>"]
    for run in data.failed:
        status = f", exit {run.status}" if run.status is not None else ""
        parts.append(f"<div class='failed'><p>line {_e(run.line)} <b>{_e(run.category)}</b>{_e(status)}: {_command_html(run.command)}</p><pre>{_e(_tail(os.path.join(run.log_dir, 'err.log')))}</pre></div>")
    if data.failed_count > len(data.failed):
        parts.append(f"<p>... and {data.failed_count - len(data.failed)} more: batchrun status {_e(data.target.given)} --state failed</p>")
    return "\n".join(parts)


def _usage_html(usage: list[UsageRow]) -> str:
    """What the runs used, by value of each swept parameter: which settings are expensive (most telling parameter first)."""
    if not usage:
        return ""
    parts = [
        "<h2>What the runs used, by parameter</h2>",
        "<table class='usage'><tr><th>parameter</th><th>value</th><th>runs</th><th>mean peak memory</th><th>mean CPU</th><th>mean runtime</th></tr>",
    ]
    for row in usage:
        parts.append(
            f"<tr><td>{_e(row.parameter)}</td><td>{_e(format_value(row.value))}</td><td>{row.runs}</td><td>{row.memory_mb:.0f} MB</td>"
            f"<td>{_e(format_duration(row.cpu_s))}</td><td>{_e(format_duration(row.runtime_s))}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _ERR_BYTES))
            data = f.read()
    except OSError:
        return "(no err.log)"
    lines = data.decode("utf-8", "replace").splitlines()[-_ERR_LINES:]
    return "\n".join(lines) if lines else "(err.log is empty)"


# Reads the JSON document and hands it to sweep.js with what a live page would fetch (Plotly.newPlot draws).
_BOOT = """
(function () {
  var data = JSON.parse(document.getElementById('batchrun-data').textContent);
  var seedGroups = Object.keys(data.groups);
  var view = BatchrunSweep.create(document.getElementById('sweep'), {
    lazy: false,
    counts: document.getElementById('counts'),
    historyNote: 'the best 30 runs of each metric are in this report (batchrun ui shows any);',
    histories: function (ids, metric) { return data.histories[metric] || {curves: {}, log: false}; },
    importance: function (metric) { return data.importance[metric] || {error: 'not in this report'}; },
    groups: function (over, metric) {
      return data.groups[over + '|' + metric] || {error: 'this report has groups over ' + (seedGroups.length ? seedGroups[0].split('|')[0] : 'no seed') + '; batchrun ui groups over any parameter'};
    },
    onReady: function () { window.batchrunReportReady = true; }
  });
  view.setDoc(data.doc);
  document.querySelectorAll('.cmd-text').forEach(function (node) { node.replaceWith(BatchrunSweep.commandNode(node.textContent)); });
})();
"""
