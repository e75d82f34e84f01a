"""End-to-end tests of `batchrun launch` through the real CLI: real jobs, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    kill_all,
    live_pids_with_env,
    read_metadata,
    run_batchrun,
    start_batchrun,
    wait_for,
)

from batchrun.runfile.file import job_id_of

RunCli = Callable[..., tuple[int, str, str]]
MakeRunfile = Callable[..., Path]


def test_runs_every_line_and_keeps_logs_and_metadata(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["# a comment", "", "echo one", "echo err >&2; exit 3", "python3 -c 'print(42)' --alpha=1"])
    code, out, err = run_cli("launch", "exp.runfile", "-j", "2")
    assert code == 1, err
    runs = workdir / "runs" / "exp"
    meta = read_metadata(runs)
    one, bad, py = job_id_of("echo one"), job_id_of("echo err >&2; exit 3"), job_id_of("python3 -c 'print(42)' --alpha=1")
    assert set(meta) == {one, bad, py}
    assert (runs / "logs" / one / "out.log").read_text() == "one\n"
    assert (runs / "logs" / bad / "err.log").read_text() == "err\n"
    assert (runs / "logs" / py / "out.log").read_text() == "42\n"
    entry = meta[bad]
    assert entry["status"] == 3 and entry["state"] == "failed" and entry["line"] == 4
    assert entry["command"] == "echo err >&2; exit 3"
    for key in ("start", "runtime", "end", "attempts", "host", "pid", "log_dir", "parameters"):
        assert key in entry
    assert meta[py]["parameters"] == {"alpha": "1"}
    assert meta[one]["state"] == "succeeded" and meta[one]["status"] == 0
    assert "1 failed" in out and "--retry-failed" in out


def test_n_jobs_spelling_and_job_environment(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(['echo "$BATCHRUN_JOB_ID $BATCHRUN_SLOT $BATCHRUN_LOG_DIR"', "pwd"])
    code, _, err = run_cli("launch", "exp.runfile", "--n_jobs", "2")
    assert code == 0, err
    job = job_id_of('echo "$BATCHRUN_JOB_ID $BATCHRUN_SLOT $BATCHRUN_LOG_DIR"')
    log_dir = workdir / "runs" / "exp" / "logs" / job
    got_id, slot, got_dir = (log_dir / "out.log").read_text().split()
    assert got_id == job and slot in ("0", "1") and got_dir == str(log_dir)
    pwd_out = workdir / "runs" / "exp" / "logs" / job_id_of("pwd") / "out.log"
    assert pwd_out.read_text().strip() == str(workdir)


def test_resume_skips_finished_retry_failed_and_rerun_all(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo ok >> {side}", f"echo bad >> {side}; exit 1"])
    assert run_cli("launch", "exp.runfile")[0] == 1
    assert side.read_text().splitlines() == ["ok", "bad"]
    code, out, _ = run_cli("launch", "exp.runfile")
    assert code == 1 and "1 failed earlier (skipped)" in out
    assert side.read_text().splitlines() == ["ok", "bad"]
    assert run_cli("launch", "exp.runfile", "--retry-failed")[0] == 1
    assert side.read_text().splitlines() == ["ok", "bad", "bad"]
    assert run_cli("launch", "exp.runfile", "--mode", "retry_failed")[0] == 1
    assert side.read_text().count("bad") == 3
    assert run_cli("launch", "exp.runfile", "--rerun-all")[0] == 1
    assert side.read_text().splitlines()[-2:] == ["ok", "bad"]
    assert run_cli("launch", "exp.runfile", "--mode", "overwrite")[0] == 1
    assert side.read_text().count("ok") == 3
    meta = read_metadata(workdir / "runs" / "exp")
    assert meta[job_id_of(f"echo bad >> {side}; exit 1")]["attempts"] == 5


def test_retry_failed_exits_0_once_the_failure_is_fixed(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    flag = workdir / "flag"
    make_runfile([f"test -e {flag}"])
    assert run_cli("launch", "exp.runfile")[0] == 1
    flag.touch()
    assert run_cli("launch", "exp.runfile")[0] == 1  # resume keeps the failure
    assert run_cli("launch", "exp.runfile", "--retry-failed")[0] == 0


def test_editing_the_runfile_runs_only_new_and_changed_lines(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo a >> {side}", f"echo b >> {side}", f"echo c >> {side}"])
    assert run_cli("launch", "exp.runfile", "-j", "2")[0] == 0
    make_runfile([f"echo a >> {side}", f"echo B >> {side}", f"echo d >> {side}"])
    code, out, _ = run_cli("launch", "exp.runfile", "-j", "2")
    assert code == 0
    assert sorted(side.read_text().split()) == ["B", "a", "b", "c", "d"]
    assert "3 jobs" in out
    meta = read_metadata(workdir / "runs" / "exp")
    removed = job_id_of(f"echo c >> {side}")
    assert removed in meta and meta[removed]["state"] == "succeeded"  # kept, not deleted
    assert (workdir / "runs" / "exp" / "logs" / removed / "out.log").exists()
    code, out, _ = run_cli("launch", "exp.runfile")
    assert code == 0 and "0 to run" in out


def test_a_repeated_line_is_one_job_with_a_warning(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo a >> {side}", f"echo a >> {side}"])
    code, _, err = run_cli("launch", "exp.runfile")
    assert code == 0
    assert err == "batchrun: warning: exp.runfile:2: same command as line 1; it runs once\n"
    assert side.read_text() == "a\n"


def test_one_slow_job_does_not_hold_back_the_others(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    done = workdir / "done"
    done.mkdir()
    # The slow job only ends once every fast job has finished, so the launch
    # can only complete if the fast ones ran while it was running (rolling
    # pool), not in batches waiting for the slowest.
    fast = [f"touch {done}/{i}" for i in range(12)]
    slow = f"while [ $(ls {done} | wc -l) -lt 12 ]; do sleep 0.05; done; echo slow-done"
    make_runfile([slow, *fast])
    proc = run_batchrun("launch", "exp.runfile", "-j", "2", cwd=workdir, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(list(done.iterdir())) == 12
    assert (workdir / "runs" / "exp" / "logs" / job_id_of(slow) / "out.log").read_text() == "slow-done\n"


def test_commands_run_exactly_as_written(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    commands = [
        """echo "double $((1+2))" 'single $HOME' `echo back` $(echo sub)""",
        "printf '%s\\n' ünïcødé ✓",
        "echo " + "x" * 5000,
        'echo $0 $# "$1"',
        "f() { echo in-function; }; f",
    ]
    make_runfile(commands)
    assert run_cli("launch", "exp.runfile")[0] == 0
    logs = workdir / "runs" / "exp" / "logs"
    for command in commands:
        expected = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True).stdout
        assert (logs / job_id_of(command) / "out.log").read_text() == expected, command


def test_kill_9_then_relaunch_runs_each_job_exactly_once(make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    lines = [f"sleep 0.{(i * 7) % 10}; echo {i} >> {side}" for i in range(24)]
    make_runfile(lines)
    proc = start_batchrun("launch", "exp.runfile", "-j", "3", cwd=workdir)
    wait_for(lambda: side.exists() and len(side.read_text().split()) >= 5, what="some jobs to finish")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = run_batchrun("launch", "exp.runfile", "-j", "3", cwd=workdir)
    assert again.returncode == 0, again.stderr
    done = side.read_text().split()
    assert sorted(done, key=int) == [str(i) for i in range(24)], "a job ran twice or was skipped"
    meta = read_metadata(workdir / "runs" / "exp")
    assert {e["state"] for e in meta.values()} == {"succeeded"}
    # A job killed between its start record and its fork is started again
    # (attempt 2) but its command ran once: the side file above proves it.


def test_a_job_running_when_batchrun_dies_is_adopted_not_restarted(make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    started = workdir / "started"
    slow = f"echo start >> {started}; sleep 1.5; echo slow >> {side}"
    make_runfile([slow, f"echo fast >> {side}"])
    proc = start_batchrun("launch", "exp.runfile", "-j", "1", cwd=workdir)
    wait_for(started.exists, what="the slow job to start")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = run_batchrun("launch", "exp.runfile", "-j", "1", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert started.read_text() == "start\n", "the running job was started a second time"
    assert sorted(side.read_text().split()) == ["fast", "slow"]
    assert "still running from an earlier launch" in again.stdout


def test_a_job_that_ended_while_batchrun_was_dead_is_collected(make_runfile: MakeRunfile, workdir: Path) -> None:
    started = workdir / "started"
    make_runfile([f"touch {started}; sleep 0.5; exit 4"])
    proc = start_batchrun("launch", "exp.runfile", cwd=workdir)
    wait_for(started.exists, what="the job to start")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    time.sleep(1.0)  # the job ends with no launch watching
    started.unlink()
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 1
    assert not started.exists(), "the job ran again"
    meta = read_metadata(workdir / "runs" / "exp")
    assert list(meta.values())[0]["status"] == 4


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_every_job_process_and_relaunch_completes(make_runfile: MakeRunfile, workdir: Path, sig: int) -> None:
    side = workdir / "side.txt"
    marker = f"BRTEST{os.getpid()}{sig}"
    # Each job spawns a child that ignores SIGTERM: only SIGKILL after the grace stops it.
    lines = [f"export {marker}=1; sh -c 'trap \"\" TERM; sleep 30' & sleep 30; echo {i} >> {side}" for i in range(3)]
    lines.append(f"echo quick >> {side}")
    make_runfile(lines)
    proc = start_batchrun("launch", "exp.runfile", "-j", "3", "--grace", "1", cwd=workdir)
    try:
        wait_for(lambda: len(live_pids_with_env(marker)) >= 6, what="the jobs and their children to start")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert live_pids_with_env(marker) == [], "a job process outlived batchrun"
    finally:
        kill_all(live_pids_with_env(marker))
    meta = read_metadata(workdir / "runs" / "exp")
    states = sorted(e["state"] for e in meta.values())
    assert states.count("interrupted") == 3
    # Relaunch runs the interrupted jobs again (short ones this time).
    make_runfile([f"echo {i} >> {side}" for i in range(2)])
    assert run_batchrun("launch", "exp.runfile", cwd=workdir).returncode == 0


def test_a_second_ctrl_c_skips_the_grace_period(make_runfile: MakeRunfile, workdir: Path) -> None:
    marker = f"BRTEST{os.getpid()}grace"
    make_runfile([f"export {marker}=1; trap '' TERM; sleep 60"])
    proc = start_batchrun("launch", "exp.runfile", "--grace", "60", cwd=workdir)
    try:
        wait_for(lambda: bool(live_pids_with_env(marker)), what="the job to start")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # waiting out the grace period
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert live_pids_with_env(marker) == []
    finally:
        kill_all(live_pids_with_env(marker))


def test_a_second_launch_is_refused_and_a_killed_one_does_not_block(make_runfile: MakeRunfile, workdir: Path) -> None:
    started = workdir / "started"
    make_runfile([f"touch {started}; sleep 2"])
    first = start_batchrun("launch", "exp.runfile", cwd=workdir)
    try:
        wait_for(started.exists, what="the first launch to start its job")
        second = run_batchrun("launch", "exp.runfile", cwd=workdir)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1
        assert f"another batchrun launch (pid {first.pid})" in second.stderr
        first.send_signal(signal.SIGKILL)
        first.communicate()
        third = run_batchrun("launch", "exp.runfile", cwd=workdir)
        assert third.returncode == 0, third.stderr
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()


def test_metadata_from_the_original_batchrun_counts_as_finished(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side.txt"
    done_ok, done_bad, unfinished = f"echo a >> {side}", f"echo b >> {side}", f"echo c >> {side}"
    make_runfile([done_ok, done_bad, unfinished])
    runs = workdir / "runs" / "exp"
    runs.mkdir(parents=True)
    legacy = {
        job_id_of(done_ok): {"start": 1.0, "runtime": 0.5, "status": 0, "command": done_ok, "parameters": {}},
        job_id_of(done_bad): {"start": 1.0, "runtime": 0.5, "status": 2, "command": done_bad, "parameters": {}},
        job_id_of(unfinished): {"start": 1.0, "runtime": None, "status": None, "command": unfinished, "parameters": {}},
    }
    (runs / "metadata.json").write_text(json.dumps(legacy, indent=2))
    code, out, _ = run_cli("launch", "exp.runfile")
    assert code == 1  # the legacy failure stands
    assert side.read_text() == "c\n"
    meta = read_metadata(runs)
    assert meta[job_id_of(done_ok)]["state"] == "succeeded"
    assert meta[job_id_of(done_bad)]["state"] == "failed"
    assert run_cli("launch", "exp.runfile", "--retry-failed")[0] == 0
    assert side.read_text() == "c\nb\n"


def test_accounting_dir_and_state_db_filename(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["echo hi"])
    code, _, err = run_cli("launch", "exp.runfile", "--accounting_dir", "acc", "--state_db_filename", "state.json")
    assert code == 0, err
    assert (workdir / "acc" / "state.json").exists()
    assert (workdir / "acc" / "logs" / job_id_of("echo hi") / "out.log").read_text() == "hi\n"
    assert not (workdir / "runs").exists()


# -- bad input: one line on stderr, exit 2, no traceback -------------------


def _one_error_line(code: int, err: str, expected: str) -> None:
    assert code == 2
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert expected in err, err


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        (lambda d: None, ["launch", "missing.runfile"], "batchrun: error: missing.runfile: no such runfile"),
        (lambda d: (d / "adir").mkdir(), ["launch", "adir"], "adir: is a directory, not a runfile"),
        (lambda d: (d / "b.runfile").write_bytes(b"\x7fELF\x00\x01"), ["launch", "b.runfile"], "b.runfile:1: binary file"),
        (lambda d: (d / "g.yml").write_text("program: x\n"), ["launch", "g.yml"], "batchrun: error: g.yml: missing 'parameters'"),
        (lambda d: None, ["launch", "none.yml"], "batchrun: error: none.yml: no such gridspec"),
        (lambda d: (d / "r.runfile").write_text("true\n"), ["launch", "r.runfile", "-j", "0"], "expected a whole number of at least 1, not '0'"),
        (lambda d: (d / "r.runfile").write_text("true\n"), ["launch", "r.runfile", "-j", "abc"], "not 'abc'"),
        (lambda d: (d / "r.runfile").write_text("true\n"), ["launch", "r.runfile", "--mode", "bogus"], "invalid choice: 'bogus'"),
        (lambda d: (d / "r.runfile").write_text("true\n"), ["launch", "r.runfile", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir: Path, run_cli: RunCli, setup: Callable[[Path], object], args: list[str], expected: str) -> None:
    setup(workdir)
    code, _, err = run_cli(*args)
    _one_error_line(code, err, expected)


def test_an_empty_runfile_is_nothing_to_do(make_runfile: MakeRunfile, run_cli: RunCli) -> None:
    make_runfile("# only a comment\n\n")
    code, out, err = run_cli("launch", "exp.runfile")
    assert code == 0 and err == ""
    assert "nothing to do" in out


def test_an_unwritable_runs_directory(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["true"])
    (workdir / "afile").write_text("")
    code, _, err = run_cli("launch", "exp.runfile", "--accounting_dir", "afile/sub")
    _one_error_line(code, err, "cannot create the runs directory")


def test_corrupt_metadata_is_set_aside_and_rebuilt(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["true"])
    runs = workdir / "runs" / "exp"
    runs.mkdir(parents=True)
    (runs / "metadata.json").write_text('{"abc": {"status": 0,')
    code, _, err = run_cli("launch", "exp.runfile", "-q")
    assert code == 0
    assert err == f"batchrun: {runs / 'metadata.json'}:1: corrupt metadata (Expecting property name enclosed in double quotes); rebuilt from the job journal, 0 whole entries kept, the damaged file moved to {next(runs.glob('metadata.json.damaged-*')).name}\n"
    assert next(runs.glob("metadata.json.damaged-*")).read_text() == '{"abc": {"status": 0,'
    assert [e["state"] for e in read_metadata(runs).values()] == ["succeeded"]


def test_corrupt_metadata_is_rebuilt_from_the_journal(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo a >> {side}", f"echo b >> {side}"])
    assert run_cli("launch", "exp.runfile")[0] == 0
    runs = workdir / "runs" / "exp"
    (runs / "metadata.json").write_text("garbage")
    code, _, err = run_cli("launch", "exp.runfile")
    assert code == 0 and "damaged" in err and err.count("\n") == 1
    assert side.read_text() == "a\nb\n"  # nothing ran twice
    assert {e["state"] for e in read_metadata(runs).values()} == {"succeeded"}


def test_a_corrupt_journal_is_refused(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["true"])
    runs = workdir / "runs" / "exp"
    runs.mkdir(parents=True)
    (runs / "jobs.journal").write_text("nonsense line\nE aaaaaaaaaaaaaaaa 1 0 1.0 2.0\n")
    code, _, err = run_cli("launch", "exp.runfile")
    _one_error_line(code, err, "jobs.journal:1: corrupt job journal line")


@pytest.mark.slow
@pytest.mark.timeout(300)  # 10,000 real jobs (17-30 s here): its launch may take up to 300 s on a busy machine
def test_ten_thousand_jobs_complete_and_resume_as_a_no_op(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile([f"true {i}" for i in range(10_000)])
    first = run_batchrun("launch", "exp.runfile", "-j", "2", "-q", cwd=workdir, timeout=300)
    assert first.returncode == 0, first.stderr
    meta = read_metadata(workdir / "runs" / "exp")
    assert len(meta) == 10_000
    assert {e["state"] for e in meta.values()} == {"succeeded"}
    journal_before = (workdir / "runs" / "exp" / "jobs.journal").read_text()
    second = run_batchrun("launch", "exp.runfile", "-j", "2", cwd=workdir, timeout=60)
    assert second.returncode == 0
    assert "0 to run" in second.stdout and "(0 ran now)" in second.stdout
    assert (workdir / "runs" / "exp" / "jobs.journal").read_text() == journal_before


def test_halt_now_exits_1_and_wait_then_says_the_same(make_runfile: MakeRunfile, workdir: Path) -> None:
    """One rule for the exit code: the launch stopped by a failure exits 1; `wait` on its records, too (not 130)."""
    make_runfile(["sleep 30", "sleep 0.3; exit 3", "echo never"])
    launch = run_batchrun("launch", "exp.runfile", "-j", "2", "--halt-now", "--grace", "0.5", cwd=workdir)
    assert launch.returncode == 1, launch.stdout + launch.stderr
    assert "1 interrupted" in launch.stdout and "--halt-now" in launch.stdout
    wait = run_batchrun("wait", "exp.runfile", cwd=workdir)
    assert wait.returncode == 1, wait.stdout + wait.stderr


def test_a_launch_refused_for_the_lock_writes_nothing(workdir: Path) -> None:
    """Another launch holds the runs directory: an edited gridspec is not swept, nothing is written."""
    import fcntl

    spec = workdir / "g.yml"
    spec.write_text("program: echo\nparameters:\n  x:\n    values: [1, 2]\n")
    assert run_batchrun("launch", "g.yml", cwd=workdir).returncode == 0
    runfile = workdir / "g.runfile"
    before = runfile.read_bytes()
    spec.write_text("program: echo\nparameters:\n  x:\n    values: [1, 2, 3]\n")
    runs = workdir / "runs" / "g"
    listing = sorted(p.name for p in runs.rglob("*"))
    fd = os.open(runs / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run_batchrun("launch", "g.yml", cwd=workdir)
    finally:
        os.close(fd)
    assert refused.returncode == 2 and "another batchrun launch" in refused.stderr, refused.stderr
    assert "wrote" not in refused.stdout
    assert runfile.read_bytes() == before
    assert sorted(p.name for p in runs.rglob("*")) == listing
