"""`batchrun report`: one self-contained HTML file of a sweep's results.

It opens from disk with no network and no server: plotly's JavaScript is
embedded (plotly is the `report` extra and only this module imports it), the
data travels as one JSON document inside the page. Everything a user wrote
(commands, parameter values, metric names, err.log lines) reaches the page
only as escaped text: in HTML through `html.escape`, in the JSON document
with `<`, `>` and `&` as JSON escapes (so `</script>` cannot close it), and
in plot titles and axis labels with `<` and `&` as entities (plotly reads a
few HTML tags there; parallel coordinates ticks are plain text already). Size stays small: history curves are drawn for the best
`_HISTORY_RUNS` runs only, each thinned to `_CURVE_POINTS` points.

Content: counts by state, the best run, a parallel coordinates plot of the
parameters and the metric coloured by it, the metric against each
parameter, history curves (best runs first), the best value so far against
run order, a sortable table of every run, and the failed runs with the end
of their err.log.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from batchrun.results.table import Results, best_row
from batchrun.store.records import State

__all__ = ["build_report"]

# History curves for this many runs (the best), each thinned to this many points: readable, and 1,000 runs stay small.
_HISTORY_RUNS = 30
_CURVE_POINTS = 200
# Lines of err.log shown per failed run, and failed runs shown.
_ERR_LINES = 15
_ERR_BYTES = 8192
_FAILED_SHOWN = 50

# Stopped runs (hyperband) are not failures: they are judged by what they logged.
_FAILED_STATES = (State.FAILED, State.TIMEOUT, State.KILLED, State.INTERRUPTED)


def build_report(results: Results, metric: str | None = None, goal: str | None = None, agg: str = "last") -> str:
    """The report's HTML text; `metric` defaults to the gridspec's metric.name, else the first metric."""
    from plotly.offline import get_plotlyjs  # the report extra

    if metric is None:
        metric = results.goal_metric if results.goal_metric in results.metric_names else (results.metric_names[0] if results.metric_names else None)
        if goal is None and metric is not None and metric == results.goal_metric:
            goal = results.goal
    goal = goal or "min"
    rows = results.rows(agg)
    params = results.parameter_names
    data = {
        "metric": _label(metric) if metric else None,
        "goal": goal,
        "parcoords": _parcoords(rows, params, metric),
        "scatter": _scatters(rows, params, metric),
        "history": _histories(results, rows, metric, goal),
        "bestSoFar": _best_so_far(results, rows, metric, goal),
    }
    name = str(results.target.given)
    counts = results.status.counts()
    best = best_row(rows, metric, goal) if metric else None
    parts = [
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(name)}: batchrun report</title>",
        f"<style>{_CSS}</style>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>{_e(name)}</h1>",
        f"<p class='counts'>{len(rows)} runs: " + ", ".join(f"<span class='s-{_e(state)}'>{count} {_e(state)}</span>" for state, count in counts.items() if count) + "</p>",
        _best_html(best, metric, goal, params),
    ]
    if metric:
        parts.append(f"<h2>Parameters and {_e(metric)}</h2><div id='parcoords' class='plot'></div>")
        parts.append(f"<h2>{_e(metric)} against each parameter</h2><div id='scatters'></div>")
        if data["history"]:
            parts.append(f"<h2>{_e(metric)} during each run (best {len(data['history'])} first)</h2><div id='history' class='plot'></div>")
        parts.append(f"<h2>Best {_e(metric)} so far, in run order</h2><div id='bestsofar' class='plot'></div>")
    else:
        parts.append("<p>No run reported a metric yet (batchrun.log, $BATCHRUN_METRICS, or --scrape).</p>")
    parts.append(_table_html(rows, params, results.metric_names))
    parts.append(_failed_html(results))
    parts.append(f"<script type='application/json' id='batchrun-data'>{_json_for_script(data)}</script>")
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _label(text: Any) -> str:
    """Text for a plot label: plotly reads `<b>`, `<br>`, `&amp;`...; entities keep it literal."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _parcoords(rows: list[dict[str, Any]], params: list[str], metric: str | None) -> dict[str, Any] | None:
    if metric is None:
        return None
    plotted = [row for row in rows if _number(row.get(metric))]
    dimensions = []
    for name in params:
        values = [row.get(name) for row in plotted]
        if all(_number(v) for v in values):
            dimensions.append({"label": _label(name), "values": values})
        else:
            ticks = sorted({_fmt(v) for v in values})
            index = {t: i for i, t in enumerate(ticks)}
            dimensions.append({"label": _label(name), "values": [index[_fmt(v)] for v in values], "tickvals": list(range(len(ticks))), "ticktext": ticks})
    dimensions.append({"label": _label(metric), "values": [row[metric] for row in plotted]})
    return {"dimensions": dimensions, "color": [row[metric] for row in plotted], "count": len(plotted)}


