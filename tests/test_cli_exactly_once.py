"""Exactly once for the newer machinery (issue 23), each fault placed at its instant through the real CLI.

A stop outlives a kill -9 of the launch that made it; a slot helper's death
costs no job its real status; a FIFO, a directory or a hostile line at a
job's metrics path stops no launch and no command; a full disk is one line;
a clean exit beats a stop that came after it; `stop` and `wait` agree on a
job that ended with no record; `doit forget` refuses while a launch runs.
Faults are placed with `tests/data/faults/sitecustomize.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import batchrun_cmd, exit_text, fault_env, kill_all, live_pids_with_env, read_metadata, wait_for

from batchrun.executors.jobfiles import job_lock_held
from batchrun.executors.local._slot_helper import DIE_HOOK
from batchrun.runfile.file import job_id_of, load_runfile
from batchrun.store.journal import JOURNAL_NAME, Journal

MakeRunfile = Callable[..., Path]


def _start(*args: str, cwd: Path, **faults: str) -> subprocess.Popen[str]:
    return subprocess.Popen(batchrun_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fault_env(**faults))


def _run(*args: str, cwd: Path, timeout: float = 120, **faults: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=fault_env(**faults))


def _states(runs: Path) -> dict[str, str]:
    journal = Journal(runs)
    journal.load()
    return {job_id: str(rec.state) for job_id, rec in journal.records.items()}


def _refs(workdir: Path) -> dict[str, str | None]:
    journal = Journal(workdir / "runs" / "exp")
    journal.load()
    return {job_id: rec.ref for job_id, rec in journal.records.items()}


def _ppid(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2 :].split()[1])


def _gate(gate: Path) -> str:
    return f"n=0; while [ ! -e {gate} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done"


@pytest.fixture()
def marker() -> Iterator[str]:
    name = f"BR23X{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


# -- 1. a stop is recorded before its first signal and outlives the launch ------


def test_a_killed_job_stays_killed_when_the_launch_dies_right_after_the_kill_signal(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    side, ready = workdir / "side", workdir / "ready"
    line = f"export {marker}=1; trap 'echo trapped >> {side}; exit 0' TERM; echo ran >> {side}; touch {ready}; while :; do sleep 0.05; done"
    make_runfile([line])
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(line)
    launch = _start("launch", "exp.runfile", cwd=workdir, BRFAULT_KILL_AFTER_STOP_SIGNAL="1")
    wait_for(ready.exists, what="the job to start")
    # The launch dies right after the kill's SIGTERM, perhaps before it answered the request.
    assert _run("kill", "exp.runfile", "1", cwd=workdir).returncode in (0, 2)
    launch.communicate(timeout=60)
    assert launch.returncode == -signal.SIGKILL
    # The job traps the SIGTERM and exits 0; its helper, which outlives the launch, records it.
    wait_for(lambda: not job_lock_held(log_dir), what="the job to end")
    assert exit_text(log_dir) == "0 1 killed\n"
    again = _run("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 1, again.stdout + again.stderr  # killed: not every job succeeded
    assert side.read_text().split() == ["ran", "trapped"], "the killed job ran again"
    assert _states(workdir / "runs" / "exp") == {job_id_of(line): "killed"}
    assert "1 killed" in again.stdout


def test_a_killed_job_whose_helper_died_too_stays_killed_by_its_note(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """Nobody is left to write its record: the stop note, on disk before the signal, says what it was."""
    side, pid_file, gate = workdir / "side", workdir / "pid", workdir / "gate"
    line = f"export {marker}=1; echo $$ > {pid_file}; trap '{_gate(gate)}; exit 0' TERM; echo ran >> {side}; while :; do sleep 0.05; done"
    make_runfile([line])
    launch = _start("launch", "exp.runfile", cwd=workdir, BRFAULT_KILL_AFTER_STOP_SIGNAL="1")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="the job to start")
    job = int(pid_file.read_text())
    helper = _ppid(job)
    # The launch dies right after the kill's SIGTERM, perhaps before it answered the request.
    assert _run("kill", "exp.runfile", "1", cwd=workdir).returncode in (0, 2)
    launch.communicate(timeout=60)
    os.kill(helper, signal.SIGKILL)
    gate.touch()
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(line)
    wait_for(lambda: not job_lock_held(log_dir), what="the job to end")
    assert exit_text(log_dir) is None
    again = _run("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 1, again.stdout + again.stderr
    assert side.read_text().split() == ["ran"], "the killed job ran again"
    assert _states(workdir / "runs" / "exp") == {job_id_of(line): "killed"}


HYPERBAND_SPEC = """\
program: train.py
method: grid
metric: {name: loss, goal: minimize}
parameters:
  quality: {values: [1, 2, 3]}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
