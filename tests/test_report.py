"""`batchrun report`: an HTML file that opens offline, plotly.js beside it (or in it), user text escaped, small for 1,000 runs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import run_batchrun

TRAIN = """\
import sys
import batchrun
args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
lr, seed = float(args["lr"]), int(args["seed"])
if lr > 0.8:
    sys.exit("diverged: lr %s is too high" % lr)
for step in range(20):
    batchrun.log({"loss": 1.0 / (1 + step * lr) + seed / 100 + len(args["opt"]) / 1000}, step=step)
batchrun.log({"<img src=x onerror=window.pwned=2>": 1.0})
"""

HOSTILE = "</script><script>window.pwned=1</script>"


def report_runfile(workdir: Path) -> tuple[Path, int, int]:
    """A launched runfile: a grid of runs with histories, one failed run, and one hostile command.

    Returns the runfile, how many runs there are, and how many have a loss.
    """
    (workdir / "train.py").write_text(TRAIN)
    lines = [f"{sys.executable} train.py --opt={opt} --lr={lr} --seed={seed}" for opt in ("adam", "sgd") for lr in (0.1, 0.3, 0.5) for seed in (1, 2)]
    lines.append(f"{sys.executable} train.py --opt=adam --lr=0.9 --seed=1")
    lines.append(f"{sys.executable} train.py '--opt={HOSTILE}' --lr=0.2 --seed=1")
    runfile = workdir / "exp.runfile"
    runfile.write_text("".join(line + "\n" for line in lines))
    proc = run_batchrun("launch", "exp.runfile", "-j", "2", "-q", cwd=workdir)
    assert proc.returncode == 1, proc.stderr
    return runfile, len(lines), len(lines) - 1


def _data(page: str) -> dict:  # type: ignore[type-arg]
    return json.loads(re.search(r"<script type='application/json' id='batchrun-data'>(.*?)</script>", page, re.S).group(1))  # type: ignore[no-any-return, union-attr]


def test_report_is_small_offline_and_escaped(workdir: Path) -> None:
    _, runs, with_loss = report_runfile(workdir)
    proc = run_batchrun("report", "exp.runfile", "-o", "out.html", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"batchrun: wrote out\.html \(14 runs, \d+ kB; plotly\.js beside it: plotly-[0-9.]+\.min\.js\)\n", proc.stdout), proc.stdout
    page = (workdir / "out.html").read_text()
    # Offline: the one file the page loads is plotly.js, written beside it once; a few runs weigh kilobytes.
    sources = re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=['\"]?([^'\" >]+)", page)
    assert len(sources) == 1 and re.fullmatch(r"plotly-[0-9.]+\.min\.js", sources[0]) and (workdir / sources[0]).stat().st_size > 1_000_000
    assert len(page) < 200_000 and "Plotly.newPlot" in page
    # The hostile command and metric name are text, never markup: five script elements, all ours.
    assert page.count("<script") == 5 and HOSTILE not in page
    assert "<img src=x" not in page
    assert "\\u003c/script\\u003e\\u003cscript\\u003ewindow.pwned=1" in page  # in the JSON document, escaped
    data = _data(page)
    doc = data["doc"]
    assert doc["title"] == "exp.runfile" and doc["metric"] == "loss" and doc["goal"] == "min"
    assert [(p["name"], p["kind"]) for p in doc["params"]] == [("opt", "category"), ("lr", "linear"), ("seed", "int")]
    assert doc["params"][0]["categories"] == [HOSTILE, "adam", "sgd"]  # plain text to the page, \u003c-escaped in it
    assert len(doc["rows"]) == runs
    loss = doc["columns"].index("loss")
    assert sum(1 for row in doc["rows"] if row[loss] is not None) == with_loss
    # Histories of the best runs, best first, thinned; groups over the seed; importance from the finished runs.
    curves = data["histories"]["loss"]["curves"]
    assert len(curves) == with_loss and all(len(c["x"]) == 20 for c in curves.values())
    groups = data["groups"]["seed|loss"]
    assert groups["params"] == ["opt", "lr"] and groups["groups"][0]["n"] == 2 and groups["groups"][0]["curve"]["x"] == list(range(20))
    assert [g["mean"] for g in groups["groups"]] == sorted(g["mean"] for g in groups["groups"])
    assert data["importance"]["loss"]["runs"] == with_loss and {p["name"] for p in data["importance"]["loss"]["params"]} == {"opt", "lr", "seed"}
    # The failed run, with the end of its err.log.
    assert "Failed runs (1)" in page and "diverged: lr 0.9 is too high" in page
    # Again: plotly.js is not written twice.
    mtime = (workdir / sources[0]).stat().st_mtime_ns
    assert run_batchrun("report", "exp.runfile", "-o", "out2.html", cwd=workdir).returncode == 0
    assert (workdir / sources[0]).stat().st_mtime_ns == mtime


def test_report_embed_is_one_file(workdir: Path) -> None:
    report_runfile(workdir)
    proc = run_batchrun("report", "exp.runfile", "--embed", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"batchrun: wrote report\.html \(14 runs, \d\.\d MB\)\n", proc.stdout), proc.stdout
    page = (workdir / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert len(page) > 1_000_000 and not list(workdir.glob("plotly-*.js"))


def test_report_of_a_runs_directory_is_named_and_drawn_by_its_gridspec(workdir: Path) -> None:
    (workdir / "job.sh").write_text('for a in "$@"; do case $a in --lr=*) echo "{\\"loss\\": ${a#--lr=}}" >> "$BATCHRUN_METRICS";; esac; done\n')
    (workdir / "wbayes.yml").write_text(
        "program: job.sh\nmethod: random\nrun_cap: 12\ncommand:\n  - sh\n  - ${program}\n  - ${args}\nmetric: {name: loss, goal: maximize}\n"
        "parameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n  seed: {value: 1}\n"
        "  layers: {values: [1, 2, 3]}\n  opt: {values: [adam, sgd]}\n"
    )
    assert run_batchrun("launch", "wbayes.yml", "-q", "-j", "2", cwd=workdir).returncode == 0
    assert run_batchrun("report", "runs/wbayes", "-o", "r.html", cwd=workdir).returncode == 0
    page = (workdir / "r.html").read_text()
    doc = _data(page)["doc"]
    assert "<title>wbayes.yml: batchrun report</title>" in page and doc["title"] == "wbayes.yml"
    # The spec's distributions give the axes: lr log, layers integer, opt categories, the constant seed no axis at all.
    kinds = {p["name"]: p["kind"] for p in doc["params"]}
    assert kinds == {"lr": "log", "seed": "constant", "layers": "int", "opt": "category"}
    assert doc["metric"] == "loss" and doc["goal"] == "max"
    assert [m["log"] for m in doc["metrics"]] == [True]  # values from 1e-4 to 0.1


def test_report_metric_choice(workdir: Path) -> None:
    report_runfile(workdir)
    proc = run_batchrun("report", "exp.runfile", "--metric", "lr", cwd=workdir)
    assert proc.returncode == 2 and proc.stderr.startswith("batchrun: error: --metric lr: no such metric in exp.runfile (metrics: loss, ") and proc.stderr.count("\n") == 1
    proc = run_batchrun("report", "exp.runfile", "--metric", "loss:max", "-o", "max.html", cwd=workdir)
    assert proc.returncode == 0
    data = _data((workdir / "max.html").read_text())
    assert data["doc"]["goal"] == "max" and data["doc"]["metric"] == "loss"
    loss = data["doc"]["columns"].index("loss")
    best = max((row for row in data["doc"]["rows"] if row[loss] is not None), key=lambda row: row[loss])
    assert best[0] == 2 and best[1] in data["histories"]["loss"]["curves"]


def test_gridspec_metric_is_the_default(workdir: Path) -> None:
    (workdir / "job.sh").write_text('echo "{\\"a\\": $1, \\"b\\": $((10 - $1))}" >> "$BATCHRUN_METRICS"\n')
    (workdir / "g.yml").write_text("program: sh job.sh\nmetric:\n  name: b\n  goal: maximize\nparameters:\n  x:\n    values: [1, 2, 3]\n")
    (workdir / "job.sh").write_text('echo "{\\"a\\": 1, \\"b\\": ${1#--x=}}" >> "$BATCHRUN_METRICS"\n')
    assert run_batchrun("launch", "g.yml", "-q", cwd=workdir).returncode == 0
    assert run_batchrun("report", "g.yml", cwd=workdir).returncode == 0
    page = (workdir / "report.html").read_text()
    assert "Best b (max): <b>3</b> at line 3 (x=3)" in page


def test_missing_extra_is_one_line(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    report_runfile(workdir)
    fake = tmp_path_factory.mktemp("noplotly")
    (fake / "plotly").mkdir()
    (fake / "plotly" / "__init__.py").write_text("raise ImportError('No module named plotly')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(fake)}
    proc = run_batchrun("report", "exp.runfile", cwd=workdir, env=env)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "batchrun: error: batchrun report needs plotly: pip install 'batchrun[report]'\n"
    assert not (workdir / "report.html").exists()


@pytest.mark.slow
def test_a_thousand_runs_stay_under_1_mb(workdir: Path) -> None:
    def line(x: int) -> str:
        history = f'for i in $(seq 1 200); do echo "{{\\"loss\\": $(( (i * 37 + {x}) % 1000 )).$i, \\"acc\\": 0.$i}}"; done >> "$BATCHRUN_METRICS"'
        return f": --x={x} --y={x % 7} --opt={'ab'[x % 2]} ; {history}\n"

    (workdir / "big.runfile").write_text("".join(line(x) for x in range(1000)))
    assert run_batchrun("launch", "big.runfile", "-j", "4", "-q", cwd=workdir, timeout=600).returncode == 0
    proc = run_batchrun("report", "big.runfile", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    page = (workdir / "report.html").read_bytes()
    assert len(page) < 1_000_000
    assert len(_data(page.decode())["doc"]["rows"]) == 1000


# The CLI with the report's bounds lowered: a page of 4 runs (and the best of each metric) for a runfile of 14.
_SAMPLED = "import sys; from batchrun.results import reportdata; reportdata.ROWS, reportdata.BEST_KEPT = 4, 1; from batchrun.cli.app import main; sys.exit(main(sys.argv[1:]))"


def _section(page: str, start: str, end: str) -> str:
    return page[page.index(start) : page.index(end, page.index(start))]


def test_report_past_its_bound_shows_a_sample_and_says_so_with_counts_failures_and_usage_exact(workdir: Path) -> None:
    import subprocess

    _, runs, _ = report_runfile(workdir)
    full = run_batchrun("report", "exp.runfile", "-o", "full.html", cwd=workdir)
    sampled = subprocess.run([sys.executable, "-c", _SAMPLED, "report", "exp.runfile", "-o", "sampled.html"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0 and sampled.returncode == 0, full.stderr + sampled.stderr
    assert sampled.stdout.startswith(f"batchrun: wrote sampled.html ({runs} runs, ")
    whole, part = (workdir / "full.html").read_text(), (workdir / "sampled.html").read_text()
    assert "id='sampled'" not in whole
    note = _section(part, "<p class='br-note sampled'", "</p>")
    assert f"This sweep has {runs} runs" in note and "every 4th run in runfile order, and the best 1 of each" in note and "batchrun results exp.runfile" in note
    # The rows: lines 1, 5, 9, 13 (every 4th) and the best loss (the lowest lr and seed, line 5 or another).
    doc = _data(part)["doc"]
    lines = [row[doc["columns"].index("line")] for row in doc["rows"]]
    assert lines[:1] == [1] and {1, 5, 9, 13} <= set(lines) and len(lines) <= 4 + 2
    # Exact whatever the sample: the counts (as status counts them), the best run, the failed runs, what the runs used.
    status = json.loads(run_batchrun("status", "exp.runfile", "--json", cwd=workdir).stdout)
    assert doc["counts"] == _data(whole)["doc"]["counts"] == {"succeeded": runs - 1, "failed": 1}
    assert {state: count for state, count in status["counts"].items() if count} == doc["counts"]
    for start, end in (("<p class='counts'", "</p>"), ("<p class='best'>", "</p>"), ("<h2>Failed runs", "<script"), ("<h2>What the runs used", "</table>")):
        if start in whole:
            assert _section(part, start, end) == _section(whole, start, end), start
    assert "Failed runs (1)" in part and "<p class='best'>" in part


def test_a_streamed_read_of_a_gridspec_is_judged_by_its_metric(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from batchrun.results.reportdata import _chosen
    from batchrun.store.rundir import RunsDir
    from batchrun.store.target import Target

    spec = tmp_path / "grid.yml"
    spec.write_text("program: echo\nmetric: {name: acc, goal: maximize}\nparameters:\n  a: {values: [1, 2]}\n")
    target = Target(spec, RunsDir(tmp_path / "runs" / "grid"), tmp_path / "grid.runfile", spec)
    assert _chosen(SimpleNamespace(metric_names=["loss", "acc"]), target, None, None) == ("acc", "max")
    assert _chosen(SimpleNamespace(metric_names=["loss"]), target, None, None) == ("loss", "min")
    assert _chosen(SimpleNamespace(metric_names=["loss"]), Target(spec, target.runs_dir, target.runfile), None, None) == ("loss", "min")