def _scatters(rows: list[dict[str, Any]], params: list[str], metric: str | None) -> list[dict[str, Any]]:
    if metric is None:
        return []
    plotted = [row for row in rows if _number(row.get(metric))]
    out = []
    for name in params:
        values = [row.get(name) for row in plotted]
        numeric = all(_number(v) for v in values)
        out.append({
            "param": _label(name),
            "x": values if numeric else [_label(_fmt(v)) for v in values],
            "y": [row[metric] for row in plotted],
            "text": [f"line {row['line']}" for row in plotted],
        })
    return out


def _histories(results: Results, rows: list[dict[str, Any]], metric: str | None, goal: str) -> list[dict[str, Any]]:
    if metric is None:
        return []
    ranked = [(row[metric], run) for row, run in zip(rows, results.runs, strict=True) if _number(row.get(metric)) and metric in run.metrics.series and run.metrics.series[metric].count > 1]
    ranked.sort(key=lambda pair: pair[0], reverse=goal == "max")
    out = []
    for value, run in ranked[:_HISTORY_RUNS]:
        series = run.metrics.series[metric]
        stride = max(1, math.ceil(len(series.values) / _CURVE_POINTS))
        out.append({"name": _label(f"line {run.job.line}: {_fmt(value)}"), "x": series.steps[::stride], "y": series.values[::stride]})
    return out


def _best_so_far(results: Results, rows: list[dict[str, Any]], metric: str | None, goal: str) -> dict[str, Any] | None:
    if metric is None:
        return None
    started = [(run.job.record.start, row) for row, run in zip(rows, results.runs, strict=True) if run.job.record is not None and run.job.record.start is not None and _number(row.get(metric))]
    started.sort(key=lambda pair: pair[0])
    values = [row[metric] for _, row in started]
    best: list[float] = []
    for value in values:
        best.append(value if not best else (min(best[-1], value) if goal == "min" else max(best[-1], value)))
    return {"x": list(range(1, len(values) + 1)), "y": values, "best": best, "text": [f"line {row['line']}" for _, row in started]}


def _best_html(best: dict[str, Any] | None, metric: str | None, goal: str, params: list[str]) -> str:
    if best is None or metric is None:
        return ""
    setting = ", ".join(f"{_e(name)}={_e(_fmt(best.get(name)))}" for name in params)
    return (
        f"<p class='best'>Best {_e(metric)} ({_e(goal)}): <b>{_e(_fmt(best[metric]))}</b> at line {_e(best['line'])} ({setting})<br>"
        f"<code>{_e(best['command'])}</code><br>log dir <code>{_e(best['log_dir'])}</code></p>"
    )


