"""Tests of what a launch shows: plain lines when piped, a live area on a terminal, the summary."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

from conftest import batchrun_cmd

from batchrun.cli.display import Progress, plan_lines, summary_lines
from batchrun.launch.launch import JobEvent, LaunchResult, Plan
from batchrun.results.tables import format_duration
from batchrun.runfile.file import Job, job_id_of
from batchrun.store.records import STATES, JobRecord, State

MakeRunfile = Callable[..., Path]

# Any ANSI escape sequence (colour, cursor movement).
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def job(command: str, lineno: int = 1) -> Job:
    return Job(command, job_id_of(command), lineno)


def record(command: str, state: str, status: int | None, runtime: float = 1.5, attempts: int = 1) -> JobRecord:
    rec = JobRecord(job_id_of(command))
    rec.state, rec.status, rec.start, rec.end, rec.attempts = state, status, 100.0, 100.0 + runtime, attempts
    return rec


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0.314, 12.04, 245, 7380)] == ["-", "0.31s", "12.0s", "4m05s", "2h03m"]


def test_piped_progress_prints_one_plain_line_per_finished_job() -> None:
    out = io.StringIO()
    progress = Progress(out, total=4, done_before=1, failed_before=0, n_jobs=2)
    progress.start()
    a, b, c = job("echo a"), job("exit 2", 2), job("sleep 9", 3)
    progress(JobEvent("start", a, record("echo a", State.RUNNING, None), 0))
    progress(JobEvent("start", b, record("exit 2", State.RUNNING, None), 1))
    progress(JobEvent("adopt", c, record("sleep 9", State.RUNNING, None), 1))
    progress(JobEvent("end", a, record("echo a", State.SUCCEEDED, 0, 0.25), 0))
    progress(JobEvent("retry", b, record("exit 2", State.FAILED, 2), 1))
    progress(JobEvent("end", b, record("exit 2", State.FAILED, 2, attempts=2), 1))
    progress(JobEvent("end", c, record("sleep 9", State.INTERRUPTED, None), 1))
    progress.close()
    assert out.getvalue().splitlines() == [
        f"adopted   {c.job_id}  still running from an earlier launch: sleep 9",
        f"ok          {a.job_id}    0.25s  [2/4]  echo a",
        f"retrying    {b.job_id}  attempt 1 failed (exit 2)  exit 2",
        f"FAILED(2)   {b.job_id}    1.50s  [3/4]  exit 2",
        f"INTERRUPTED {c.job_id}    1.50s  (runs again)  sleep 9",
    ]
    assert (progress.done, progress.failed, progress.running) == (3, 1, {})
    assert "3/4 done, 1 failed, 0 running, 1 left" in progress.status_text()


def test_quiet_progress_prints_nothing() -> None:
    out = io.StringIO()
    progress = Progress(out, total=1, done_before=0, failed_before=0, n_jobs=1, quiet=True)
    progress.start()
    progress(JobEvent("start", job("true"), record("true", State.RUNNING, None), 0))
    progress(JobEvent("end", job("true"), record("true", State.SUCCEEDED, 0), 0))
    progress.close()
    assert out.getvalue() == ""


def test_eta_comes_from_the_runtimes_seen_so_far() -> None:
    progress = Progress(io.StringIO(), total=10, done_before=2, failed_before=0, n_jobs=2)
    assert progress.eta() is None
    for i in range(2):
        command = f"job {i}"
        progress(JobEvent("end", job(command), record(command, State.SUCCEEDED, 0, runtime=4.0), 0))
    # 6 jobs left at 4 s each on 2 slots.
    assert progress.eta() == 12.0


def test_plan_and_summary_lines() -> None:
    plan = Plan(to_run=[job("a")], adopt=[], new=1, succeeded=3, failed=2, failed_skipped=2, rerun_unfinished=0, recovered=0, removed=0)
    assert plan_lines(plan, 6, "resume") == ["6 jobs, 3 already succeeded, 2 failed earlier (skipped), 1 to run"]
    failed = [(job(f"exit {i}", i), record(f"exit {i}", State.FAILED, i)) for i in range(1, 8)]
    counts = dict.fromkeys(STATES, 0)
    counts.update({State.SUCCEEDED: 3, State.FAILED: 7})
    result = LaunchResult(counts=counts, failed=failed, interrupted=False, ran=5, metadata_path=Path("/r/exp/metadata.json"), runs_dir=Path("/r/exp"))
    lines = summary_lines(result, "my exp.runfile", 2)
    assert lines[0] == "batchrun: my exp.runfile: 10 jobs: 3 succeeded, 7 failed (5 ran now)"
    assert lines[1] == f"  failed (exit 1): {job_id_of('exit 1')}  line 1  exit 1"
    assert lines[6] == "  ... and 2 more: batchrun status 'my exp.runfile' --state failed,timeout,killed"
    assert f"  see a failed job's output: batchrun logs 'my exp.runfile' {job_id_of('exit 1')[:8]} --err  (or its line number)" in lines
    assert "  rerun the failed jobs with: batchrun launch 'my exp.runfile' --retry-failed" in lines
    assert lines[-1] == "  metadata: /r/exp/metadata.json"


def test_a_piped_launch_prints_plain_lines(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo a", "exit 3", "echo c"])
    proc = subprocess.run(batchrun_cmd("launch", "exp.runfile", "-j", "2"), cwd=workdir, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert not ANSI.search(proc.stdout), proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0] == "batchrun: exp.runfile: 3 jobs, 3 to run"
    assert sorted(line.split()[0] for line in lines[1:4]) == ["FAILED(3)", "ok", "ok"]
    assert lines[4] == "batchrun: exp.runfile: 3 jobs: 2 succeeded, 1 failed (3 ran now)"
    assert f"batchrun logs exp.runfile {job_id_of('exit 3')[:8]} --err" in proc.stdout


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run a command with a pseudo-terminal of 100x24 as its stdout; returns (exit code, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_a_launch_on_a_terminal_shows_a_live_progress_area(make_runfile: MakeRunfile, workdir: Path) -> None:
    lines = [f"sleep 0.5; echo {i}" for i in range(6)] + ["sleep 0.5; exit 4"]
    make_runfile(lines)
    code, output = run_in_terminal(batchrun_cmd("launch", "exp.runfile", "-j", "2"), workdir)
    assert code == 1, output
    assert "Traceback" not in output
    plain = ANSI.sub("", output)
    assert "\x1b[" in output  # redrawn in place
    assert re.search(r"━+.* \d+/7 done, \d failed, \d running, \d left \| [\d.]+s elapsed, ETA ", plain), plain
    assert "7/7 done, 1 failed, 0 running, 0 left" in plain
    assert re.search(r"slot [01] +[\d.]+s  [0-9a-f]{8}  sleep 0.5", plain), plain  # the running jobs
    assert f"FAILED(4)   {job_id_of('sleep 0.5; exit 4')}" in plain  # printed above the area
    assert "batchrun: exp.runfile: 7 jobs: 6 succeeded, 1 failed (7 ran now)" in plain
    assert f"batchrun logs exp.runfile {job_id_of('sleep 0.5; exit 4')[:8]} --err" in plain