"""

# Quality q logs loss q + 0.01 * step. 3 (the worst) logs its three values
# first, then 1: at band 3 the threshold is then 1's value, and hyperband
# stops 3, which exits 0 on the SIGTERM. 2 logs once 3 has ended (it ties the
# threshold of all three, and passes).
HYPERBAND_TRAIN = """\
import argparse, json, os, signal, sys, time
q = argparse.ArgumentParser()
q.add_argument("--quality", type=int)
q = q.parse_args().quality
with open("ran.txt", "a") as f:
    f.write(f"{q}\\n")
def log(step):
    with open(os.environ["BATCHRUN_METRICS"], "a") as f:
        f.write(json.dumps({"loss": q + 0.01 * step, "_step": step}) + "\\n")
def wait(done):
    deadline = time.time() + 60
    while not done() and time.time() < deadline:
        time.sleep(0.02)
if q == 3:
    signal.signal(signal.SIGTERM, lambda *a: (open("gate/3-ended", "w").close(), os._exit(0)))
    for step in range(3):
        log(step)
    open("gate/3", "w").close()
    wait(lambda: False)
    sys.exit(0)
wait(lambda: os.path.exists("gate/3" if q == 1 else "gate/3-ended"))
for step in range(3):
    log(step)
wait(lambda: os.path.exists("gate/3-ended"))
"""


def test_a_run_hyperband_stopped_stays_stopped_when_the_launch_dies_right_after_the_stop_signal(workdir: Path) -> None:
    (workdir / "train.py").write_text(HYPERBAND_TRAIN)
    (workdir / "gate").mkdir()
    (workdir / "grid.yml").write_text(HYPERBAND_SPEC)
    first = _run("launch", "grid.yml", "-j", "3", cwd=workdir, BRFAULT_KILL_AFTER_STOP_SIGNAL="1")
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    again = _run("launch", "grid.yml", "-j", "3", cwd=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted((workdir / "ran.txt").read_text().split()) == ["1", "2", "3"], "the stopped run ran again"
    states = _states(workdir / "runs" / "grid")
    by_quality = {int(job.command.rsplit("=", 1)[1]): states[job.job_id] for job in load_runfile(workdir / "grid.runfile").jobs}
    assert by_quality == {1: "succeeded", 2: "succeeded", 3: "stopped"}


# -- 2. a slot helper that dies costs its job nothing ----------------------------


def test_a_job_whose_slot_helper_is_sigkilled_is_reaped_by_the_launch_with_its_real_status(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    side, pid_file, gate = workdir / "side", workdir / "pid", workdir / "gate"
    line = f"export {marker}=1; echo $$ > {pid_file}; {_gate(gate)}; echo done >> {side}"
    make_runfile([line, f"export {marker}=1; exit 4"])
    launch = _start("launch", "exp.runfile", "-j", "2", cwd=workdir)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="the job to start")
    job = int(pid_file.read_text())
    # Its helper answered (the journal has the job's pid): it dies while its job runs.
    wait_for(lambda: _refs(workdir).get(job_id_of(line)) == str(job), what="the job's start to be recorded")
    helper = _ppid(job)
    assert helper != launch.pid
    os.kill(helper, signal.SIGKILL)
    # The launch is a child subreaper: the orphaned job is now its child.
    wait_for(lambda: _ppid(job) != helper, what="the job to be reparented")
    assert _ppid(job) == launch.pid
    gate.touch()
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 1, out + err  # the other job exits 4
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(line)
    assert exit_text(log_dir) == "0 1\n", "the launch did not record what it reaped"
    assert read_metadata(workdir / "runs" / "exp")[job_id_of(line)]["state"] == "succeeded"
    assert side.read_text() == "done\n"
    assert "1 succeeded, 1 failed" in out


def test_jobs_whose_helpers_die_between_starting_them_and_saying_so_run_once_and_are_recorded(make_runfile: MakeRunfile, workdir: Path) -> None:
    """Each helper SIGKILLs itself once its job runs, before its `S` answer: the launch finds each job by its lock and environment.

    Each job runs long enough for a loaded launch to look for it while it runs: one that ended
    before the launch looked (its lock free, its status known to nobody) counts as never started
    and runs again (`executors/local/deadhelper.py`: a known limit, not what this test places).
    """
    side = workdir / "side"
    lines = [f"sleep 2; echo {i} >> {side}; exit {i}" for i in range(4)]
    make_runfile(lines)
    done = _run("launch", "exp.runfile", "-j", "2", cwd=workdir, **{DIE_HOOK: "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    runs = workdir / "runs" / "exp"
    # What the journal says (compacted: one line a job) and which files each job left, should a job run twice.
    seen = [(runs / JOURNAL_NAME).read_text(), done.stdout + done.stderr, sorted(str(p.relative_to(runs)) for p in runs.rglob("*"))]
    assert sorted(side.read_text().split()) == ["0", "1", "2", "3"], f"a job ran twice, or not at all: {seen}"
    records = Journal(workdir / "runs" / "exp")
    records.load()
    assert [records.records[job_id_of(line)].status for line in lines] == [0, 1, 2, 3]


# -- 3./4. whatever is at a metrics path, nothing hangs and nothing breaks -------


def test_a_fifo_at_the_metrics_path_stalls_no_launch_and_no_command(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(['mkfifo "$BATCHRUN_METRICS"', "echo b", "echo c"])
    launch = _run("launch", "exp.runfile", timeout=60, cwd=workdir)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    assert "3 succeeded" in launch.stdout
    assert launch.stderr.count("not a regular file") == 1, launch.stderr
    for command in (["status", "exp.runfile"], ["results", "exp.runfile"], ["report", "exp.runfile", "-o", "r.html"]):
        done = _run(*command, timeout=60, cwd=workdir)
        assert done.returncode == 0, (command, done.stderr)
        assert "skipped 1 metrics paths that are not regular files" in done.stderr or command[0] == "status", (command, done.stderr)


DEEP = """import json, os
with open(os.environ["BATCHRUN_METRICS"], "a") as f:
    f.write('{"a": ' * 100000 + "1" + "}" * 100000 + "\\n")
    f.write(json.dumps({"loss": 1}) + "\\n")