def _table_html(rows: list[dict[str, Any]], params: list[str], metrics: list[str]) -> str:
    columns = ["line", "job_id", "state", *params, *metrics, "runtime", "command", "log_dir"]
    head = "".join(f"<th title='click to sort'>{_e(name)}</th>" for name in columns)
    body = []
    for row in rows:
        cells = []
        for name in columns:
            value = row.get(name)
            sort_key = f" data-v='{value!r}'" if _number(value) else ""
            text = str(value)[:8] if name == "job_id" else (f"{value:.2f}s" if name == "runtime" and value is not None else _fmt(value))
            cells.append(f"<td{sort_key}>{_e(text)}</td>")
        body.append(f"<tr class='s-{_e(row['state'])}'>{''.join(cells)}</tr>")
    return f"<h2>Every run</h2><table id='runs'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _failed_html(results: Results) -> str:
    failed = [run for run in results.runs if run.job.category in _FAILED_STATES]
    if not failed:
        return ""
    parts = [f"<h2>Failed runs ({len(failed)})</h2>"]
    for run in failed[:_FAILED_SHOWN]:
        rec = run.job.record
        status = f", exit {rec.status}" if rec is not None and rec.status is not None else ""
        parts.append(f"<div class='failed'><p>line {_e(run.job.line)} <b>{_e(run.job.category)}</b>{_e(status)}: <code>{_e(run.job.command)}</code></p><pre>{_e(_tail(run.log_dir + '/err.log'))}</pre></div>")
    if len(failed) > _FAILED_SHOWN:
        parts.append(f"<p>... and {len(failed) - _FAILED_SHOWN} more: batchrun status {_e(results.target.given)} --state failed</p>")
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


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
.plot{width:100%;height:460px}#scatters{display:flex;flex-wrap:wrap}#scatters>div{width:420px;height:340px}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{cursor:pointer;background:#f0f0f0;position:sticky;top:0}td[data-v]{text-align:right}
.s-failed,.s-timeout,.s-killed{background:#fde8e8}.s-stopped{background:#eeeeee}.s-interrupted{background:#fff4d6}.s-running{background:#e6f0ff}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;max-height:20em}code{word-break:break-all}
"""

# Reads the JSON document and draws; no user text is ever put into the page as HTML from here.
_JS = """
(function () {
  var data = JSON.parse(document.getElementById('batchrun-data').textContent);
  var cfg = {displaylogo: false, responsive: true};
  var scale = data.goal === 'min' ? 'Viridis' : 'Viridis';
  if (data.parcoords) {
    Plotly.newPlot('parcoords', [{type: 'parcoords', dimensions: data.parcoords.dimensions,
      line: {color: data.parcoords.color, colorscale: scale, reversescale: data.goal === 'min', showscale: true}}],
      {margin: {l: 60, r: 60, t: 40, b: 30}}, cfg);
  }
  var box = document.getElementById('scatters');
  (data.scatter || []).forEach(function (s, i) {
    var div = document.createElement('div');
    div.id = 'scatter-' + i;
    div.className = 'scatter';
    box.appendChild(div);
    Plotly.newPlot(div, [{type: 'scatter', mode: 'markers', x: s.x, y: s.y, text: s.text,
      marker: {color: s.y, colorscale: scale, reversescale: data.goal === 'min'}}],
      {xaxis: {title: {text: s.param}}, yaxis: {title: {text: data.metric}}, margin: {t: 20}}, cfg);
  });
  if (data.history && data.history.length) {
    Plotly.newPlot('history', data.history.map(function (h) {
      return {type: 'scatter', mode: 'lines', name: h.name, x: h.x, y: h.y};
    }), {xaxis: {title: {text: 'step'}}, yaxis: {title: {text: data.metric}}}, cfg);
  }
  if (data.bestSoFar) {
    var b = data.bestSoFar;
    Plotly.newPlot('bestsofar', [
      {type: 'scatter', mode: 'markers', name: 'each run', x: b.x, y: b.y, text: b.text},
      {type: 'scatter', mode: 'lines', name: 'best so far', x: b.x, y: b.best, line: {shape: 'hv'}}
    ], {xaxis: {title: {text: 'run order (by start time)'}}, yaxis: {title: {text: data.metric}}}, cfg);
  }
  var table = document.getElementById('runs');
  table.querySelectorAll('th').forEach(function (th, col) {
    var asc = true;
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        var u = x.dataset.v, v = y.dataset.v;
        if (u !== undefined && v !== undefined) { return (parseFloat(u) - parseFloat(v)) * (asc ? 1 : -1); }
        if (u === undefined && v !== undefined) { return 1; }
        if (v === undefined && u !== undefined) { return -1; }
        return x.textContent.localeCompare(y.textContent) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
      asc = !asc;
    });
  });
  window.batchrunReportReady = true;
})();
"""
