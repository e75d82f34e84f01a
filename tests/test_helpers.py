"""The per-slot helpers (`executors.slots`, `executors._slot_helper`): protocol, records, crashes.

Unit tests drive a `HelperPool` directly; the last ones go through the real CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import exit_text, kill_all, live_pids_with_env, read_metadata, run_batchrun, wait_for

from batchrun.executors import ExecutorOptions, jobfiles
from batchrun.executors.jobfiles import job_lock_held, read_exit_record
from batchrun.executors.local._slot_helper import KILL_HOOK, MAX_ARG_STRLEN
from batchrun.executors.local.executor import LocalExecutor
from batchrun.executors.local.helpers import SlotHelper, Ticket
from batchrun.executors.local.pool import HelperPool
from batchrun.executors.supervisor import become_subreaper

JOB_ID = "0123456789abcdef"


@pytest.fixture()
def marker() -> Iterator[str]:
    name = f"BRSLOT{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


@pytest.fixture()
def pool() -> Iterator[HelperPool]:
    slots = HelperPool()
    yield slots
    slots.close()


def _env(log_dir: Path, marker: str, attempt: int = 1, **extra: str) -> dict[str, str]:
    return dict(os.environ, BATCHRUN_JOB_ID=JOB_ID, BATCHRUN_LOG_DIR=str(log_dir), BATCHRUN_ATTEMPT=str(attempt), **{marker: "1"}, **extra)


def _run(pool: HelperPool, log_dir: Path, command: str, env: dict[str, str]) -> int | None:
    ended = pool.wait(pool.start(JOB_ID, command, str(log_dir), env))
    return None if ended is None else ended[0]


def test_a_job_runs_as_sh_c_and_its_helper_records_the_exit_and_attempt(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir = tmp_path / "log"
    assert _run(pool, log_dir, 'echo "$0 $#"; echo err >&2; exit 7', _env(log_dir, marker, attempt=3)) == 7
    assert (log_dir / "out.log").read_text() == "/bin/sh 0\n"
    assert (log_dir / "err.log").read_text() == "err\n"
    assert exit_text(log_dir) == "7 3\n"
    assert read_exit_record(log_dir, 3) is not None and read_exit_record(log_dir, 2) is None
    assert not job_lock_held(log_dir), "the helper still holds the job's lock after answering"


def test_the_job_leads_its_session_and_group_with_the_given_stdin_env_and_no_ignored_signals(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir = tmp_path / "log"
    line = 'read -r x; echo "read=$?"; cut -d" " -f1,5,6 /proc/$$/stat; grep SigIgn /proc/self/status; echo "$ONLY_HERE"; umask; pwd'
    assert _run(pool, log_dir, line, _env(log_dir, marker, ONLY_HERE="one")) == 0
    pid, pgrp, sid = (log_dir / "out.log").read_text().splitlines()[1].split()
    assert pid == pgrp == sid
    reference = subprocess.run(["/bin/sh", "-c", "umask; pwd"], capture_output=True, text=True, start_new_session=True)
    assert (log_dir / "out.log").read_text().splitlines()[2:] == ["SigIgn:\t0000000000000000", "one", *reference.stdout.splitlines()]
    assert (log_dir / "out.log").read_text().splitlines()[0] == "read=1"
    # The helper keeps the environment between jobs: a variable the next job lacks must be gone.
    assert _run(pool, log_dir, 'echo "[${ONLY_HERE-unset}]"', _env(log_dir, marker)) == 0
    assert (log_dir / "out.log").read_text() == "[unset]\n"


def test_signals_batchrun_was_started_ignoring_are_not_ignored_by_its_jobs(tmp_path: Path, marker: str) -> None:
    # As under `nohup` or `&` in a script: the helper inherits SIG_IGN; its jobs must not.
    slots = HelperPool()
    log_dir = tmp_path / "log"
    ignored = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1)
    before = {signum: signal.signal(signum, signal.SIG_IGN) for signum in ignored}
    try:
        # The first start forks the helper, with those signals ignored.
        pid = slots.start(JOB_ID, "grep SigIgn /proc/self/status; kill -USR1 $$; echo not reached", str(log_dir), _env(log_dir, marker))
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    try:
        ended = slots.wait(pid)
        assert ended is not None and ended[0] == -signal.SIGUSR1
        assert (log_dir / "out.log").read_text() == "SigIgn:\t0000000000000000\n"
        # The helper itself still ignores them: a stray SIGINT or SIGHUP must not kill the record's writer.
        helper = slots._slots[0]
        for signum in (signal.SIGINT, signal.SIGHUP):
            helper.proc.send_signal(signum)
        assert _run(slots, log_dir, "exit 3", _env(log_dir, marker)) == 3
        assert helper.proc.poll() is None
    finally:
        slots.close()


def test_signals_batchrun_was_started_with_blocked_are_unblocked_in_the_helper_and_its_jobs(tmp_path: Path, marker: str) -> None:
    """Under `perf` or a process manager that blocks signals: the helper clears the mask once, so it never needs a fork per job to clear it in each."""
    slots = HelperPool()
    log_dir = tmp_path / "log"
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGWINCH})
    try:
        pid = slots.start(JOB_ID, "grep SigBlk /proc/self/status", str(log_dir), _env(log_dir, marker))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        helper = slots._busy[pid][0]
        assert slots.wait(pid) is not None
        assert (log_dir / "out.log").read_text() == "SigBlk:\t0000000000000000\n"
        status = Path(f"/proc/{helper.proc.pid}/status").read_text()
        assert "SigBlk:\t0000000000000000\n" in status
    finally:
        slots.close()


def test_a_helper_sets_jobs_variables_without_growing(tmp_path: Path) -> None:
    """glibc's setenv keeps every value it was given: the helper's own environment must not grow with the jobs it runs (about 200 bytes a job)."""
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from batchrun.executors.local import _slot_helper as h
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
env = {{}}
h._apply(env, [b"STABLE=1", b"BATCHRUN_JOB_ID=0"])
before = rss()
for i in range(200_000):
    h._apply(env, [b"BATCHRUN_JOB_ID=%016x" % i, b"BATCHRUN_LOG_DIR=/runs/exp/logs/%016x" % i, b"GONE=%d" % i, b"GONE"])
assert h._own_env
print(rss() - before)
print(os.popen("echo $BATCHRUN_JOB_ID $STABLE ${{GONE-unset}}").read().strip())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    grown_kb, seen = done.stdout.splitlines()
    assert seen == "0000000000030d3f 1 unset"  # the last job's value, the kept one, the removed one
    assert int(grown_kb) < 4096, f"the helper grew {grown_kb} kB over 200,000 jobs"


def test_two_jobs_sent_to_one_helper_at_once_each_run_with_their_own_variables(tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job queued behind one just sent to the same helper: the second request's
    environment changes were computed from what the helper had before the first
    (outside the lock), so the second job ran with the first one's BATCHRUN_JOB_ID
    and metrics path (a job given back and sent again to the helper it had been
    sent to: an empty change). The fault is placed exactly: the first sender is
    held in its write while the second one sends."""
    helper = SlotHelper()
    writing, go_on = threading.Event(), threading.Event()
    real_write = SlotHelper._write

    def held_write(self: SlotHelper, data: bytes) -> None:
        if threading.current_thread().name == "first":
            writing.set()
            go_on.wait(10)
        real_write(self, data)

    monkeypatch.setattr(SlotHelper, "_write", held_write)
    dirs = {name: tmp_path / name for name in ("a", "b")}
    command = 'echo "$BATCHRUN_JOB_ID"'
    tickets: dict[str, Ticket] = {}

    def send(name: str) -> None:
        tickets[name] = helper.send(name * 16, command, str(dirs[name]), {**_env(dirs[name], marker), "BATCHRUN_JOB_ID": name * 16})

    try:
        # The helper last ran a job with b's variables: b's request, from that stale base, changes nothing.
        send("b")
        assert helper.started(tickets["b"]) is not None and helper.wait(tickets["b"], 30) is not None
        first = threading.Thread(target=send, args=("a",), name="first")
        first.start()
        assert writing.wait(10)
        second = threading.Thread(target=send, args=("b",), name="second")
        second.start()
        second.join(0.3)  # it computes its changes now (before the fix), or waits for the lock
        go_on.set()
        first.join(10)
        second.join(10)
        for name in ("a", "b"):
            assert helper.started(tickets[name]) is not None
            assert helper.wait(tickets[name], 30) is not None
        assert {name: (dirs[name] / "out.log").read_text() for name in dirs} == {"a": "a" * 16 + "\n", "b": "b" * 16 + "\n"}
    finally:
        go_on.set()
        helper.close()


