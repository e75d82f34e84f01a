"""The Dask executor's worker side alone, without Dask: one run per attempt.

`_dask_worker.run_job` is the Dask task's function; here it runs in the test
process, as on a worker, and starts a real fork server (`_dask_forkserver`)
that forks real supervisors (each running the job under `executors/supervisor.py`). The key files (`_dask_keys`) decide which
attempt may run; damaged ones must never run a job nor fail with a traceback.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.executors import jobfiles
from batchrun.executors.dask import _forkserver as _dask_forkserver
from batchrun.executors.dask import keys as _dask_keys
from batchrun.executors.dask import worker as _dask_worker
from batchrun.executors.jobfiles import job_lock_held, note_stop

JOB_ID = "0123456789abcdef"


@pytest.fixture(autouse=True)
def _one_fork_server_per_test() -> Iterator[None]:
    yield
    _dask_worker.stop_fork_server()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_attempt(tmp_path: Path, key: str, command: str, cwd: str | None = None, attempt: int | None = None) -> tuple[str, int, str]:
    """Run the Dask task's function right here, as a worker would (`attempt`: its BATCHRUN_ATTEMPT, as in a launch)."""
    log_dir = str(tmp_path / "job")
    env = dict(os.environ, BATCHRUN_JOB_ID=JOB_ID, BATCHRUN_LOG_DIR=log_dir)
    if attempt is not None:
        env["BATCHRUN_ATTEMPT"] = str(attempt)
    return _dask_worker.run_job(key, JOB_ID, command, log_dir, env, cwd or str(tmp_path))


def test_an_attempt_runs_its_command_under_the_wrapper(tmp_path: Path) -> None:
    _dask_keys.claim_log_dir(str(tmp_path / "job"), "key-1")
    assert run_attempt(tmp_path, "key-1", "echo out; echo err >&2; exit 3")[:2] == ("ran", 3)
    assert lines(tmp_path / "job" / "out.log") == ["out"]
    assert lines(tmp_path / "job" / "err.log") == ["err"]
    assert (tmp_path / "job" / "exit").read_text().split()[0] == "3"


def test_a_superseded_or_stopped_attempt_never_runs(tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    _dask_keys.claim_log_dir(str(tmp_path / "job"), "key-2")
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}")[:2] == ("skipped", 0)
    assert _dask_keys.mark_stopped(str(tmp_path / "job"), "key-2")
    assert _dask_keys.read_key(str(tmp_path / "job")) == _dask_keys.STOPPED
    assert run_attempt(tmp_path, "key-2", f"echo ran >> {side}")[:2] == ("skipped", 0)
    assert not side.exists()


def test_an_attempt_that_already_ran_reports_its_exit_record(tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    _dask_keys.claim_log_dir(str(tmp_path / "job"), "key-1")
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}; exit 5")[:2] == ("ran", 5)
    # Dask runs the task again (its worker died after the job ended): no second run.
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}; exit 5")[:2] == ("recorded", 5)
    assert lines(side) == ["ran"]


def test_an_attempt_that_already_ran_in_a_launch_reports_its_record_naming_the_attempt(tmp_path: Path) -> None:
    # In a launch the wrapper's record names the attempt ("5 1"): it must still count as "already ran".
    side = tmp_path / "side.txt"
    _dask_keys.claim_log_dir(str(tmp_path / "job"), "key-1")
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}; exit 5", attempt=1)[:2] == ("ran", 5)
    assert (tmp_path / "job" / "exit").read_text() == "5 1\n"
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}; exit 5", attempt=1)[:2] == ("recorded", 5)
    assert lines(side) == ["ran"]


def test_a_relaunch_attempt_claimed_while_the_old_one_runs_reports_its_record_and_never_reruns(tmp_path: Path) -> None:
    # A killed launch's queued task starts in the instant between the relaunch's settlement
    # (which found it not running) and its claim of the log directory for a new attempt.
    side = tmp_path / "side.txt"
    log_dir = str(tmp_path / "job")
    _dask_keys.claim_log_dir(log_dir, "key-1")
    results: list[tuple[str, int, str]] = []
    command = f"echo ran >> {side}; sleep 1; exit 5"
    old = threading.Thread(target=lambda: results.append(run_attempt(tmp_path, "key-1", command, attempt=1)))
    old.start()
    deadline = time.monotonic() + 30
    while not lines(side) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lines(side) == ["ran"]
    # The relaunch claims the directory for its attempt while the old run holds the lock.
    _dask_keys.claim_log_dir(log_dir, "key-2")
    assert run_attempt(tmp_path, "key-2", command, attempt=2)[:2] == ("recorded", 5)
    old.join(30)
    assert results[0][:2] == ("ran", 5)
    assert lines(side) == ["ran"]


