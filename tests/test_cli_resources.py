"""Per-line requests through the real CLI: jobs record when they held what they were given, and the records are checked.

Each job runs `hold.py`, which writes one JSON line when it ends: when it
started and ended, and the CUDA_VISIBLE_DEVICES, BATCHRUN_CPUS and
BATCHRUN_MEM it was given. A job's own interval lies within the time the
scheduler gave it its resources, so two records that overlap in time held
their resources at once: what two of them held together must fit.

Jobs that must run together wait at a barrier (a count of started jobs, in
a file) or for a `go` file the test writes, never for a fixed time; a job
that gave up waiting says so in its record, and the test fails on it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import batchrun_cmd, kill_all, live_pids_with_env, run_batchrun, wait_for

MakeRunfile = Callable[..., Path]

# Written into the test's directory; run as `python hold.py NAME [--barrier N] [--until FILE] [--sleep S]`.
HOLD = r'''
import fcntl, json, os, sys, time
args = sys.argv[1:]
name, opts = args[0], dict(zip(args[1::2], args[2::2]))
here = os.path.dirname(os.path.abspath(__file__))
start = time.time()
with open(os.path.join(here, "started"), "a") as f:
    f.write(name + "\n")
met = True
deadline = time.monotonic() + 60
if "--barrier" in opts:
    while open(os.path.join(here, "started")).read().count("\n") < int(opts["--barrier"]):
        if time.monotonic() > deadline:
            met = False
            break
        time.sleep(0.02)
if "--until" in opts:
    while not os.path.exists(os.path.join(here, opts["--until"])):
        if time.monotonic() > deadline:
            met = False
            break
        time.sleep(0.02)
time.sleep(float(opts.get("--sleep", 0)))
record = {"name": name, "start": start, "end": time.time(), "met": met,
          "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "cpus": os.environ.get("BATCHRUN_CPUS"), "mem": os.environ.get("BATCHRUN_MEM")}
with open(os.path.join(here, "held.jsonl"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(json.dumps(record) + "\n")
'''


@pytest.fixture()
def marker(workdir: Path) -> Iterator[str]:
    (workdir / "hold.py").write_text(HOLD)
    name = f"BRRES{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


def _hold(name: str, *opts: str) -> str:
    return " ".join([sys.executable, "hold.py", name, *opts])


def _held(workdir: Path) -> list[dict[str, object]]:
    path = workdir / "held.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _overlapping(records: list[dict[str, object]]) -> list[tuple[dict[str, object], dict[str, object]]]:
    return [(a, b) for i, a in enumerate(records) for b in records[i + 1 :] if a["start"] < b["end"] and b["start"] < a["end"]]  # type: ignore[operator]


def _most_at_once(records: list[dict[str, object]]) -> int:
    edges = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])  # type: ignore[misc]
    now = most = 0
    for _t, step in edges:
        now += step
        most = max(most, now)
    return most


def _launch(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_batchrun("launch", "exp.runfile", *args, cwd=workdir, timeout=180, env=env)


def _env(marker: str) -> dict[str, str]:
    return dict(os.environ, **{marker: "1"})


@pytest.mark.timeout(240)
def test_two_gpu_jobs_on_four_gpus_never_share_one_and_run_two_at_once(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    make_runfile(["# batchrun: gpus=2", *(_hold(f"j{i}", "--barrier", "2", "--sleep", "0.3") for i in range(6))])
    result = _launch(workdir, "--gpus", "0,1,2,3", "-j", "6", env=_env(marker))
    assert result.returncode == 0, result.stderr
    held = _held(workdir)
    assert len(held) == 6 and all(r["met"] for r in held), held  # two at once did happen
    assert all(len(str(r["gpus"]).split(",")) == 2 and set(str(r["gpus"]).split(",")) <= {"0", "1", "2", "3"} for r in held), held
    for a, b in _overlapping(held):
        assert not set(str(a["gpus"]).split(",")) & set(str(b["gpus"]).split(",")), f"a GPU held by two jobs at once: {a} {b}"
    assert _most_at_once(held) == 2


@pytest.mark.timeout(240)
def test_quarter_gpu_jobs_run_four_to_a_gpu(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    make_runfile(["# batchrun: gpus=0.25", *(_hold(f"q{i}", "--barrier", "8") for i in range(8)), "# batchrun:", "echo plain"])
    result = _launch(workdir, "--gpus", "0,1", "-j", "16", env=_env(marker))
    assert result.returncode == 0, result.stderr
    held = _held(workdir)
    assert len(held) == 8 and all(r["met"] for r in held), held  # all eight ran at once
    assert sorted(str(r["gpus"]) for r in held) == ["0"] * 4 + ["1"] * 4
    for gpu in ("0", "1"):
        assert sum(Fraction(1, 4) for r in held if r["gpus"] == gpu) == 1


@pytest.mark.timeout(240)
def test_cpus_4_with_jobs_asking_3_runs_them_one_at_a_time(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    make_runfile(["# batchrun: cpus=3 mem=100M", *(_hold(f"c{i}", "--sleep", "0.3") for i in range(4))])
    result = _launch(workdir, "--cpus", "4", "-j", "4", env=_env(marker))
    assert result.returncode == 0, result.stderr
    held = _held(workdir)
    assert len(held) == 4 and {(r["cpus"], r["mem"]) for r in held} == {("3", "100")}
    assert _overlapping(held) == [], "two cpus=3 jobs ran at once under --cpus 4"


@pytest.mark.timeout(240)
def test_a_big_job_is_not_starved_by_a_stream_of_small_ones(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    small = [_hold(f"s{i}", "--sleep", "0.5") for i in range(3)]
    later = [_hold(f"t{i}", "--sleep", "0.5") for i in range(12)]
    make_runfile(["# batchrun: cpus=1", *small, "# batchrun: cpus=4", _hold("big"), "# batchrun: cpus=1", *later])
    result = _launch(workdir, "--cpus", "4", "-j", "8", env=_env(marker))
    assert result.returncode == 0, result.stderr
    held = {str(r["name"]): r for r in _held(workdir)}
    assert len(held) == 16
    big = held["big"]
    assert not [r for r in held.values() if r is not big and r["start"] < big["end"] and big["start"] < r["end"]]  # type: ignore[operator]
    # Without a reservation every small job behind it takes a CPU as one frees, and the big one starts last.
    # With it, only the jobs already waiting when the big one began waiting (at most -j 8 - 4 running) go first.
    went_first = [name for name, r in held.items() if name.startswith("t") and r["start"] < big["start"]]  # type: ignore[operator]
    assert len(went_first) <= 4, went_first


def test_changing_a_directive_reruns_nothing(make_runfile: MakeRunfile, workdir: Path) -> None:
    path = make_runfile(["echo a >> out", "echo b >> out"])
    assert _launch(workdir, "-q").returncode == 0
    path.write_text("# batchrun: cpus=1 mem=10M\necho a >> out\n# batchrun: gpus=0 time=1h\necho b >> out\n")
    again = _launch(workdir)
    assert again.returncode == 0, again.stderr
    assert "2 already succeeded, 0 to run" in again.stdout or "nothing to run" in again.stdout, again.stdout
    assert (workdir / "out").read_text() == "a\nb\n"
    plan = run_batchrun("plan", "exp.runfile", cwd=workdir)
    assert plan.returncode == 0 and "to run" not in plan.stdout.replace("0 to run", ""), plan.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["launch", "exp.runfile", "--cpus", "4", "--gpus", "0,1"], "exp.runfile:3: this job asks for cpus=8, more than the launch's 4 CPUs (--cpus 4)"),
        (["launch", "exp.runfile", "--cpus", "4", "--gpus", "0,1", "--dry-run"], "exp.runfile:3: this job asks for cpus=8, more than the launch's 4 CPUs (--cpus 4)"),
        (["plan", "exp.runfile", "--cpus", "4", "--gpus", "0,1"], "exp.runfile:3: this job asks for cpus=8, more than the launch's 4 CPUs (--cpus 4)"),
        (["launch", "exp.runfile", "--cpus", "16", "--gpus", "0"], "exp.runfile:3: this job asks for gpus=2, more than the launch's 1 GPU (--gpus 0)"),
        (["launch", "exp.runfile", "--cpus", "16"], "exp.runfile:3: this job asks for gpus=2 but the launch has no GPU"),
    ],
)
def test_a_request_larger_than_the_machine_is_refused_at_plan_time(make_runfile: MakeRunfile, workdir: Path, args: list[str], says: str) -> None:
    make_runfile(["echo fine >> out", "# batchrun: gpus=2 cpus=8", "echo big >> out", "echo big2 >> out"])
    result = run_batchrun(*args, cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"batchrun: error: {says}") and result.stderr.count("\n") == 1, result.stderr
    assert "2 jobs ask too much" in result.stderr
    assert not (workdir / "out").exists(), "a job ran before the refusal"


def test_a_request_larger_than_this_machines_memory_names_it(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["# batchrun: mem=1000T", "echo big"])
    result = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.startswith("batchrun: error: exp.runfile:2: this job asks for mem=1000T, more than the launch's ")
    assert result.stderr.rstrip().endswith("of memory (this machine's, --mem to change)") and result.stderr.count("\n") == 1


def _read_until(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    seen: list[str] = []
    while not any(text in line for line in seen):
        line = proc.stdout.readline()
        assert line, f"the launch ended before printing {text!r}: {seen}"
        seen.append(line)


@pytest.mark.timeout(240)
def test_kill_9_and_relaunch_adopt_running_jobs_with_what_they_hold(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    make_runfile(["# batchrun: gpus=2 cpus=3", _hold("first", "--until", "go"), _hold("second", "--until", "go")])
    args = ["launch", "exp.runfile", "--gpus", "0,1", "--cpus", "4", "-j", "2"]
    first = subprocess.Popen(batchrun_cmd(*args), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(marker))
    wait_for(lambda: (workdir / "started").exists(), timeout=60, what="the first job to start")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    status = run_batchrun("status", "exp.runfile", cwd=workdir)
    assert "HOLDS" in status.stdout and "gpu=0,1 cpus=3" in status.stdout, status.stdout
    again = subprocess.Popen(batchrun_cmd(*args), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(marker))
    try:
        _read_until(again, "adopted")
        shown = json.loads(run_batchrun("status", "exp.runfile", "--json", cwd=workdir).stdout)
        holds = [job.get("holds") for job in shown["jobs"].values() if job["state"] == "running"]
        assert holds == ["gpu=0,1 cpus=3"], shown
        rows = list(csv.DictReader(run_batchrun("status", "exp.runfile", "--csv", cwd=workdir).stdout.splitlines()))
        assert [row["holds"] for row in rows if row["state"] == "running"] == ["gpu=0,1 cpus=3"], rows  # as the table and --json say
        (workdir / "go").write_text("")
        out, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 0, out + err
    held = {str(r["name"]): r for r in _held(workdir)}
    assert set(held) == {"first", "second"} and all(r["met"] for r in held.values())
    # The second job waited for what the adopted one held: it started only once the go file freed the first.
    assert _overlapping(list(held.values())) == [], held
    assert held["second"]["gpus"] == "0,1"


def _smi_env(marker: str) -> dict[str, str]:
    """nvidia-smi's recorded answers on PATH (tests/data/nvidia_smi/: GPUs 1 and 3 busy with another user's runs)."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{Path(__file__).resolve().parent / 'data' / 'nvidia_smi'}{os.pathsep}{env['PATH']}"
    env[marker] = "1"
    return env


