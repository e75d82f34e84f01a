"""`batchrun kill`, `stop` and `wait` through the real CLI, with real launches and signals.

Until the launch runs a `control.ControlPoller`, `kill` and plain `stop` are
tested against a stand-in launch: a real process that holds the runs
directory's lock and answers through the poller exactly as the launch will.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_batchrun, start_batchrun, wait_for

from batchrun.cli import app as cli
from batchrun.runfile.file import job_id_of
from batchrun.status.outcome import run_on_finish
from batchrun.store.rundir import RunsDir

MakeRunfile = Callable[..., Path]
RunCli = Callable[..., tuple[int, str, str]]


def end(proc: subprocess.Popen[str]) -> None:
    """Kill a process if still running and close its pipes."""
    proc.kill()
    proc.communicate()


def one_error_line(code: int, err: str, expected: str) -> None:
    assert (code, err) == (2, f"batchrun: error: {expected}\n")


def test_each_subcommand_has_help_and_an_example() -> None:
    parser = cli._build_parser()
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    for name in ("kill", "stop", "wait"):
        assert helps.get(name), f"{name} has no help"
        assert "Example: batchrun " in (sub.choices[name].description or ""), f"{name} has no example"


def test_no_launch_running_is_one_line_and_exit_2(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["echo a"])
    runs = workdir / "runs" / "exp"
    for command in (["kill", "exp.runfile", "1"], ["stop", "exp.runfile"], ["stop", "exp.runfile", "--now"]):
        code, out, err = run_cli(*command)
        one_error_line(code, err, f"no launch of exp.runfile is running ({runs} is not locked); nothing to {command[0]}")
        assert out == ""
    code, out, err = run_cli("wait", "exp.runfile")
    one_error_line(code, err, "nothing launched yet for exp.runfile; run batchrun launch exp.runfile")
    # After a launch, too: nothing runs to kill or stop.
    assert run_cli("launch", "exp.runfile", "-q")[0] == 0
    code, _out, err = run_cli("stop", "exp.runfile")
    one_error_line(code, err, f"no launch of exp.runfile is running ({runs} is not locked); nothing to stop")


def test_wait_of_a_finished_run_answers_at_once_with_its_exit_code(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["true", "echo ok"], "good.runfile")
    make_runfile(["true", "exit 3"], "bad.runfile")
    assert run_cli("launch", "good.runfile", "-q")[0] == 0
    assert run_cli("launch", "bad.runfile", "-q")[0] == 1
    assert run_cli("wait", "good.runfile") == (0, "batchrun: good.runfile: finished: 2 jobs: 2 succeeded (exit 0)\n", "")
    assert run_cli("wait", "bad.runfile") == (1, "batchrun: bad.runfile: finished: 2 jobs: 1 succeeded, 1 failed (exit 1)\n", "")
    assert run_cli("wait", "runs/bad", "-q") == (1, "", "")


def test_wait_waits_for_a_running_launch_and_times_out_with_124(make_runfile: MakeRunfile, workdir: Path) -> None:
    gate = workdir / "gate"
    make_runfile([f"while [ ! -e {gate} ]; do sleep 0.05; done", "exit 4"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "2", cwd=workdir)
    try:
        wait_for(lambda: (workdir / "runs" / "exp" / "jobs.journal").exists(), what="the launch to start")
        timed_out = run_batchrun("wait", "exp.runfile", "--timeout", "0.5", cwd=workdir)
        assert timed_out.returncode == 124, timed_out.stderr
        assert timed_out.stderr == "batchrun: exp.runfile: still running after --timeout 0.5 s\n"
        waiter = start_batchrun("wait", "exp.runfile", cwd=workdir)
        assert waiter.stdout is not None
        assert waiter.stdout.readline() == f"batchrun: exp.runfile: waiting for the launch (pid {launch.pid})\n"
        gate.touch()
        out, err = waiter.communicate(timeout=60)
        assert launch.wait(timeout=60) == 1
        assert waiter.returncode == 1, err
        assert out == "batchrun: exp.runfile: finished: 2 jobs: 1 succeeded, 1 failed (exit 1)\n"
    finally:
        gate.touch()
        end(launch)


def test_wait_waits_for_jobs_a_detached_local_launch_left(make_runfile: MakeRunfile, workdir: Path) -> None:
    gate = workdir / "gate"
    make_runfile([f"while [ ! -e {gate} ]; do sleep 0.05; done; exit 7"])
    try:
        launched = run_batchrun("launch", "exp.runfile", "--detach", cwd=workdir)
        assert launched.returncode == 0, launched.stderr
        waiter = start_batchrun("wait", "exp.runfile", cwd=workdir)
        assert waiter.stdout is not None
        assert waiter.stdout.readline() == "batchrun: exp.runfile: waiting for 1 detached job(s)\n"
        gate.touch()
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 1, err
        assert out == "batchrun: exp.runfile: finished: 1 job: 0 succeeded, 1 failed (exit 1)\n"
    finally:
        gate.touch()


def test_stop_now_is_ctrl_c_and_wait_then_says_130(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile([f"touch {workdir}/s1; sleep 60", f"touch {workdir}/s2; sleep 60"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "2", "--grace", "1", cwd=workdir)
    try:
        wait_for(lambda: (workdir / "s1").exists() and (workdir / "s2").exists(), what="both jobs to start")
        waiter = start_batchrun("wait", "exp.runfile", "-q", cwd=workdir)
        stop = run_batchrun("stop", "exp.runfile", "--now", cwd=workdir)
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout == f"batchrun: exp.runfile: stopping the launch (pid {launch.pid}) as Ctrl-C does\n"
        assert launch.wait(timeout=60) == 130
        assert waiter.wait(timeout=60) == 130
        end(waiter)
    finally:
        end(launch)


STAND_IN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from batchrun.launch.control import ControlPoller
    from batchrun.store.rundir import RunsDir, acquire_lock

    runs = RunsDir(Path(sys.argv[1]).resolve())
    log = Path(sys.argv[2])
    running = set(sys.argv[3:])
    lock = acquire_lock(runs)
    stopped = []

    def on_stop(now):
        log.open("a").write(f"stop {now}\\n")
        stopped.append(now)

    def on_kill(job_ids):
        log.open("a").write(f"kill {' '.join(job_ids)}\\n")
        return [j for j in job_ids if j in running]

    poller = ControlPoller(runs, on_stop, on_kill)
    poller.start()
    log.open("a").write("ready\\n")
    while not stopped:
        time.sleep(0.05)
    poller.stop()
    lock.release()
    """
)