def test_an_attempt_waits_until_an_earlier_run_of_it_is_gone(tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    log_dir = tmp_path / "job"
    _dask_keys.claim_log_dir(str(log_dir), "key-1")
    # What a dying run of the attempt (on a killed worker) holds until it is gone.
    fd = os.open(log_dir / _dask_keys.LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    results: list[tuple[str, int, str]] = []
    thread = threading.Thread(target=lambda: results.append(run_attempt(tmp_path, "key-1", f"echo ran >> {side}")))
    thread.start()
    try:
        time.sleep(0.5)
        assert not side.exists()
    finally:
        os.close(fd)
    thread.join(10)
    assert results[0][:2] == ("ran", 0)
    assert lines(side) == ["ran"]


def test_a_log_directory_the_worker_cannot_see_is_reported(tmp_path: Path) -> None:
    assert run_attempt(tmp_path, "key-1", "true")[:2] == ("nokey", 0)


def test_a_working_directory_missing_on_the_worker_is_an_error(tmp_path: Path) -> None:
    _dask_keys.claim_log_dir(str(tmp_path / "job"), "key-1")
    with pytest.raises(RuntimeError, match="cannot enter /nonexistent"):
        run_attempt(tmp_path, "key-1", "true", cwd="/nonexistent")


# -- damaged key files: no run, no traceback -----------------------------------


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x80garbage\n", b"batchrun-0123\xc3", b"", b"\x00\x00\x00\x00", b"key-"],
    ids=["not-utf8", "truncated-utf8", "empty", "zeros", "truncated"],
)
def test_a_damaged_key_file_names_no_attempt(tmp_path: Path, content: bytes) -> None:
    side = tmp_path / "side.txt"
    log_dir = tmp_path / "job"
    _dask_keys.claim_log_dir(str(log_dir), "key-1")
    (log_dir / _dask_keys.KEY_NAME).write_bytes(content)
    assert _dask_keys.read_key(str(log_dir)) != "key-1"
    # The worker skips the attempt (the launch then reports it as stopped or adopts its record)...
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}")[:2] == ("skipped", 0)
    assert not side.exists()
    # ... and the launch's side can still stop it and claim the directory again.
    assert _dask_keys.mark_stopped(str(log_dir), "key-1")
    _dask_keys.claim_log_dir(str(log_dir), "key-2")
    assert _dask_keys.read_key(str(log_dir)) == "key-2"
    assert run_attempt(tmp_path, "key-2", f"echo ran >> {side}")[:2] == ("ran", 0)
    assert lines(side) == ["ran"]


def test_read_key_of_a_directory_without_a_key_file(tmp_path: Path) -> None:
    assert _dask_keys.read_key(str(tmp_path)) is None
    assert _dask_forkserver.read_key(str(tmp_path / _dask_keys.KEY_NAME)) is None
    (tmp_path / _dask_keys.KEY_NAME).write_bytes(b"\xffkey-1\n")
    assert _dask_forkserver.read_key(str(tmp_path / _dask_keys.KEY_NAME)) == "\ufffdkey-1"


def test_a_damaged_exit_record_is_not_reported_as_a_result(tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    log_dir = tmp_path / "job"
    _dask_keys.claim_log_dir(str(log_dir), "key-1")
    (log_dir / "exit").write_bytes(b"\xff\xfe\n")
    assert run_attempt(tmp_path, "key-1", f"echo ran >> {side}")[:2] == ("ran", 0)
    assert lines(side) == ["ran"]


# -- the fork server as the script it is on a worker ---------------------------


def test_the_fork_server_runs_without_site_packages() -> None:
    # -I -S as on a worker: it must import nothing but the standard library.
    script = Path(_dask_forkserver.__file__)
    check = "import runpy, sys; runpy.run_path(sys.argv[1]); print(sorted(m for m in sys.modules if m.startswith('batchrun')))"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", check, str(script)], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout == "[]\n"


def test_the_fork_server_exits_when_its_worker_closes_the_socket(tmp_path: Path) -> None:
    _dask_keys.claim_log_dir(str(tmp_path / "job"), "key-1")
    assert run_attempt(tmp_path, "key-1", "true")[:2] == ("ran", 0)
    server = _dask_worker._fork_server
    assert server is not None
    _dask_worker.stop_fork_server()
    assert server[0].wait(10) == 0


# -- the supervisor's rules, as every executor's ------------------------------


def test_the_run_lock_is_held_until_no_process_of_the_job_holds_its_out_log(tmp_path: Path) -> None:
    """A process the job left behind keeps the next run of the job from starting, as an inherited run.lock did."""
    log_dir = tmp_path / "job"
    gate = tmp_path / "gate"
    _dask_keys.claim_log_dir(str(log_dir), "key-1")
    assert run_attempt(tmp_path, "key-1", f"(while [ ! -e {gate} ]; do sleep 0.02; done; echo stray) & exit 3", attempt=1)[:2] == ("ran", 3)
    assert (log_dir / "exit").read_text() == "3 1\n"
    assert job_lock_held(log_dir, _dask_keys.LOCK_NAME), "the run lock went while a process of the job still runs"
    gate.touch()
    deadline = time.monotonic() + 30
    while job_lock_held(log_dir, _dask_keys.LOCK_NAME) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not job_lock_held(log_dir, _dask_keys.LOCK_NAME)
    assert lines(log_dir / "out.log") == ["stray"]


def test_an_attempt_a_launch_stopped_records_the_stop_and_the_next_attempt_runs_even_if_claimed_in_its_shadow(tmp_path: Path) -> None:
    log_dir = tmp_path / "job"
    _dask_keys.claim_log_dir(str(log_dir), "key-1")
    assert note_stop(log_dir, "interrupted", 1)
    assert run_attempt(tmp_path, "key-1", "exit 0", attempt=1)[:2] == ("ran", 0)
    assert (log_dir / "exit").read_text() == "0 1 interrupted\n", "a stopped job's exit 0 was taken for its end"
    # The next attempt is claimed while run.lock is still held (as by the first run's supervisor in its
    # last moment): the claim keeps the first run's note and record. The note names attempt 1 and the
    # record is a stop's, so attempt 2 still runs and records its own end.
    fd = os.open(log_dir / _dask_keys.LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        _dask_keys.claim_log_dir(str(log_dir), "key-2")
    finally:
        os.close(fd)
    assert (log_dir / jobfiles.STOP_NAME).exists(), "the claim in the lock's shadow was meant to keep the note"
    assert run_attempt(tmp_path, "key-2", "exit 0", attempt=2)[:2] == ("ran", 0)
    assert (log_dir / "exit").read_text() == "0 2\n"