def test_one_helper_serves_job_after_job(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    for i in range(5):
        log_dir = tmp_path / str(i)
        assert _run(pool, log_dir, f"exit {i}", _env(log_dir, marker)) == i
    assert len(pool._slots) == 1


def test_warmed_helpers_serve_the_first_jobs_and_none_more_is_started(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    """`warm` starts the slots' helpers ahead (while the launch loads doit); the jobs then use them, and a dead one is replaced."""
    pool.warm(2)
    warmed = {helper.proc.pid for helper in pool._slots.values()}
    assert len(warmed) == 2
    pool.warm(1)  # as many idle already: nothing started
    assert {helper.proc.pid for helper in pool._slots.values()} == warmed
    first, second = tmp_path / "a", tmp_path / "b"
    a = pool.start(JOB_ID, "sleep 0.2", str(first), _env(first, marker))
    b = pool.start(JOB_ID, "exit 3", str(second), _env(second, marker))
    assert {helper.proc.pid for helper, _ticket in pool._busy.values()} == warmed
    assert pool.wait(b) is not None and pool.wait(a) is not None
    os.kill(pool._slots[0].proc.pid, signal.SIGKILL)  # died idle, before its next request
    pool._slots[0].proc.wait()
    third = tmp_path / "c"
    assert _run(pool, third, "exit 4", _env(third, marker)) == 4


def test_the_helper_says_whether_the_job_left_a_metrics_file(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir = tmp_path / "log"
    env = _env(log_dir, marker, BATCHRUN_METRICS=str(log_dir / "metrics.jsonl"))
    ended = pool.wait(pool.start(JOB_ID, "true", str(log_dir), env))
    assert ended is not None and ended[:2] == (0, True)
    # What the job used comes with its end, as its record holds it.
    assert ended[2] is not None and ended[2][0] > 0, "the job's peak memory did not come with its end"
    ended = pool.wait(pool.start(JOB_ID, 'echo "{}" > "$BATCHRUN_METRICS"; exit 1', str(log_dir), env))
    assert ended is not None and ended[:2] == (1, False)


def test_a_line_too_long_for_one_argument_runs_from_its_command_file(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir = tmp_path / "log"
    line = "x=" + "a" * MAX_ARG_STRLEN + '; echo "${#x} $0"; exit 4'
    assert _run(pool, log_dir, line, _env(log_dir, marker)) == 4
    assert (log_dir / "out.log").read_text() == f"{MAX_ARG_STRLEN} /bin/sh\n"
    assert (log_dir / "command.sh").read_text() == line


def test_a_job_that_cannot_start_raises_and_the_helper_stays_usable(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir = tmp_path / "missing" / "log"
    with pytest.raises(OSError, match="No such file"):
        pool.start(JOB_ID, "true", str(log_dir), _env(log_dir, marker))
    with pytest.raises(OSError, match="embedded null byte"):
        pool.start(JOB_ID, "echo a\0b", str(tmp_path / "nul"), _env(tmp_path / "nul", marker))
    # A value no environment can hold (the helper passes its own environment on while it can).
    with pytest.raises(OSError, match="embedded null byte"):
        pool.start(JOB_ID, "true", str(tmp_path / "nul-env"), _env(tmp_path / "nul-env", marker, BAD="a\0b"))
    ok = tmp_path / "ok"
    assert _run(pool, ok, 'echo "[${BAD-unset}]"; exit 3', _env(ok, marker)) == 3
    assert (ok / "out.log").read_text() == "[unset]\n"
    assert len(pool._slots) == 1, "a job that could not start cost its helper"


def test_a_job_killed_by_a_signal_gets_no_record(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir = tmp_path / "log"
    assert _run(pool, log_dir, "kill -TERM $$", _env(log_dir, marker)) == -signal.SIGTERM
    assert exit_text(log_dir) is None


def test_a_job_a_launch_stops_is_recorded_with_the_stop_it_noted_even_if_it_exits_0(tmp_path: Path, marker: str) -> None:
    executor = LocalExecutor(ExecutorOptions(runs_dir=str(tmp_path)))
    log_dir = tmp_path / "logs" / JOB_ID
    log_dir.parent.mkdir()
    ready = tmp_path / "ready"
    try:
        ref = executor.start(JOB_ID, f"trap 'exit 0' TERM; touch {ready}; while :; do sleep 0.05; done", str(log_dir), _env(log_dir, marker))
        wait_for(ready.exists, what="the job to trap TERM")
        # The stop path notes the stop before its first signal (`launch.stopper`); the executor only delivers.
        assert jobfiles.note_stop(log_dir, "killed", 1)
        assert executor.signal(JOB_ID, ref, signal.SIGTERM)
        assert executor.wait(ref) == 0
        assert exit_text(log_dir) == "0 1 killed\n", "a stopped job's trapped exit 0 was taken for an end of its own"
        # The next attempt in the same log directory is recorded plainly again.
        ref = executor.start(JOB_ID, "exit 5", str(log_dir), _env(log_dir, marker, attempt=2))
        assert executor.wait(ref) == 5
        assert exit_text(log_dir) == "5 2\n"
    finally:
        executor.close()


def test_closing_the_pipe_lets_the_helper_finish_and_record_its_job(tmp_path: Path, marker: str) -> None:
    """As on a kill -9 of batchrun: EOF while the job runs."""
    pool = HelperPool()
    log_dir, gate = tmp_path / "log", tmp_path / "gate"
    pool.start(JOB_ID, f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 6", str(log_dir), _env(log_dir, marker))
    helper = next(iter(pool._busy.values()))[0]
    pool.close()
    assert job_lock_held(log_dir)
    gate.touch()
    assert helper.proc.wait(timeout=60) == 0
    assert exit_text(log_dir) == "6 1\n"
    assert not job_lock_held(log_dir)


def test_a_sigkilled_helper_leaves_its_job_running_and_the_waiter_follows_its_lock(pool: HelperPool, tmp_path: Path, marker: str) -> None:
    log_dir, gate = tmp_path / "log", tmp_path / "gate"
    # Launches run in this test process (cli.main) made it a subreaper: it would then reap the job itself.
    become_subreaper(False)
    pid = pool.start(JOB_ID, f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done", str(log_dir), _env(log_dir, marker))
    helper = pool._busy[pid][0]
    helper.proc.kill()
    helper.proc.wait()
    assert pool.wait(pid, timeout=0.2) is None, "the job still runs: the wait must time out"
    assert os.path.exists(f"/proc/{pid}") and job_lock_held(log_dir)
    gate.touch()
    # Not a subreaper (a launch is: tests/test_cli_lifecycle.py), so the job is nobody's to reap here and no
    # helper wrote a record: it ended unseen, never a failure.
    assert pool.wait(pid) == (jobfiles.Unrecorded.LOST, False, None)
    assert (log_dir / "out.log").read_text() == "done\n"
    # The pool replaces the dead helper.
    other = tmp_path / "other"
    assert _run(pool, other, "exit 2", _env(other, marker)) == 2


def _kill_9_launch(workdir: Path, make_runfile: Callable[..., Path], line: str, extra_env: dict[str, str]) -> None:
    make_runfile([line])
    launch = subprocess.run([sys.executable, "-m", "batchrun", "launch", "exp.runfile", "-q"], cwd=workdir, env={**os.environ, **extra_env},
                            capture_output=True, text=True, timeout=120)
    assert launch.returncode == -signal.SIGKILL, launch.stderr


def test_the_job_ending_in_the_instant_batchrun_is_killed_is_recorded_once(workdir: Path, make_runfile: Callable[..., Path], marker: str) -> None:
    """The helper SIGKILLs batchrun after the job ended and before its record (KILL_HOOK): the relaunch collects it."""
    side = workdir / "side"
    line = f"export {marker}=1; echo ran >> {side}; exit 3"
    _kill_9_launch(workdir, make_runfile, line, {KILL_HOOK: "1"})
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 1, again.stderr
    assert side.read_text() == "ran\n", "the job ran twice"
    (entry,) = read_metadata(workdir / "runs" / "exp").values()
    assert (entry["state"], entry["status"]) == ("failed", 3)


def test_a_sigkilled_helper_through_the_cli_then_a_relaunch_adopts_the_job(workdir: Path, make_runfile: Callable[..., Path], marker: str) -> None:
    """The job outlives its helper and batchrun; the relaunch adopts it, then (no record: its writer died) runs it again."""
    side, gate, ready = workdir / "side", workdir / "gate", workdir / "ready"
    make_runfile([f"export {marker}=1; touch {ready}; while [ ! -e {gate} ]; do sleep 0.02; done; echo ran >> {side}"])
    launch = subprocess.Popen([sys.executable, "-m", "batchrun", "launch", "exp.runfile", "-q"], cwd=workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready.exists, timeout=60, what="the job to start")
        helpers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_helper_of(int(p), launch.pid)]
        assert len(helpers) == 1
        os.kill(helpers[0], signal.SIGKILL)
        launch.kill()  # and batchrun, before the job ends
        launch.wait()
    finally:
        if launch.poll() is None:
            launch.kill()
        launch.communicate()
    (log_dir,) = (workdir / "runs" / "exp" / "logs").iterdir()
    assert job_lock_held(log_dir), "the job died with its helper"
    again = subprocess.Popen([sys.executable, "-m", "batchrun", "launch", "exp.runfile"], cwd=workdir,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert again.stdout is not None
        seen = []
        while not any("adopted" in line for line in seen):
            line = again.stdout.readline()
            assert line, f"the relaunch ended before adopting the job: {seen}"
            seen.append(line)
        gate.touch()
        _, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 0, err
    assert side.read_text() == "ran\nran\n"
    (entry,) = read_metadata(workdir / "runs" / "exp").values()
    assert (entry["state"], entry["attempts"]) == ("succeeded", 2)


def _is_helper_of(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return int(stat[stat.rindex(b")") + 2 :].split()[1]) == parent and b"_slot_helper.py" in cmdline