"""


def test_a_metrics_line_nested_100000_deep_is_skipped_and_counted(make_runfile: MakeRunfile, workdir: Path) -> None:
    (workdir / "deep.py").write_text(DEEP)
    make_runfile(["python3 deep.py"])
    assert _run("launch", "exp.runfile", cwd=workdir).returncode == 0
    for command in (["status", "exp.runfile"], ["results", "exp.runfile", "--json"], ["report", "exp.runfile", "-o", "r.html"]):
        done = _run(*command, cwd=workdir)
        assert done.returncode == 0, (command, done.stderr)
        assert "internal error" not in done.stderr
        assert command[0] == "status" or "skipped 1 metrics lines that are not JSON objects" in done.stderr, done.stderr
    rows = json.loads(_run("results", "exp.runfile", "--json", cwd=workdir).stdout)
    assert rows[0]["loss"] == 1


def test_a_bayes_launch_whose_runs_write_deep_lines_still_runs_run_cap_points(workdir: Path) -> None:
    pytest.importorskip("optuna")
    (workdir / "train.py").write_text(textwrap.dedent("""\
        import json, os, sys
        lr = float(sys.argv[1].split("=")[1])
        with open(os.environ["BATCHRUN_METRICS"], "a") as f:
            f.write('{"a": ' * 100000 + "1" + "}" * 100000 + "\\n")
            f.write(json.dumps({"val_loss": lr}) + "\\n")
        """))
    (workdir / "spec.yml").write_text(textwrap.dedent("""\
        program: train.py
        method: bayes
        metric: {name: val_loss, goal: minimize}
        run_cap: 4
        parameters:
          lr: {distribution: uniform, min: 0, max: 1}
        """))
    done = _run("launch", "spec.yml", "-j", "2", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert list(_states(workdir / "runs" / "spec").values()) == ["succeeded"] * 4


@pytest.mark.parametrize("hostile", ["deep", "directory", "fifo"])
def test_a_hyperband_launch_survives_a_hostile_metrics_path(workdir: Path, hostile: str) -> None:
    make = {
        "deep": """open(os.environ["BATCHRUN_METRICS"], "a").write('{"a": ' * 100000 + "1" + "}" * 100000 + "\\n")""",
        "directory": """os.mkdir(os.environ["BATCHRUN_METRICS"])""",
        "fifo": """os.mkfifo(os.environ["BATCHRUN_METRICS"])""",
    }[hostile]
    (workdir / "train.py").write_text(f"import os, sys, time\nif sys.argv[1] == '--quality=1':\n    {make}\ntime.sleep(1)\n")
    (workdir / "grid.yml").write_text(HYPERBAND_SPEC)
    done = _run("launch", "grid.yml", "-j", "3", timeout=60, cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 succeeded" in done.stdout


# -- 5. a full disk is one line ----------------------------------------------------


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full disk)")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


@pytest.fixture()
def disk(workdir: Path) -> Iterator[Path]:
    path = workdir / "disk"
    _mount_tmpfs(path, "256k")
    yield path
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _fill(disk: Path) -> None:
    """Fill the disk to its last byte (a page at a time, then a byte at a time)."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_a_launch_on_a_full_disk_is_one_line_and_exit_2(make_runfile: MakeRunfile, workdir: Path, disk: Path) -> None:
    make_runfile(["echo a"])
    runs = disk / "runs"
    assert _run("launch", "exp.runfile", "--accounting_dir", str(runs), cwd=workdir).returncode == 0
    (runs / ".lock").unlink()  # the next lock file must be written anew: its pid finds no room
    _fill(disk)
    done = _run("launch", "exp.runfile", "--accounting_dir", str(runs), cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("batchrun: error: ") and "No space left on device" in done.stderr, done.stderr


def test_the_summary_names_no_metadata_json_a_full_disk_kept_from_being_written(make_runfile: MakeRunfile, workdir: Path, disk: Path) -> None:
    runs = disk / "runs"
    line = f"head -c 10000000 /dev/zero > {disk}/job-filler; true"
    make_runfile([line])
    # The job fills the disk and ends; then this test fills what is left, while the launch, held back
    # until the gate opens, has yet to write metadata.json for the last time.
    gate = workdir / "gate"
    launch = _start("launch", "exp.runfile", "--accounting_dir", str(runs), cwd=workdir, BRFAULT_SLOW_FINAL_WRITE=str(gate))
    wait_for(lambda: (runs / "jobs.journal").exists() and _states(runs).get(job_id_of(line)) == "succeeded", what="the job's end to be journaled")
    _fill(disk)
    gate.touch()
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 2, out + err
    assert "internal error" not in err and err.count("\n") == 1 and err.startswith("batchrun: error: "), err
    assert "metadata.json" in err and "No space left on device" in err, err
    assert "metadata.json" not in out, out
    (disk / "filler").unlink()
    (disk / "job-filler").unlink()
    again = _run("launch", "exp.runfile", "--accounting_dir", str(runs), cwd=workdir)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout + again.stderr
    assert f"metadata: {runs}/metadata.json" in again.stdout
    assert read_metadata(runs)[job_id_of(line)]["state"] == "succeeded"


# -- 6. a clean exit before the stop's signal wins ----------------------------------


def test_a_job_that_ended_before_its_kill_reached_it_is_recorded_as_it_ended(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    line = f"export {marker}=1; sleep 0.3"
    make_runfile([line])
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(line)
    # The job's end is held back in the launch after its record is written, until the gate opens: the kill lands in between.
    gate = workdir / "gate"
    launch = _start("launch", "exp.runfile", cwd=workdir, BRFAULT_SLOW_END=str(gate))
    wait_for(lambda: exit_text(log_dir) is not None, what="the job to end")
    killed = _run("kill", "exp.runfile", "1", cwd=workdir)
    assert killed.returncode == 0, killed.stderr
    gate.touch()
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 0, out + err
    assert _states(workdir / "runs" / "exp") == {job_id_of(line): "succeeded"}
    assert exit_text(log_dir) == "0 1\n"


@pytest.mark.parametrize("stop", ["kill", "stop-now"])
def test_a_job_that_ends_between_its_stops_note_and_its_signal_is_recorded_as_it_ended(
    make_runfile: MakeRunfile, workdir: Path, marker: str, stop: str
) -> None:
    """The stop is noted (its supervisor records `0 1 killed`), but its signal finds the job gone: its own end wins."""
    gate, ready = workdir / "gate", workdir / "ready"
    line = f"export {marker}=1; touch {ready}; {_gate(gate)}; exit 0"
    make_runfile([line])
    launch = _start("launch", "exp.runfile", cwd=workdir, BRFAULT_END_BEFORE_STOP_SIGNAL=str(gate))
    wait_for(ready.exists, what="the job to start")
    if stop == "kill":
        assert _run("kill", "exp.runfile", "1", cwd=workdir).returncode == 0
    else:
        launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == (0 if stop == "kill" else 130), out + err
    assert _states(workdir / "runs" / "exp") == {job_id_of(line): "succeeded"}, "a job that ended on its own was taken for stopped"
    again = _run("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout + again.stderr


# Hyperband stops 3 (the worst) once 1 logged its values; 3 then ends on its own, exit 0, in the
# instant between its stop's note and its signal (the fault hook opens gate/stop there).
HYPERBAND_ENDS_FIRST = """\
import argparse, json, os, time
q = argparse.ArgumentParser()
q.add_argument("--quality", type=int)
q = q.parse_args().quality
with open("ran.txt", "a") as f:
    f.write(f"{q}\\n")
def log(step):
    with open(os.environ["BATCHRUN_METRICS"], "a") as f:
        f.write(json.dumps({"loss": q + 0.01 * step, "_step": step}) + "\\n")
def wait(done):
    deadline = time.time() + 60
    while not done() and time.time() < deadline:
        time.sleep(0.02)
if q == 3:
    for step in range(3):
        log(step)
    open("gate/3", "w").close()
    wait(lambda: os.path.exists("gate/stop"))
elif q == 1:
    wait(lambda: os.path.exists("gate/3"))
    for step in range(3):
        log(step)
    wait(lambda: os.path.exists("gate/stop"))
"""


def test_a_run_that_ends_between_its_hyperband_stops_note_and_its_signal_is_recorded_as_it_ended(workdir: Path) -> None:
    (workdir / "train.py").write_text(HYPERBAND_ENDS_FIRST)
    (workdir / "gate").mkdir()
    (workdir / "grid.yml").write_text(HYPERBAND_SPEC)
    done = _run("launch", "grid.yml", "-j", "3", cwd=workdir, BRFAULT_END_BEFORE_STOP_SIGNAL=str(workdir / "gate" / "stop"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (workdir / "gate" / "stop").exists(), "hyperband stopped no run: the fault was not placed"
    assert set(_states(workdir / "runs" / "grid").values()) == {"succeeded"}, "a run that ended on its own was taken for stopped"
    again = _run("launch", "grid.yml", "-j", "3", cwd=workdir)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout + again.stderr
    assert sorted((workdir / "ran.txt").read_text().split()) == ["1", "2", "3"]


# -- 7. stop and wait agree on an adopted job that ended with no record --------------


def test_stop_with_an_adopted_job_that_ends_with_no_record_exits_130_as_wait_does(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    pid_file, gate = workdir / "pid", workdir / "gate"
    make_runfile([f"export {marker}=1; echo $$ > {pid_file}; {_gate(gate)}"])
    first = _start("launch", "exp.runfile", cwd=workdir)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="the job to start")
    job = int(pid_file.read_text())
    helper = _ppid(job)
    # batchrun and the job's helper die together: nobody is left to record the job.
    first.send_signal(signal.SIGKILL)
    os.kill(helper, signal.SIGKILL)
    first.communicate(timeout=30)
    again = _start("launch", "exp.runfile", cwd=workdir)
    assert again.stdout is not None
    wait_for(lambda: "adopting" in again.stdout.readline(), what="the relaunch to adopt the job")
    stopped = _run("stop", "exp.runfile", cwd=workdir)
    assert stopped.returncode == 0, stopped.stderr
    gate.touch()
    out, err = again.communicate(timeout=60)
    assert "1 interrupted" in out, out
    assert again.returncode == 130, out + err
    waited = _run("wait", "exp.runfile", cwd=workdir)
    assert waited.returncode == 130, waited.stdout + waited.stderr


# -- 8. doit forget refuses while a launch runs, record or not -------------------------


DODO = """\
from batchrun.dodo import DOIT_CONFIG, runfile_tasks

def task_exp():
    yield from runfile_tasks("exp.runfile")
"""


def test_doit_forget_of_a_job_with_no_record_refuses_while_a_launch_runs(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    gate, ready = workdir / "gate", workdir / "ready"
    done, running, waiting = "echo done-first", f"export {marker}=1; touch {ready}; {_gate(gate)}", "echo not-started-yet"
    make_runfile([done, running, waiting])
    (workdir / "dodo.py").write_text(DODO)
    launch = _start("launch", "exp.runfile", "-j", "1", cwd=workdir)
    wait_for(ready.exists, what="the second job to start")
    try:
        # A finished job (a record) and a waiting one (none yet): both refused, in the same words.
        for job_id in (job_id_of(done), job_id_of(waiting)):
            forgot = subprocess.run([sys.executable, "-m", "doit", "forget", f"exp:{job_id}"], cwd=workdir, capture_output=True, text=True, timeout=60)
            assert forgot.returncode != 0, (job_id, forgot.stdout, forgot.stderr)
            assert "another batchrun launch" in forgot.stderr and "forgetting" not in forgot.stdout, forgot.stdout + forgot.stderr
    finally:
        gate.touch()
        launch.communicate(timeout=60)
    assert launch.returncode == 0
    assert set(_states(workdir / "runs" / "exp").values()) == {"succeeded"}
    assert "0 to run" in _run("launch", "exp.runfile", cwd=workdir).stdout  # nothing was forgotten
