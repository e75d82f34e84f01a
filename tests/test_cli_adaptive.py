"""Bayes search and hyperband through the real CLI: real launches, real jobs, kill -9 at exact instants."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from batchrun.runfile.file import load_runfile
from batchrun.store.journal import Journal
from tests.conftest import batchrun_cmd, wait_for

REPO = Path(__file__).resolve().parent.parent
FAULTS = REPO / "tests" / "data" / "faults"

# A toy training script: logs its loss quickly, notes each run in ran.txt.
# The n-th run to start fails when n is in FAIL_NTH; the loss is lowest near lr 0.01.
TRAIN = '''\
import argparse, fcntl, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--layers", type=int)
p.add_argument("--dropout", type=float, default=0.0)
a = p.parse_args()
with open("ran.txt", "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)  # runs start at once: the count must be this run's own
    f.write(" ".join(sys.argv[1:]) + "\\n")
    f.flush()
    f.seek(0)
    nth = len(f.readlines())
time.sleep(float(os.environ.get("SLOW", "0")))
if str(nth) in os.environ.get("FAIL_NTH", "").split(","):
    sys.exit(1)
with open(os.environ["BATCHRUN_METRICS"], "a") as f:
    for step in range(4):
        loss = (a.lr - 0.01) ** 2 * 1000 + a.layers * 0.1 + a.dropout + 1.0 / (step + 1)
        f.write(json.dumps({"val_loss": loss, "_step": step}) + "\\n")
        f.flush()
        time.sleep(0.02)
'''

SPEC = """\
program: train.py
method: bayes
metric: {name: val_loss, goal: minimize}
run_cap: RUN_CAP
seed: 7
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
  layers: {values: [1, 2, 3]}
  dropout: {distribution: uniform, min: 0, max: 0.5}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRFAULT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _run(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=300, env=_env(**extra))


def _bayes(workdir: Path, run_cap: int) -> Path:
    (workdir / "train.py").write_text(TRAIN)
    spec = workdir / "spec.yml"
    spec.write_text(SPEC.replace("RUN_CAP", str(run_cap)))
    return spec


def _records(workdir: Path, name: str = "spec") -> dict[str, object]:
    journal = Journal(workdir / "runs" / name)
    journal.load()
    return dict(journal.records)


def _finished_states(workdir: Path) -> Counter[str]:
    jobs = load_runfile(workdir / "spec.runfile").jobs
    records = _records(workdir)
    return Counter(str(records[job.job_id].state) for job in jobs if job.job_id in records)  # type: ignore[attr-defined]