@pytest.mark.timeout(240)
def test_gpus_auto_skip_busy_gpus_runs_only_on_the_free_ones(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    make_runfile(["# batchrun: gpus=1", *(_hold(f"g{i}", "--barrier", "2") for i in range(4))])
    result = _launch(workdir, "--gpus", "auto", "--skip-busy-gpus", "-j", "4", env=_smi_env(marker))
    assert result.returncode == 0, result.stderr
    held = _held(workdir)
    assert len(held) == 4 and all(r["met"] for r in held)
    assert {str(r["gpus"]) for r in held} == {"0", "2"}  # never 1 or 3, where another user's processes hold memory
    for a, b in _overlapping(held):
        assert a["gpus"] != b["gpus"], (a, b)
    refused = run_batchrun("plan", "exp.runfile", "--gpus", "auto", "--skip-busy-gpus", cwd=workdir, env=_smi_env(marker))
    assert refused.returncode == 0, refused.stderr
    (workdir / "exp.runfile").write_text("# batchrun: gpus=3\necho x\n")
    refused = run_batchrun("plan", "exp.runfile", "--gpus", "auto", "--skip-busy-gpus", cwd=workdir, env=_smi_env(marker))
    assert refused.returncode == 2
    assert refused.stderr == "batchrun: error: exp.runfile:2: this job asks for gpus=3, more than the launch's 2 GPUs (--gpus auto: 4 found, without busy GPU 1,3)\n"


GRIDSPEC = """program: sh -c 'echo "$BATCHRUN_CPUS $BATCHRUN_MEM $CUDA_VISIBLE_DEVICES"'
resources: {cpus: 2, mem: 1G}
parameters:
  model:
    values: [small, large]
    resources: {large: {gpus: 2, mem: 4G}}
  seed:
    values: [1, 2]
"""


def test_a_gridspecs_requests_become_directives_and_change_no_job(workdir: Path) -> None:
    (workdir / "g.yml").write_text(GRIDSPEC)
    (workdir / "plain.yml").write_text("\n".join(line for line in GRIDSPEC.splitlines() if "resources" not in line) + "\n")
    for spec in ("g.yml", "plain.yml"):
        assert run_batchrun("sweep", spec, cwd=workdir).returncode == 0
    lines = (workdir / "g.runfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("#")] == ["# batchrun: cpus=2 mem=1G", "# batchrun: gpus=2 cpus=2 mem=4G"]
    assert [line for line in lines if not line.startswith("#")] == (workdir / "plain.runfile").read_text().splitlines()
    result = run_batchrun("launch", "g.yml", "--gpus", "0,1", "--cpus", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr
    outs = sorted(path.read_text() for path in (workdir / "runs" / "g" / "logs").glob("*/out.log"))
    # A line that asks no GPU under --gpus shares its slot's GPU, as every line did before requests.
    assert outs[2:] == ["2 4096 0,1\n", "2 4096 0,1\n"] and {out[:7] for out in outs[:2]} == {"2 1024 "} and {out[7:] for out in outs[:2]} <= {"0\n", "1\n"}
    # A bad request is one line naming the spec's line.
    (workdir / "g.yml").write_text(GRIDSPEC.replace("gpus: 2", "gpu: 2"))
    bad = run_batchrun("sweep", "g.yml", cwd=workdir)
    assert bad.returncode == 2
    assert bad.stderr == "batchrun: error: g.yml:6: parameter 'model': 'resources' of 'large': unknown key 'gpu' (did you mean 'gpus'?)\n"


def test_batchrun_run_resources_asks_for_every_line(workdir: Path) -> None:
    result = run_batchrun("run", "-q", "--cpus", "4", "--resources", "cpus=3 mem=10M", 'echo "$BATCHRUN_CPUS $BATCHRUN_MEM" {1..2}', cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (workdir / "echo.runfile").read_text().splitlines()[1:] == ["# batchrun: cpus=3 mem=10M", 'echo "$BATCHRUN_CPUS $BATCHRUN_MEM" 1', 'echo "$BATCHRUN_CPUS $BATCHRUN_MEM" 2']
    assert sorted(path.read_text() for path in (workdir / "runs" / "echo" / "logs").glob("*/out.log")) == ["3 10 1\n", "3 10 2\n"]
    # Without --resources the same lines, the same jobs: nothing reruns.
    again = run_batchrun("run", 'echo "$BATCHRUN_CPUS $BATCHRUN_MEM" {1..2}', cwd=workdir)
    assert again.returncode == 0 and "(0 ran now)" in again.stdout, again.stdout
