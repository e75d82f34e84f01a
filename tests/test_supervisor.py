"""The one job supervisor (`executors/supervisor.py`): a job runs as `/bin/sh -c LINE` and its end is recorded.

Driven as the library the slot helpers and the Dask fork server use, and as
the script every SLURM array task runs (`python -I -S supervisor.py`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from batchrun.executors import supervisor
from batchrun.executors.jobfiles import job_lock_held, read_exit_record

SCRIPT = supervisor.__file__


def _env(log_dir: Path, attempt: str = "1") -> dict[str, str]:
    return dict(os.environ, BATCHRUN_JOB_ID="0123456789abcdef", BATCHRUN_LOG_DIR=str(log_dir), BATCHRUN_ATTEMPT=attempt)


def _script(log_dir: Path, command: str, attempt: str = "1", cwd: str | None = None, ignoring: int | None = None) -> subprocess.CompletedProcess[bytes]:
    """The supervisor as a SLURM task runs it: the line on stdin (started ignoring the signal `ignoring`, as under nohup)."""
    log_dir.mkdir(exist_ok=True)
    args = [sys.executable, "-I", "-S", SCRIPT, *(["--cwd", cwd] if cwd else []), str(log_dir)]
    ignore = None if ignoring is None else (lambda: signal.signal(ignoring, signal.SIG_IGN) and None)
    return subprocess.run(args, input=command.encode(), env=_env(log_dir, attempt), capture_output=True, timeout=60, check=False, preexec_fn=ignore)


def _library(log_dir: Path, command: str, attempt: str = "1") -> supervisor.Ended:
    env = {k.encode(): v.encode() for k, v in _env(log_dir, attempt).items()}
    job = supervisor.start(command.encode(), str(log_dir).encode(), env, attempt.encode())
    assert job_lock_held(log_dir), "the job runs without its liveness lock"
    return supervisor.finish(job)


# Lines that could end or steer a shell wrapped around them (`exit`, `exec`,
# `trap`, a function shadowing `echo`, ...): the supervisor is no shell, so none can skip the record.
STEERING = ["exit 3", "set -e; false; echo no", "trap 'echo t' EXIT; true", "exec echo replaced", "f() { return 4; }; f",
            ". /dev/null; exit 5", "BATCHRUN_LOG_DIR=/nowhere; true", "unset HOME; shift; true", "eval 'exit 6'",
            "echo() { :; }; true", "BATCHRUN_ATTEMPT=9; exit 4", "__batchrun_attempt=9; false"]
PLAIN = ["true 1", "python3 -c pass", "echo $BATCHRUN_LOG_DIR", "cd /tmp && ls >/dev/null", "false", "echo $0 $#",
         "exec sh -c 'exit 7'", "printf '%s\\n' a b; (exit 2)", "x=1; echo $x", "echo out; echo err >&2; sh -c 'exit 9'"]


@pytest.mark.parametrize("command", STEERING + PLAIN)
def test_a_job_behaves_as_sh_c_and_its_status_is_recorded_whatever_the_line_does(tmp_path: Path, command: str) -> None:
    log_dir = tmp_path / "log"
    direct = subprocess.run(["/bin/sh", "-c", command], capture_output=True, env=_env(log_dir), start_new_session=True, stdin=subprocess.DEVNULL)
    done = _script(log_dir, command, attempt="2")
    assert (done.returncode, (log_dir / "out.log").read_bytes(), (log_dir / "err.log").read_bytes()) == (direct.returncode, direct.stdout, direct.stderr)
    assert (log_dir / "exit").read_text() == f"{direct.returncode} 2\n", "the record names the attempt the job was started as"
    assert read_exit_record(log_dir, 2) is not None and read_exit_record(log_dir, 1) is None
    assert not job_lock_held(log_dir), "the lock outlived the record"
    assert done.stdout == done.stderr == b"", "the supervisor itself said something"


def test_the_job_leads_its_own_session_with_no_ignored_or_blocked_signal_and_no_extra_descriptor(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    line = 'cut -d" " -f1,5,6 /proc/$$/stat; grep -E "^Sig(Ign|Blk)" /proc/self/status; ls /proc/$$/fd; read -r x; echo "read=$?"'
    # As under nohup: the supervisor inherits SIGHUP ignored, the job must not.
    assert _script(log_dir, line, ignoring=signal.SIGHUP).returncode == 0
    lines = (log_dir / "out.log").read_text().splitlines()
    pid, pgrp, sid = lines[0].split()
    assert pid == pgrp == sid
    assert lines[1:] == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000", "0", "1", "2", "read=1"]
    # wait4's account of the job, kept for what is to measure it.
    ended = _library(log_dir, "true")
    assert ended.returncode == 0 and ended.recorded and ended.rusage.ru_maxrss > 0


def test_a_job_killed_by_a_signal_gets_no_record_and_one_stopped_on_purpose_records_the_stop(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    assert _library(log_dir, "kill -TERM $$").returncode == -signal.SIGTERM
    assert not (log_dir / "exit").exists()
    # The stop note, left before a stop's first signal: even an `exit 0` is no finished job, but the stop's state.
    assert supervisor.note_stop(log_dir, "stopped", 1)
    env = {k.encode(): v.encode() for k, v in _env(log_dir).items()}
    job = supervisor.start(b"exit 0", str(log_dir).encode(), env, b"1", fresh=False)
    assert supervisor.finish(job).returncode == 0
    assert (log_dir / "exit").read_text() == "0 1 stopped\n"
    assert read_exit_record(log_dir, 1)[::2] == (0, "stopped")  # type: ignore[index]
    # Killed by the stop's signal: recorded too, with the shell's status.
    job = supervisor.start(b"kill -KILL $$", str(log_dir).encode(), env, b"1", fresh=False)
    assert supervisor.finish(job).returncode == -signal.SIGKILL
    assert (log_dir / "exit").read_text() == "137 1 stopped\n"
    # A fresh start (the next attempt) clears the note and the record is plain again.
    assert _library(log_dir, "exit 5", attempt="2").recorded
    assert (log_dir / "exit").read_text() == "5 2\n"


def test_a_stop_note_for_another_attempt_is_an_earlier_attempts_and_ignored(tmp_path: Path) -> None:
    """A Dask claim while attempt 1's supervisor still held run.lock kept its note: attempt 2 must still record."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    assert supervisor.note_stop(log_dir, "interrupted", 1)
    env = {k.encode(): v.encode() for k, v in _env(log_dir, "2").items()}
    job = supervisor.start(b"exit 0", str(log_dir).encode(), env, b"2", fresh=False)
    assert supervisor.finish(job).recorded
    assert (log_dir / "exit").read_text() == "0 2\n"


