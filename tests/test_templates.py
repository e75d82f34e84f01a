"""dodo_templates/ and examples/: each runs under plain doit and under batchrun launch alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, read_metadata, run_batchrun

RunCli = Callable[..., tuple[int, str, str]]

# template -> (what batchrun launch is given, the runs directory's name)
TEMPLATES = {"runfile": ("experiments.runfile", "experiments"), "sweep": ("grid.yml", "grid"), "pipeline": ("grid.yml", "grid")}


def _states(runs: Path) -> dict[str, str]:
    return {job_id: str(entry["state"]) for job_id, entry in read_metadata(runs).items()}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_template_runs_under_doit_and_launch_alike(tmp_path: Path, template: str) -> None:
    target, runs_name = TEMPLATES[template]
    with_doit, with_launch = tmp_path / "doit", tmp_path / "launch"
    for where in (with_doit, with_launch):
        where.mkdir()
        init = run_batchrun("init", template, cwd=where)
        assert init.returncode == 0, init.stderr
        assert (where / "dodo.py").exists()
    done = subprocess.run([sys.executable, "-m", "doit", "-n", "2"], cwd=with_doit, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    launched = run_batchrun("launch", target, "-j", "2", cwd=with_launch)
    assert launched.returncode == 0, launched.stderr
    doit_states = _states(with_doit / "runs" / runs_name)
    assert doit_states and set(doit_states.values()) == {"succeeded"}
    assert doit_states == _states(with_launch / "runs" / runs_name)
    # And each resumes the other's work: nothing left to run.
    again = run_batchrun("launch", target, cwd=with_doit)
    assert again.returncode == 0 and "0 to run" in again.stdout


@pytest.mark.parametrize("template", ["sweep", "pipeline"])
def test_a_templates_runs_log_a_metric_that_results_shows(tmp_path: Path, template: str) -> None:
    """The templates' train.py logs as batchrun reads metrics: `results` after the template ran shows its loss."""
    assert run_batchrun("init", template, cwd=tmp_path).returncode == 0
    done = subprocess.run([sys.executable, "-m", "doit", "-n", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    results = run_batchrun("results", "grid.yml", "--json", cwd=tmp_path)
    assert results.returncode == 0, results.stderr
    rows = json.loads(results.stdout)
    assert len(rows) == 4 and all(isinstance(row["loss"], float) for row in rows), rows
    if template == "pipeline":  # gathered by results_task, not by hand
        assert "results_task" in (tmp_path / "dodo.py").read_text()
        assert (tmp_path / "results.csv").read_text().splitlines()[0].split(",")[:6] == ["line", "job_id", "state", "lr", "layers", "seed"]
        assert "loss" in (tmp_path / "results.csv").read_text().splitlines()[0].split(",")


def test_init_refuses_to_clobber_a_dodo_py(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text("# mine\n")
    refused = run_batchrun("init", "sweep", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == f"batchrun: error: {tmp_path / 'dodo.py'} exists; use --force to overwrite it\n"
    assert (tmp_path / "dodo.py").read_text() == "# mine\n"
    forced = run_batchrun("init", "sweep", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert "sweep_tasks" in (tmp_path / "dodo.py").read_text()


def test_templates_in_the_repo_are_the_ones_init_writes(tmp_path: Path) -> None:
    for template in TEMPLATES:
        where = tmp_path / template
        where.mkdir()
        assert run_batchrun("init", template, cwd=where).returncode == 0
        for source in (REPO / "dodo_templates" / template).iterdir():
            assert (where / source.name).read_text() == source.read_text()


def test_the_montecarlo_example_sweeps_and_aggregates(tmp_path: Path) -> None:
    example = tmp_path / "montecarlo"
    shutil.copytree(REPO / "examples" / "montecarlo", example)
    done = subprocess.run([sys.executable, "-m", "doit", "-n", "2"], cwd=example, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # It ends with the table averaged over the seeds (3 sample sizes x 2 methods) and what it wrote.
    out = done.stdout.splitlines()
    assert out[-1] == "batchrun: 18 runs of grid.yml -> results.csv, report.html"
    assert out[-8].split() == ["samples", "method", "runs", "abs_error", "estimate", "seconds"]
    assert [line.split()[:3] for line in out[-7:-1]] == [[s, m, "3"] for s in ("1000", "10000", "100000") for m in ("uniform", "stratified")]
    rows = (example / "results.csv").read_text().splitlines()
    assert rows[0].startswith("line,job_id,state,samples,method,seed,abs_error,") and len(rows) == 1 + 18
    assert "Plotly.newPlot" in (example / "report.html").read_text()
    launched = run_batchrun("launch", "pi.runfile", "-j", "2", cwd=example)
    assert launched.returncode == 0, launched.stderr