def _ran(workdir: Path) -> list[str]:
    path = workdir / "ran.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_a_bayes_sweep_runs_to_exactly_run_cap_and_a_relaunch_adds_nothing(workdir: Path) -> None:
    _bayes(workdir, 7)
    first = _run("launch", "spec.yml", "-j", "3", cwd=workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "bayes search (TPE) to minimize val_loss: 0 of run_cap 7 runs finished" in first.stdout
    jobs = load_runfile(workdir / "spec.runfile").jobs
    assert len(jobs) == 7
    assert _finished_states(workdir) == Counter(succeeded=7)
    ran = _ran(workdir)
    assert len(ran) == 7 and len(set(ran)) == 7, "a point ran twice"
    assert all(json.loads(line)["_step"] >= 0 for job in jobs for line in (workdir / "runs/spec/logs" / job.job_id / "metrics.jsonl").read_text().splitlines())
    again = _run("launch", "spec.yml", "-j", "3", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "7 of run_cap 7 runs finished, 0 to finish, 0 more to propose" in again.stdout
    assert len(load_runfile(workdir / "spec.runfile").jobs) == 7
    assert len(_ran(workdir)) == 7


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_kill_9_after_points_are_appended_loses_and_repeats_nothing(workdir: Path, nth: int) -> None:
    """The launch dies right after the N-th append: its points are on disk, none started.

    Run_cap 6 at -j 2 appends at most 2 points at a time, so there are at least 3 appends.
    """
    _bayes(workdir, 6)
    first = _run("launch", "spec.yml", "-j", "2", cwd=workdir, BRFAULT_KILL_AFTER_APPEND=str(nth))
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    appended = load_runfile(workdir / "spec.runfile").jobs
    assert appended, "the first append is on disk"
    assert not any((workdir / "runs/spec/logs" / job.job_id).exists() for job in appended[-1:]), "the last point started"
    again = _run("launch", "spec.yml", "-j", "2", cwd=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    jobs = load_runfile(workdir / "spec.runfile").jobs
    assert jobs[: len(appended)] == appended, "the points appended before the kill were kept"
    assert len(jobs) == 6
    assert _finished_states(workdir) == Counter(succeeded=6)
    ran = _ran(workdir)
    assert len(ran) == 6 and len(set(ran)) == 6, "a point ran twice"


def test_a_kill_9_while_runs_run_ends_with_run_cap_runs_each_once(workdir: Path) -> None:
    """Killed while the third run sleeps: the relaunch adopts it, and no point runs twice."""
    _bayes(workdir, 6)
    first = subprocess.Popen(batchrun_cmd("launch", "spec.yml", "-j", "2"), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(SLOW="1"))
    wait_for(lambda: len(_ran(workdir)) >= 3, timeout=120, what="three runs to start")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    again = _run("launch", "spec.yml", "-j", "2", cwd=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(load_runfile(workdir / "spec.runfile").jobs) == 6
    assert _finished_states(workdir) == Counter(succeeded=6)
    ran = _ran(workdir)
    assert len(ran) == 6 and len(set(ran)) == 6, "a point ran twice"


def test_failed_runs_are_imputed_and_count_towards_run_cap(workdir: Path) -> None:
    _bayes(workdir, 8)
    result = _run("launch", "spec.yml", "-j", "2", cwd=workdir, FAIL_NTH="2,5")
    assert result.returncode == 1, result.stdout + result.stderr
    states = _finished_states(workdir)
    assert states == Counter(succeeded=6, failed=2), "the search went on past its failed runs, to run_cap"
    ran = _ran(workdir)
    assert len(ran) == 8 and len(set(ran)) == 8
    retry = _run("launch", "spec.yml", "-j", "2", "--retry-failed", cwd=workdir)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert len(load_runfile(workdir / "spec.runfile").jobs) == 8, "the failed points ran again in place, no new ones"
    assert _finished_states(workdir) == Counter(succeeded=8)
    assert len(_ran(workdir)) == 10 and set(_ran(workdir)[8:]) == {ran[1], ran[4]}


def test_a_bayes_dry_run_plan_and_status_say_what_the_search_does(workdir: Path) -> None:
    _bayes(workdir, 5)
    line = "batchrun: spec.yml: bayes search (TPE) to minimize val_loss: {} of run_cap 5 runs finished, 0 to finish, {} more to propose as slots free up\n"
    for args in (("launch", "spec.yml", "--dry-run"), ("plan", "spec.yml")):
        result = _run(*args, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith("0 jobs, 0 to run\n" + line.format(0, 5)), result.stdout
    assert not (workdir / "spec.runfile").exists() and not (workdir / "runs").exists()
    status = _run("status", "spec.yml", cwd=workdir)
    assert (status.returncode, status.stderr) == (2, "batchrun: error: nothing launched yet for spec.yml; run batchrun launch spec.yml\n")
    assert _run("launch", "spec.yml", "-j", "2", cwd=workdir).returncode == 0
    plan = _run("plan", "spec.yml", cwd=workdir)
    assert line.format(5, 0) in plan.stdout and plan.stdout.endswith("nothing to do\n"), plan.stdout
    status = _run("status", "spec.yml", cwd=workdir)
    assert status.returncode == 0 and "5 jobs: 5 succeeded" in status.stdout, status.stdout


def test_a_bayes_launch_without_the_extra_is_one_line_exit_2(workdir: Path) -> None:
    _bayes(workdir, 5)
    fake = workdir / "no_optuna"
    fake.mkdir()
    (fake / "optuna.py").write_text("raise ImportError(\"No module named 'optuna'\")\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join((str(fake), env["PYTHONPATH"]))
    result = subprocess.run(batchrun_cmd("launch", "spec.yml"), cwd=workdir, capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "batchrun: error: method 'bayes' needs Optuna: pip install 'batchrun[bayes]'\n"
    assert not (workdir / "spec.runfile").exists()



# Hyperband: six runs of a grid, `quality` q logs loss q + 0.01 * step. They
# reach band 3 (their 3rd value) worst first: each logs its 3 values only once
# the next worse one has, then waits until all six have, then logs 5 more
# slowly. So whenever a run is judged at band 3 every worse run is there
# too, and the threshold (position int(n/3) of the values there) is never
# below a run that ends in the top three: 1 to 3 run to their end (8 values:
# band 9 is never reached), while 4, 5 and 6 end up above the final
# threshold (3.02) and are stopped while they log slowly. Quality 6 ignores
# SIGTERM: the SIGKILL after --grace ends it.
HYPERBAND_TRAIN = """\
import argparse, json, os, signal, sys, time
p = argparse.ArgumentParser()
p.add_argument("--quality", type=int)
q = p.parse_args().quality
if q == 6:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open("ran.txt", "a") as f:
    f.write(f"{q}\\n")
def log(step):
    with open(os.environ["BATCHRUN_METRICS"], "a") as f:
        f.write(json.dumps({"loss": q + 0.01 * step, "_step": step}) + "\\n")
def wait(done):
    deadline = time.time() + 60
    while not done() and time.time() < deadline:
        time.sleep(0.02)
wait(lambda: q == 6 or os.path.exists(f"gate/{q + 1}"))
for step in range(3):
    log(step)
open(f"gate/{q}", "w").close()
wait(lambda: len(os.listdir("gate")) == 6)
for step in range(3, 8):
    time.sleep(0.6)
    log(step)
"""

HYPERBAND_SPEC = """\
program: train.py
method: grid
metric: {name: loss, goal: minimize}
parameters:
  quality: {values: [1, 2, 3, 4, 5, 6]}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
"""


def _quality_states(workdir: Path) -> dict[int, str]:
    records = _records(workdir, "grid")
    out = {}
    for job in load_runfile(workdir / "grid.runfile").jobs:
        quality = int(job.command.rsplit("=", 1)[1])
        out[quality] = str(records[job.job_id].state)  # type: ignore[attr-defined]
    return out


def test_hyperband_stops_the_clearly_worse_runs_and_the_launch_exits_0(workdir: Path) -> None:
    (workdir / "train.py").write_text(HYPERBAND_TRAIN)
    (workdir / "gate").mkdir()
    (workdir / "grid.yml").write_text(HYPERBAND_SPEC)
    first = _run("launch", "grid.yml", "-j", "6", "--grace", "0.5", cwd=workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "hyperband stops runs worse than the top 1/3 at 3, 9, 27, 81, ... logged values of loss" in first.stdout
    assert _quality_states(workdir) == {1: "succeeded", 2: "succeeded", 3: "succeeded", 4: "stopped", 5: "stopped", 6: "stopped"}
    assert "3 succeeded, 3 stopped" in first.stdout
    logs = workdir / "runs" / "grid" / "logs"
    for job in load_runfile(workdir / "grid.runfile").jobs:
        values = (logs / job.job_id / "metrics.jsonl").read_text().splitlines()
        quality = int(job.command.rsplit("=", 1)[1])
        assert (len(values) == 8) == (quality <= 3), (quality, len(values))
    status = _run("status", "grid.yml", cwd=workdir)
    assert status.returncode == 0 and "3 stopped" in status.stdout, status.stdout
    table = _run("results", "grid.yml", "--json", cwd=workdir)
    assert table.returncode == 0, table.stderr
    rows = {int(row["quality"]): row for row in json.loads(table.stdout)}
    assert {q: rows[q]["state"] for q in rows} == _quality_states(workdir)
    assert 4.02 <= rows[4]["loss"] < 4.07, "a stopped run shows what it logged before the stop"
    report = _run("report", "grid.yml", "-o", "report.html", cwd=workdir)
    assert report.returncode == 0, report.stderr
    html = (workdir / "report.html").read_text()
    assert "3 stopped</span>" in html and "3 succeeded</span>" in html
    again = _run("launch", "grid.yml", "-j", "6", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "3 stopped early (skipped)" in again.stdout and "0 to run" in again.stdout
    assert sorted(_ran(workdir)) == ["1", "2", "3", "4", "5", "6"], "a stopped run ran again"


def test_the_issues_example_runs_end_to_end(workdir: Path) -> None:
    """examples/bayes as a user runs it, with a run_cap small enough for CI."""
    for name in ("spec.yml", "train.py"):
        shutil.copy(REPO / "examples" / "bayes" / name, workdir / name)
    spec = workdir / "spec.yml"
    spec.write_text(spec.read_text().replace("run_cap: 60", "run_cap: 6"))
    result = _run("launch", "spec.yml", "-j", "4", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bayes search (TPE) to minimize val_loss: 0 of run_cap 6 runs finished" in result.stdout
    assert "hyperband stops runs worse than the top 1/3 at 3, 9, 27" in result.stdout
    states = _finished_states(workdir)
    assert sum(states.values()) == 6 and set(states) <= {"succeeded", "stopped"}, states
    assert len(load_runfile(workdir / "spec.runfile").jobs) == 6
