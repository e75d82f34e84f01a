"""`method: bayes` specs through the CLI: what is refused before a launch, and searches with zip, when and exclude launched for real."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchrun.runfile.file import load_runfile
from batchrun.store.journal import Journal
from batchrun.sweeps.bayes import BayesSpec
from batchrun.sweeps.gridspec import load_gridspec
from tests.conftest import batchrun_cmd, wait_for

RunCli = Callable[..., tuple[int, str, str]]
SPACE = "parameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n  layers: {values: [1, 2, 3]}\n"


def test_sweep_on_a_bayes_spec_says_it_needs_results_and_a_launch(workdir: Path, run_cli: RunCli) -> None:
    (workdir / "spec.yml").write_text("program: train.py\nmethod: bayes\nmetric: {name: val_loss, goal: minimize}\n"
                                      "run_cap: 60\n" + SPACE + "early_terminate: {type: hyperband, min_iter: 3, eta: 3}\n")
    code, out, err = run_cli("sweep", "spec.yml")
    assert (code, out) == (2, "")
    assert err == ("batchrun: error: spec.yml: method 'bayes' picks each run from the results of finished runs, "
                   "so it needs results and a launch: run 'batchrun launch spec.yml', not 'batchrun sweep'\n")
    assert not list(workdir.glob("*.runfile")) and not list(workdir.glob(".*.tmp"))
    assert run_cli("sweep", "spec.yml", "--count") == (0, "60\n", "")


@pytest.mark.parametrize(("head", "message"), [
    ("method: bayes\nrun_cap: 5\n",
     "spec.yml:1: method 'bayes' needs 'metric: {name: ..., goal: minimize}' (or maximize): the logged value to optimize"),
    ("method: bayes\nmetric: {name: val_loss, goal: minimize}\n", "spec.yml:1: method 'bayes' needs 'run_cap', the number of runs to finish"),
    ("method: bayes\nrun_cap: 5\nmetric: {name: val_loss, goal: up}\n",
     "spec.yml:3: method 'bayes' needs 'metric.goal': minimize or maximize, not the text 'up'"),
])
def test_bayes_without_metric_or_run_cap_is_one_line_exit_2(workdir: Path, run_cli: RunCli, head: str, message: str) -> None:
    (workdir / "spec.yml").write_text(head + "program: train.py\n" + SPACE)
    for args in (("sweep", "spec.yml"), ("launch", "spec.yml")):
        code, out, err = run_cli(*args)
        assert (code, err) == (2, f"batchrun: error: {message}\n"), args


# ---------------------------------------------------------------- zip, when and exclude, launched for real

REPO = Path(__file__).resolve().parent.parent
FAULTS = REPO / "tests" / "data" / "faults"
# A tiny objective: notes its arguments in ran.txt (one line per run, under a lock: runs start at once), logs a loss.
OBJECTIVE = '''\
import argparse, fcntl, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--optimizer")
p.add_argument("--momentum", type=float)
p.add_argument("--nesterov")
p.add_argument("--lr", type=float)
p.add_argument("--warmup", type=int)
p.add_argument("--layers", type=int)
a = p.parse_args()
with open("ran.txt", "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(float(os.environ.get("SLOW", "0")))
loss = a.lr * a.layers + (1 - a.momentum if a.optimizer == "sgd" else 0.3) + a.warmup / 1000
with open(os.environ["BATCHRUN_METRICS"], "a") as f:
    f.write(json.dumps({"loss": loss}) + "\\n")
'''
# optimizer, momentum and nesterov only where optimizer is sgd, lr and warmup zipped, an exclude.
COMPOSED = ("program: objective.py\nmethod: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 8\nseed: 11\n"
            + (REPO / "tests" / "data" / "composed" / "space.yml").read_text())
ROWS = {0.1: 100, 0.01: 200, 0.001: 300}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRFAULT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), str(REPO), env.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def _run(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=300, env=_env(**extra))


def _check_the_search(workdir: Path) -> list[dict[str, Any]]:
    """Exactly run_cap runs finished, each point once, each a point of the spec: return the points."""
    spec = BayesSpec(load_gridspec(workdir / "spec.yml"))
    jobs = load_runfile(workdir / "spec.runfile").jobs
    journal = Journal(workdir / "runs" / "spec")
    journal.load()
    assert len(jobs) == 8 and Counter(str(journal.records[job.job_id].state) for job in jobs) == Counter(succeeded=8)
    ran = (workdir / "ran.txt").read_text().splitlines()
    assert len(ran) == 8 and len(set(ran)) == 8, "a point ran twice"
    points = []
    for job in jobs:
        params = spec.params_of(job.command)
        assert params is not None and spec.command(params) == job.command, job.command
        assert ("momentum" in params) == ("nesterov" in params) == (params["optimizer"] == "sgd"), job.command
        assert ROWS[params["lr"]] == params["warmup"], job.command
        assert not (params["layers"] > 4 and params["lr"] > 0.01), job.command
        points.append(params)
    return points


def test_a_bayes_search_with_when_zip_and_exclude_runs_to_run_cap(workdir: Path) -> None:
    (workdir / "objective.py").write_text(OBJECTIVE)
    (workdir / "spec.yml").write_text(COMPOSED)
    result = _run("launch", "spec.yml", "-j", "3", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bayes search (TPE) to minimize loss: 0 of run_cap 8 runs finished, 0 to finish, 8 more to propose" in result.stdout
    points = _check_the_search(workdir)
    assert {p["optimizer"] for p in points} == {"sgd", "adam"}, "both shapes of point ran"
    table = _run("results", "spec.yml", "--csv", cwd=workdir)
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert len(rows) == 8 and list(rows[0])[3:10] == ["layers", "lr", "momentum", "nesterov", "optimizer", "warmup", "loss"]
    for row in rows:
        assert (row["momentum"] == "") == (row["nesterov"] == "") == (row["optimizer"] == "adam"), row  # blank where it does not apply
    again = _run("launch", "spec.yml", "-j", "3", cwd=workdir)
    assert again.returncode == 0 and "8 of run_cap 8 runs finished, 0 to finish, 0 more to propose" in again.stdout
    assert len((workdir / "ran.txt").read_text().splitlines()) == 8


@pytest.mark.parametrize("kill", ["after the 2nd append", "while runs run"])
def test_a_composed_bayes_search_killed_mid_launch_ends_with_run_cap(workdir: Path, kill: str) -> None:
    (workdir / "objective.py").write_text(OBJECTIVE)
    (workdir / "spec.yml").write_text(COMPOSED)
    if kill == "after the 2nd append":
        first = _run("launch", "spec.yml", "-j", "2", cwd=workdir, BRFAULT_KILL_AFTER_APPEND="2")
        assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    else:
        launch = subprocess.Popen(batchrun_cmd("launch", "spec.yml", "-j", "2"), cwd=workdir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=_env(SLOW="1"))
        ran = workdir / "ran.txt"
        wait_for(lambda: ran.exists() and len(ran.read_text().splitlines()) >= 3, timeout=120, what="three runs to start")
        launch.send_signal(signal.SIGKILL)
        launch.wait()
    before = load_runfile(workdir / "spec.runfile").jobs
    assert before and len(before) < 8
    again = _run("launch", "spec.yml", "-j", "2", cwd=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert load_runfile(workdir / "spec.runfile").jobs[: len(before)] == before, "the points appended before the kill were kept"
    _check_the_search(workdir)


@pytest.mark.parametrize(("edit", "message"), [
    (("optimizer == 'sgd'", "optimiser == 'sgd'"),
     "spec.yml:8: parameter 'momentum': when \"optimiser == 'sgd'\": unknown parameter 'optimiser' (did you mean 'optimizer'?)"),
    (("warmup: {values: [100, 200, 300]}", "warmup: {values: [100, 200]}"),
     "spec.yml:13: 'zip': the parameters of a group need as many values each, not lr: 3, warmup: 2"),
    (("program: objective.py", "command: [objective.py, '--m=${momentum}', '${args}']"),
     "spec.yml:8: parameter 'momentum': a conditional parameter cannot be placed with ${momentum}: it has no value where it does not apply"),
])
def test_bad_compositions_of_a_bayes_spec_are_one_line_exit_2(workdir: Path, run_cli: RunCli, edit: tuple[str, str], message: str) -> None:
    (workdir / "spec.yml").write_text(COMPOSED.replace(*edit))
    for args in (("launch", "spec.yml"), ("plan", "spec.yml"), ("sweep", "spec.yml", "--count")):
        code, out, err = run_cli(*args)
        assert (code, out, err) == (2, "", f"batchrun: error: {message}\n"), args
    assert not (workdir / "spec.runfile").exists() and not (workdir / "runs").exists()