def test_an_empty_stop_note_of_the_previous_release_is_a_stop_of_unknown_kind(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / supervisor.STOP_NAME).write_bytes(b"")
    env = {k.encode(): v.encode() for k, v in _env(log_dir).items()}
    supervisor.finish(supervisor.start(b"exit 0", str(log_dir).encode(), env, b"1", fresh=False))
    assert (log_dir / "exit").read_text() == "0 1 interrupted\n"


@pytest.mark.parametrize("text", ["0 1 finished\n", "0 1 stopped extra\n", "0 x stopped\n", "0 1 stopped"])
def test_a_damaged_record_is_no_record(tmp_path: Path, text: str) -> None:
    (tmp_path / "exit").write_text(text)
    assert read_exit_record(tmp_path) is None


def test_a_line_too_long_for_one_argument_runs_from_its_command_file(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    line = "x=" + "a" * supervisor.MAX_ARG_STRLEN + '; echo "${#x} $0 $#"; exit 4'
    done = _script(log_dir, line)
    assert done.returncode == 4
    assert (log_dir / "out.log").read_text() == f"{supervisor.MAX_ARG_STRLEN} /bin/sh 0\n"
    assert (log_dir / supervisor.COMMAND_FILE).read_text() == line
    assert (log_dir / "exit").read_text() == "4 1\n"


def test_the_script_runs_the_job_where_it_is_told_and_records_a_failure_to_get_there(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    assert _script(log_dir, "pwd", cwd="/").returncode == 0
    assert (log_dir / "out.log").read_text() == "/\n"
    done = _script(log_dir, "echo never", cwd="/nonexistent")
    assert done.returncode == 1
    assert (log_dir / "err.log").read_text() == "batchrun: cannot enter /nonexistent: No such file or directory\n"
    assert (log_dir / "exit").read_text() == "1 1\n"


# The job of a checkpoint signal: its shell and a process of its group each note the signal, then it exits 75.
CHECKPOINTING = (
    'echo $$ > group; sh -c \'trap "echo child >> got; exit 0" USR1; touch ready; while :; do sleep 0.05; done\' & '
    'trap "wait; echo shell >> got; exit 75" USR1; wait'
)


def test_the_forwarded_signal_reaches_the_jobs_group_and_is_no_stop(tmp_path: Path) -> None:
    """SLURM's `--signal=B:USR1` reaches the batch shell alone: the supervisor, which passes it on to the job's group."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    args = [sys.executable, "-I", "-S", SCRIPT, "--cwd", str(log_dir), "--forward", "USR1", str(log_dir)]
    (tmp_path / "line").write_text(CHECKPOINTING)
    with (tmp_path / "line").open("rb") as line:
        proc = subprocess.Popen(args, stdin=line, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(log_dir))
    try:
        wait_for(lambda: (log_dir / "ready").exists(), what="the job to start")
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int((log_dir / "group").read_text()), signal.SIGKILL)  # a job the signal did not end
    # The supervisor neither died of it nor took it for a stop: the job's own exit 75 is its record.
    assert (proc.returncode, out, err) == (75, b"", b"")
    assert sorted((log_dir / "got").read_text().split()) == ["child", "shell"]
    assert (log_dir / "exit").read_text() == "75 1\n"
    assert not job_lock_held(log_dir)


def test_the_supervisor_runs_on_the_standard_library_alone() -> None:
    # -I -S as on a SLURM node: it must import nothing of batchrun (nor anything installed).
    check = "import runpy, sys; runpy.run_path(sys.argv[1]); print(sorted(m for m in sys.modules if m.startswith('batchrun')))"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", check, SCRIPT], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout == "[]\n"