def test_kill_and_stop_reach_the_launch_through_its_poller(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo alpha", "echo beta --lr=0.3", "echo gamma"])
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 0
    from batchrun.runfile.file import job_id_of

    alpha, beta, gamma = (job_id_of(c) for c in ("echo alpha", "echo beta --lr=0.3", "echo gamma"))
    log = workdir / "stand-in.log"
    stand_in = subprocess.Popen([sys.executable, "-c", STAND_IN, "runs/exp", str(log), alpha, beta], cwd=workdir)
    try:
        wait_for(lambda: log.exists() and "ready" in log.read_text(), what="the stand-in launch")
        kill = run_batchrun("kill", "exp.runfile", "1", "lr=0.3", gamma[:9], cwd=workdir)
        assert kill.returncode == 0, kill.stderr
        assert kill.stdout == (
            f"batchrun: exp.runfile: killing job {alpha} (line 1): echo alpha\n"
            f"batchrun: exp.runfile: killing job {beta} (line 2): echo beta --lr=0.3\n"
        )
        assert kill.stderr == f"batchrun: warning: job {gamma} (line 3) is not running (it is succeeded); not killed\n"
        none = run_batchrun("kill", "exp.runfile", "3", cwd=workdir)
        assert none.returncode == 2
        assert none.stderr.splitlines()[-1] == f"batchrun: error: none of the named jobs is running in the launch of exp.runfile (pid {stand_in.pid}); see batchrun status exp.runfile"
        bad = run_batchrun("kill", "exp.runfile", "nosuchjob", cwd=workdir)
        assert bad.returncode == 2 and bad.stderr.startswith("batchrun: error: no job matches 'nosuchjob'")
        stop = run_batchrun("stop", "exp.runfile", cwd=workdir)
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout == f"batchrun: exp.runfile: the launch (pid {stand_in.pid}) starts no new job and ends when its running jobs end\n"
        assert stand_in.wait(timeout=30) == 0
        assert log.read_text().splitlines() == ["ready", f"kill {alpha} {beta} {gamma}", f"kill {gamma}", "stop False"]
    finally:
        stand_in.kill()
        stand_in.wait()


def test_on_finish_runs_once_with_the_counts_and_never_raises(tmp_path: Path) -> None:
    runs = RunsDir(tmp_path / "runs")
    runs.create()
    counts = {"succeeded": 3, "failed": 1, "pending": 0, "removed": 2}
    result = run_on_finish('echo "$BATCHRUN_SUCCEEDED $BATCHRUN_FAILED $BATCHRUN_TOTAL $BATCHRUN_EXIT_CODE $BATCHRUN_RUNFILE"; exit 5', counts, runs, 1, Path("q.runfile"))
    assert result.status == 5 and result.error is None
    assert result.log_path.read_text().splitlines()[1:] == ["3 1 4 1 q.runfile"]
    hung = run_on_finish("sleep 60 & sleep 60", counts, runs, 0, timeout=0.3)
    assert hung.status == -signal.SIGKILL and hung.error == "killed after 0.3 s"
    shutil.rmtree(runs.path)
    broken = run_on_finish("true", counts, runs, 0)
    assert broken.status is None and broken.error is not None and broken.error.startswith("cannot run it: ")


def _slurm_usable() -> bool:
    if any(shutil.which(c) is None for c in ("sbatch", "squeue", "scancel", "sinfo")):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=15, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.skipif(not _slurm_usable(), reason="SLURM not usable here; start a test cluster with tests/slurm/start-slurm.sh")
def test_wait_for_detached_slurm_jobs_asks_squeue(make_runfile: MakeRunfile, workdir: Path) -> None:
    import os

    name = f"qw{os.getpid()}"
    try:
        make_runfile(["sleep 2; echo done", "sleep 2; exit 3"], f"{name}.runfile")
        launched = run_batchrun("launch", f"{name}.runfile", "--executor", "slurm", "--detach", "-j", "2", cwd=workdir)
        assert launched.returncode == 0, launched.stderr
        waited = run_batchrun("wait", f"{name}.runfile", "--timeout", "120", cwd=workdir, timeout=180)
        assert waited.returncode == 1, waited.stdout + waited.stderr
        assert waited.stdout.splitlines()[-1] == f"batchrun: {name}.runfile: finished: 2 jobs: 1 succeeded, 1 failed (exit 1)"
        # Cancelled outside batchrun before it started (held, so that it cannot start first and
        # leave an exit record): wait does not hang and says interrupted.
        make_runfile(["sleep 300"], f"{name}c.runfile")
        launched = run_batchrun("launch", f"{name}c.runfile", "--executor", "slurm", "--detach", "--sbatch-args=--hold", cwd=workdir)
        assert launched.returncode == 0, launched.stderr
        assert "1 running" in run_batchrun("status", f"{name}c.runfile", cwd=workdir).stdout
        subprocess.run(["scancel", "-n", f"batchrun-{name}c"], check=True)
        waited = run_batchrun("wait", f"{name}c.runfile", "--timeout", "120", cwd=workdir, timeout=180)
        assert waited.returncode == 130, waited.stdout + waited.stderr
        assert "1 detached job ended without an exit record" in waited.stdout
        # status and plan ask squeue too: cancelled outside batchrun, it no longer shows as running.
        status = run_batchrun("status", f"{name}c.runfile", cwd=workdir)
        assert "1 job: 0 succeeded, 0 failed, 1 interrupted, 0 running, 0 pending" in status.stdout, status.stdout
        plan = run_batchrun("plan", f"{name}c.runfile", cwd=workdir)
        assert "1 unfinished (running again), 1 to run" in plan.stdout, plan.stdout
    finally:
        subprocess.run(["scancel", "-n", f"batchrun-{name}"], check=False, capture_output=True)
        subprocess.run(["scancel", "-n", f"batchrun-{name}c"], check=False, capture_output=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_stops_exactly_the_named_job_and_its_children_and_the_launch_goes_on(make_runfile: MakeRunfile, workdir: Path) -> None:
    gate = workdir / "gate"
    doomed = f"sleep 300 & echo $! > {workdir}/child_a; touch {workdir}/started_a; wait"
    spared = f"sleep 300 & echo $! > {workdir}/child_b; while [ ! -e {gate} ]; do sleep 0.05; done; kill $!; echo b >> ran"
    make_runfile([doomed, spared, "echo c >> ran"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "2", "--grace", "1", cwd=workdir)
    try:
        wait_for(lambda: (workdir / "started_a").exists() and (workdir / "child_b").exists(), what="both jobs to start")
        child_a, child_b = (int((workdir / name).read_text()) for name in ("child_a", "child_b"))
        kill = run_batchrun("kill", "exp.runfile", "1", cwd=workdir)
        assert kill.returncode == 0, kill.stderr
        assert kill.stdout == f"batchrun: exp.runfile: killing job {job_id_of(doomed)} (line 1): {doomed}\n"
        wait_for(lambda: not _alive(child_a), what="the killed job's child to be gone")
        # Its slot takes the next job while the other job runs on.
        wait_for(lambda: (workdir / "ran").exists() and "c" in (workdir / "ran").read_text(), what="the next job")
        assert _alive(child_b)
        again = run_batchrun("kill", "exp.runfile", "1", cwd=workdir)
        assert again.returncode == 2 and again.stderr.endswith("see batchrun status exp.runfile\n")
        gate.touch()
        out, err = launch.communicate(timeout=60)
    finally:
        gate.touch()
        end(launch)
    assert launch.returncode == 1, err
    assert (workdir / "ran").read_text().split() == ["c", "b"]
    assert f"KILLED      {job_id_of(doomed)}" in out
    assert "batchrun: exp.runfile: 3 jobs: 2 succeeded, 1 killed (3 ran now)" in out
    status = run_batchrun("status", "exp.runfile", "--state", "killed", cwd=workdir)
    assert status.returncode == 0 and "3 jobs: 2 succeeded, 0 failed, 0 interrupted, 1 killed" in status.stdout
    assert json.loads((workdir / "runs" / "exp" / "metadata.json").read_text())[job_id_of(doomed)]["state"] == "killed"
    # A plain relaunch does not run it again; --retry-failed would (batchrun failed lists it).
    relaunch = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert relaunch.returncode == 1 and "0 to run" in relaunch.stdout
    assert run_batchrun("failed", "exp.runfile", cwd=workdir).stdout == doomed + "\n"
    plan = run_batchrun("launch", "exp.runfile", "--retry-failed", "--dry-run", cwd=workdir)
    assert "1 to run" in plan.stdout


def test_stop_lets_running_jobs_finish_and_starts_no_new_one(make_runfile: MakeRunfile, workdir: Path) -> None:
    gate = workdir / "gate"
    make_runfile([f"touch {workdir}/started; while [ ! -e {gate} ]; do sleep 0.05; done; echo a >> ran", "echo b >> ran"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "1", "--follow", cwd=workdir)
    try:
        wait_for(lambda: (workdir / "started").exists(), what="the first job")
        stop = run_batchrun("stop", "exp.runfile", cwd=workdir)
        assert stop.returncode == 0, stop.stderr
        with open(workdir / "exp.runfile", "a") as f:
            f.write("echo c >> ran\n")
        time.sleep(0.5)  # the launch would see the new line by now; it starts nothing new
        assert launch.poll() is None
        gate.touch()
        out, err = launch.communicate(timeout=60)
    finally:
        gate.touch()
        end(launch)
    assert launch.returncode == 0, err
    assert (workdir / "ran").read_text() == "a\n"
    assert "  stopped by batchrun stop; 1 job did not start; they run with: batchrun launch exp.runfile\n" in out
    assert run_batchrun("wait", "exp.runfile", cwd=workdir).returncode == 0


def test_launch_on_finish_runs_once_with_the_counts_and_keeps_the_exit_code(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["true", "exit 3"])
    note = workdir / "note"
    done = run_batchrun("launch", "exp.runfile", "-q", "--on-finish", f'echo "$BATCHRUN_SUCCEEDED $BATCHRUN_FAILED $BATCHRUN_EXIT_CODE" >> {note}', cwd=workdir)
    assert (done.returncode, done.stderr) == (1, "")
    assert note.read_text() == "1 1 1\n"
    broken = run_batchrun("launch", "exp.runfile", "-q", "--on-finish", "echo oops >&2; exit 5", cwd=workdir)
    log = workdir / "runs" / "exp" / "on-finish.log"
    assert broken.returncode == 1
    assert broken.stderr == f"batchrun: warning: --on-finish command 'echo oops >&2; exit 5' failed (exit 5); its output is in {log}\n"
    assert "oops\n" in log.read_text()
