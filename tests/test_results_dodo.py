"""`batchrun.dodo.results_task`: after a sweep run by plain doit, results.csv, report.html and the table."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DODO = textwrap.dedent(
    """
    from batchrun.dodo import DOIT_CONFIG, results_task, sweep_tasks

    task_g_sweep, task_g = sweep_tasks("g.yml")

    def task_results():
        return results_task("g.yml", after="g", over=["seed"])
    """
)
GRID = "program: sh job.sh\nparameters:\n  x:\n    values: [1, 2]\n  seed:\n    values: [1, 2, 3]\n"
# loss = x * 10 + seed: means over seeds 12 and 22, sample std 1.
JOB = 'x=${1#--x=}; seed=${2#--seed=}; echo "{\\"loss\\": $((x * 10 + seed))}" >> "$BATCHRUN_METRICS"\n'


def _doit(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", "-n", "2"], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def _project(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "g.yml").write_text(GRID)
    (tmp_path / "job.sh").write_text(JOB)
    return tmp_path


def test_results_task_writes_csv_report_and_prints_the_table(tmp_path: Path) -> None:
    proc = _doit(_project(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "batchrun: 6 runs of g.yml -> results.csv, report.html"
    assert [line.split() for line in lines[-4:-1]] == [["x", "runs", "loss"], ["1", "3", "12", "±", "1"], ["2", "3", "22", "±", "1"]]
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert [(row["x"], row["seed"], row["loss"]) for row in rows] == [(str(x), str(s), str(x * 10 + s)) for x in (1, 2) for s in (1, 2, 3)]
    assert "Plotly.newPlot" in (tmp_path / "report.html").read_text()


def test_without_the_report_extra_the_rest_is_done(tmp_path: Path) -> None:
    fake = tmp_path / "noplotly"
    (fake / "plotly").mkdir(parents=True)
    (fake / "plotly" / "__init__.py").write_text("raise ImportError('No module named plotly')\n")
    project = _project(tmp_path / "p")
    proc = _doit(project, env={**os.environ, "PYTHONPATH": str(fake)})
    assert proc.returncode == 0, proc.stderr
    assert "batchrun: report.html not written: it needs plotly: pip install 'batchrun[report]'" in proc.stderr
    assert proc.stdout.splitlines()[-1] == "batchrun: 6 runs of g.yml -> results.csv"
    assert not (project / "report.html").exists() and (project / "results.csv").exists()
