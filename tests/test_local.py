"""Unit tests of the local executor: exit records, and `--detach`'s jobs, each under a supervisor of its own."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import exit_text, kill_all, live_pids_with_env, wait_for

from batchrun.executors import ExecutorOptions
from batchrun.executors.jobfiles import Unrecorded, job_lock_held, note_stop, read_exit_record
from batchrun.executors.local.executor import LocalExecutor

JOB_IDS = ["0123456789abcdef", "fedcba9876543210", "00000000000000aa"]


@pytest.fixture()
def marker() -> Iterator[str]:
    name = f"BRLOCAL{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


def test_exit_records_name_their_attempt_and_old_ones_still_load(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit"
    exit_file.write_text("3 2\n")
    assert read_exit_record(tmp_path, 2) is not None and read_exit_record(tmp_path, 2)[0] == 3  # type: ignore[index]
    assert read_exit_record(tmp_path) is not None
    assert read_exit_record(tmp_path, 3) is None, "attempt 2's record was read as attempt 3's"
    exit_file.write_text("5\n")  # written before records named their attempt
    assert read_exit_record(tmp_path, 7) is not None and read_exit_record(tmp_path, 7)[0] == 5  # type: ignore[index]
    exit_file.write_text("0 \n")  # a job run without BATCHRUN_ATTEMPT
    assert read_exit_record(tmp_path, 1) is not None
    for bad in ("1 2", "x 1\n", "1 y\n", "1 2 3\n", "\n"):
        exit_file.write_text(bad)
        assert read_exit_record(tmp_path, 2) is None, bad


def _jobs(tmp_path: Path, marker: str, commands: list[str]) -> list[tuple[str, str, str, dict[str, str]]]:
    jobs = []
    for job_id, command in zip(JOB_IDS, commands, strict=False):
        log_dir = str(tmp_path / "logs" / job_id)
        env = dict(os.environ, BATCHRUN_JOB_ID=job_id, BATCHRUN_LOG_DIR=log_dir, BATCHRUN_ATTEMPT="3", **{marker: "1"})
        jobs.append((job_id, command, log_dir, env))
    return jobs


def test_detached_jobs_lead_their_groups_outlive_the_executor_and_are_recorded(tmp_path: Path, marker: str) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "logs").mkdir()
    commands = [f'echo "$$ $0 $#"; while [ ! -e {gate} ]; do sleep 0.02; done; exit 4', "exit 0", "kill -TERM $$"]
    executor = LocalExecutor(ExecutorOptions(runs_dir=str(tmp_path)))
    refs = executor.start_many(_jobs(tmp_path, marker, commands))
    executor.close()
    first = tmp_path / "logs" / JOB_IDS[0]
    wait_for(lambda: (first / "out.log").read_text() != "", what="the first job to start")
    # The reference is the job's own shell, which leads its session and group.
    assert (first / "out.log").read_text() == f"{refs[0]} /bin/sh 0\n"
    assert os.getpgid(int(refs[0])) == os.getsid(int(refs[0])) == int(refs[0])
    assert job_lock_held(first), "a detached job runs without its lock"
    gate.touch()
    # A later executor (a relaunch) follows them by their locks and records.
    again = LocalExecutor(ExecutorOptions(runs_dir=str(tmp_path)))
    again._detached = {ref: (job[2], 3) for ref, job in zip(refs, _jobs(tmp_path, marker, commands), strict=True)}
    # The third, killed by a signal, has no record: it ended unseen (it runs again), never a failure.
    assert [again.wait(ref) for ref in refs] == [4, 0, Unrecorded.LOST]
    assert [exit_text(tmp_path / "logs" / job_id) for job_id in JOB_IDS] == [
        "4 3\n", "0 3\n", None]


def test_a_detached_job_the_launch_stops_is_stopped_whole_and_recorded_as_the_stop(tmp_path: Path, marker: str) -> None:
    (tmp_path / "logs").mkdir()
    ready = tmp_path / "ready"
    executor = LocalExecutor(ExecutorOptions(runs_dir=str(tmp_path)))
    (ref,) = executor.start_many(_jobs(tmp_path, marker, [f"trap 'exit 0' TERM; touch {ready}; while :; do sleep 0.05; done"]))
    wait_for(ready.exists, what="the job to trap TERM")
    assert executor.wait(ref, timeout=0.1) is None
    # The stop path notes the stop before its first signal (`launch.stopper`).
    assert note_stop(tmp_path / "logs" / JOB_IDS[0], "interrupted", 3)
    assert executor.signal(JOB_IDS[0], ref, signal.SIGTERM)
    assert executor.wait(ref, timeout=30) == 0
    assert read_exit_record(tmp_path / "logs" / JOB_IDS[0], 3)[::2] == (0, "interrupted"), "a stopped job's trapped exit 0 was taken for its end"  # type: ignore[index]
    assert live_pids_with_env(marker) == []
    executor.close()


def test_a_detached_job_that_cannot_start_raises(tmp_path: Path, marker: str) -> None:
    executor = LocalExecutor(ExecutorOptions(runs_dir=str(tmp_path)))
    with pytest.raises(OSError, match="No such file"):
        executor.start_many(_jobs(tmp_path / "missing", marker, ["true"]))
