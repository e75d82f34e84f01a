"""`batchrun report`: a self-contained HTML file, user text escaped, small for 1,000 runs."""

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


def test_report_is_self_contained_and_escaped(workdir: Path) -> None:
    _, runs, with_loss = report_runfile(workdir)
    proc = run_batchrun("report", "exp.runfile", "-o", "out.html", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"batchrun: wrote out\.html \(14 runs, \d+\.\d MB\)\n", proc.stdout), proc.stdout
    page = (workdir / "out.html").read_text()
    # Offline: no fetched script, style or font; plotly's code is in the page.
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    # The hostile command and metric name are text, never markup: three script elements, all ours.
    assert page.count("<script") == 3 and HOSTILE not in page
    assert "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;" in page  # in the table, escaped
    data = json.loads(re.search(r"<script type='application/json' id='batchrun-data'>(.*?)</script>", page, re.S).group(1))  # type: ignore[union-attr]
    assert data["metric"] == "loss" and data["goal"] == "min"
    assert data["parcoords"]["count"] == with_loss
    assert [d["label"] for d in data["parcoords"]["dimensions"]] == ["opt", "lr", "seed", "loss"]
    assert data["parcoords"]["dimensions"][0]["ticktext"] == [HOSTILE, "adam", "sgd"]  # plain text to plotly, \u003c-escaped in the page
    assert [len(s["y"]) for s in data["scatter"]] == [with_loss] * 3
    assert len(data["history"]) == with_loss and data["history"][0]["name"].startswith("line 11: ")  # best first
    assert data["bestSoFar"]["best"] == sorted(data["bestSoFar"]["best"], reverse=True)
    assert page.count("<tr class='s-") == runs
    # The failed run, with the end of its err.log.
    assert "Failed runs (1)" in page and "diverged: lr 0.9 is too high" in page


def test_report_metric_choice(workdir: Path) -> None:
    report_runfile(workdir)
    proc = run_batchrun("report", "exp.runfile", "--metric", "lr", cwd=workdir)
    assert proc.returncode == 2 and proc.stderr.startswith("batchrun: error: --metric lr: no such metric in exp.runfile (metrics: loss, ") and proc.stderr.count("\n") == 1
    proc = run_batchrun("report", "exp.runfile", "--metric", "loss:max", "-o", "max.html", cwd=workdir)
    assert proc.returncode == 0
    data = json.loads(re.search(r"id='batchrun-data'>(.*?)</script>", (workdir / "max.html").read_text(), re.S).group(1))  # type: ignore[union-attr]
    assert data["goal"] == "max" and data["history"][0]["name"].startswith("line 2: ")


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
def test_a_thousand_runs_stay_under_10_mb(workdir: Path) -> None:
    def line(x: int) -> str:
        history = f'for i in $(seq 1 200); do echo "{{\\"loss\\": $(( (i * 37 + {x}) % 1000 )).$i, \\"acc\\": 0.$i}}"; done >> "$BATCHRUN_METRICS"'
        return f": --x={x} --y={x % 7} --opt={'ab'[x % 2]} ; {history}\n"

    (workdir / "big.runfile").write_text("".join(line(x) for x in range(1000)))
    assert run_batchrun("launch", "big.runfile", "-j", "4", "-q", cwd=workdir, timeout=600).returncode == 0
    proc = run_batchrun("report", "big.runfile", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    page = (workdir / "report.html").read_bytes()
    assert len(page) < 10_000_000
    assert page.count(b"<tr class='s-succeeded'>") == 1000
