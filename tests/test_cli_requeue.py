"""Requeue through the real CLI: a job that exits 75 runs again, from its checkpoint, and never counts as failed.

A job exiting 75 (EX_TEMPFAIL) is recorded `requeued`, not failed, spends
none of --retries, and starts again in the same launch, in the same log
directory (its checkpoint stays there), up to --max-requeues. A launch
killed around a requeue leaves a record the next launch runs exactly once
more. The kills are placed by `tests/data/faults/sitecustomize.py`.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from conftest import batchrun_cmd, exit_text, fault_env, read_metadata, wait_for

from batchrun.runfile.file import job_id_of

# Saves a checkpoint and asks to be requeued on its first attempt; resumes from it on the next.
CHECKPOINTED = (
    'echo "attempt=$BATCHRUN_ATTEMPT requeues=$BATCHRUN_REQUEUES dir=$BATCHRUN_LOG_DIR" >> runs.txt; '
    'if [ -f "$BATCHRUN_LOG_DIR/ckpt" ]; then echo "resumed from $(cat "$BATCHRUN_LOG_DIR/ckpt")"; exit 0; fi; '
    'echo step-5 > "$BATCHRUN_LOG_DIR/ckpt"; exit 75'
)


def _run(*args: str, cwd: Path, **faults: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=120, env=fault_env(**faults))


def _write(workdir: Path, *commands: str) -> None:
    (workdir / "exp.runfile").write_text("".join(c + "\n" for c in commands))


def _status_json(workdir: Path) -> dict[str, object]:
    answer = _run("status", "exp.runfile", "--json", cwd=workdir)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)  # type: ignore[no-any-return]


def test_a_job_exiting_75_is_requeued_and_resumes_from_its_checkpoint(workdir: Path) -> None:
    _write(workdir, CHECKPOINTED)
    launch = _run("launch", "exp.runfile", cwd=workdir)
    assert launch.returncode == 0, launch.stderr
    job_id = job_id_of(CHECKPOINTED)
    log_dir = workdir / "runs" / "exp" / "logs" / job_id
    assert f"requeued    {job_id}  attempt 1 exited 75, runs again (requeue 1)" in launch.stdout
    # The same log directory both times: the checkpoint written by the first is read by the second.
    assert (workdir / "runs.txt").read_text().splitlines() == [f"attempt=1 requeues=0 dir={log_dir}", f"attempt=2 requeues=1 dir={log_dir}"]
    assert (log_dir / "out.log").read_text() == "resumed from step-5\n"
    entry = read_metadata(workdir / "runs" / "exp")[job_id]
    assert entry["state"] == "succeeded" and entry["attempts"] == 2 and entry["exit_codes"] == [75, 0]
    assert launch.stdout.rstrip().splitlines()[-2] == "batchrun: exp.runfile: 1 job: 1 succeeded (2 ran now)"


def test_requeues_spend_no_retries(workdir: Path) -> None:
    # Exits 75, then fails once, then succeeds: --retries 1 is enough, the requeue is not a failure.
    cmd = 'echo x >> n.txt; n=$(wc -l < n.txt); [ "$n" = 1 ] && exit 75; [ "$n" = 2 ] && exit 3; exit 0'
    _write(workdir, cmd)
    launch = _run("launch", "exp.runfile", "--retries", "1", cwd=workdir)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    entry = read_metadata(workdir / "runs" / "exp")[job_id_of(cmd)]
    assert entry["exit_codes"] == [75, 3, 0] and entry["state"] == "succeeded"
    assert "requeued" in launch.stdout and "retrying" in launch.stdout


def test_a_job_exiting_75_forever_fails_past_max_requeues(workdir: Path) -> None:
    cmd = "echo x >> n.txt; exit 75"
    _write(workdir, cmd)
    launch = _run("launch", "exp.runfile", "--max-requeues", "2", cwd=workdir)
    assert launch.returncode == 1, launch.stdout + launch.stderr
    job_id = job_id_of(cmd)
    assert (workdir / "n.txt").read_text() == "x\nx\nx\n"  # the first run and two requeues
    assert launch.stdout.count("requeued    ") == 2
    failed = next(line for line in launch.stdout.splitlines() if line.startswith("FAILED(75)"))
    assert failed.endswith("(exited 75 again after 2 requeues: --max-requeues 2 reached, failed)"), failed
    entry = read_metadata(workdir / "runs" / "exp")[job_id]
    assert entry["state"] == "failed" and entry["status"] == 75 and entry["exit_codes"] == [75, 75, 75]
    status = _status_json(workdir)
    assert status["counts"]["failed"] == 1 and status["counts"]["requeued"] == 0  # type: ignore[index]
    # --max-requeues 0: the first 75 is a failure.
    _write(workdir, "exit 75")
    assert _run("launch", "exp.runfile", "--max-requeues", "0", cwd=workdir).returncode == 1
    assert read_metadata(workdir / "runs" / "exp")[job_id_of("exit 75")]["exit_codes"] == [75]


def test_a_negative_max_requeues_is_refused_in_one_line(workdir: Path) -> None:
    _write(workdir, "true")
    answer = _run("launch", "exp.runfile", "--max-requeues", "-1", cwd=workdir)
    assert answer.returncode == 2 and answer.stderr == "batchrun: error: --max-requeues must be 0 or more, not -1\n"
    assert not (workdir / "runs").exists()


def test_kill_9_between_a_requeue_and_the_next_start_runs_the_job_exactly_once_more(workdir: Path) -> None:
    _write(workdir, CHECKPOINTED)
    killed = _run("launch", "exp.runfile", cwd=workdir, BRFAULT_KILL_AFTER_REQUEUE="1")
    assert killed.returncode == -signal.SIGKILL
    job_id = job_id_of(CHECKPOINTED)
    # At rest it is requeued: every read command counts it so, and it is not a failure.
    status = _status_json(workdir)
    assert status["jobs"][job_id]["category"] == "requeued" and status["counts"]["requeued"] == 1  # type: ignore[index]
    table = _run("status", "exp.runfile", cwd=workdir)
    assert table.stdout.splitlines()[0] == "exp.runfile: 1 job: 0 succeeded, 0 failed, 0 interrupted, 1 requeued, 0 running, 0 pending"
    rows = json.loads(_run("results", "exp.runfile", "--json", cwd=workdir).stdout)
    assert [row["state"] for row in rows] == ["requeued"]
    failed = _run("failed", "exp.runfile", "--interrupted", cwd=workdir)
    assert failed.stdout == CHECKPOINTED + "\n"
    assert _run("failed", "exp.runfile", cwd=workdir).stdout == ""
    relaunch = _run("launch", "exp.runfile", cwd=workdir)
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    assert [line.split()[0:2] for line in (workdir / "runs.txt").read_text().splitlines()] == [["attempt=1", "requeues=0"], ["attempt=2", "requeues=1"]]
    assert read_metadata(workdir / "runs" / "exp")[job_id]["exit_codes"] == [75, 0]


def test_kill_9_as_the_requeued_attempt_starts_runs_the_job_exactly_once_more(workdir: Path) -> None:
    _write(workdir, CHECKPOINTED)
    # The second start is the requeue's: killed after its start record, before its process exists.
    assert _run("launch", "exp.runfile", cwd=workdir, BRFAULT_KILL_SPAWN="2").returncode == -signal.SIGKILL
    relaunch = _run("launch", "exp.runfile", cwd=workdir)
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    runs = (workdir / "runs.txt").read_text().splitlines()
    assert [line.split()[0:2] for line in runs] == [["attempt=1", "requeues=0"], ["attempt=3", "requeues=1"]]
    entry = read_metadata(workdir / "runs" / "exp")[job_id_of(CHECKPOINTED)]
    assert entry["exit_codes"] == [75, None, 0] and entry["state"] == "succeeded"


def test_a_job_exiting_75_after_its_launch_was_killed_is_requeued_by_the_next(workdir: Path) -> None:
    cmd = 'echo run >> runs.txt; [ -f "$BATCHRUN_LOG_DIR/ckpt" ] && exit 0; while [ ! -f go ]; do sleep 0.05; done; touch "$BATCHRUN_LOG_DIR/ckpt"; exit 75'
    _write(workdir, cmd)
    launch = subprocess.Popen(batchrun_cmd("launch", "exp.runfile"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=fault_env())
    wait_for(lambda: (workdir / "runs.txt").exists(), what="the job to start")
    launch.send_signal(signal.SIGKILL)
    launch.wait(timeout=30)
    (workdir / "go").touch()
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(cmd)
    wait_for(lambda: exit_text(log_dir) is not None, what="the job's exit record")
    wait_for(lambda: _status_json(workdir)["counts"]["requeued"] == 1, what="status to settle it requeued")  # type: ignore[index]
    relaunch = _run("launch", "exp.runfile", cwd=workdir)
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    assert (workdir / "runs.txt").read_text() == "run\nrun\n"
    entry = read_metadata(workdir / "runs" / "exp")[job_id_of(cmd)]
    assert entry["exit_codes"] == [75, 0] and entry["attempts"] == 2


# -- the checkpoint signal (issue 24 #2), locally -------------------------------------------------

# Saves a checkpoint and asks to be requeued on USR1; resumes from the checkpoint on its next attempt.
TRAPPING = (
    'if [ -f "$BATCHRUN_LOG_DIR/ckpt" ]; then echo "resumed from $(cat "$BATCHRUN_LOG_DIR/ckpt")"; exit 0; fi; '
    'trap \'echo step-7 > "$BATCHRUN_LOG_DIR/ckpt"; exit 75\' USR1; sleep 60 & wait'
)


def test_a_job_trapping_the_checkpoint_signal_is_requeued_and_finishes_from_its_checkpoint(workdir: Path) -> None:
    _write(workdir, TRAPPING)
    launch = _run("launch", "exp.runfile", "--timeout", "30", "--checkpoint-signal", "USR1@29", cwd=workdir)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    job_id = job_id_of(TRAPPING)
    assert f"requeued    {job_id}  attempt 1 exited 75" in launch.stdout
    entry = read_metadata(workdir / "runs" / "exp")[job_id]
    assert entry["state"] == "succeeded" and entry["exit_codes"] == [75, 0]
    assert (workdir / "runs" / "exp" / "logs" / job_id / "out.log").read_text() == "resumed from step-7\n"


def test_a_job_ignoring_the_checkpoint_signal_still_times_out(workdir: Path) -> None:
    cmd = "trap '' USR1; sleep 60"
    _write(workdir, cmd)
    launch = _run("launch", "exp.runfile", "--timeout", "2", "--grace", "1", "--checkpoint-signal", "SIGUSR1@1", cwd=workdir)
    assert launch.returncode == 1
    assert read_metadata(workdir / "runs" / "exp")[job_id_of(cmd)]["state"] == "timeout"


def test_a_checkpoint_signal_is_refused_without_a_timeout_or_in_another_form(workdir: Path) -> None:
    _write(workdir, "true")
    answer = _run("launch", "exp.runfile", "--checkpoint-signal", "USR1@10", cwd=workdir)
    assert answer.returncode == 2 and answer.stderr == "batchrun: error: --checkpoint-signal needs --timeout: the signal comes that many seconds before the timeout\n"
    for bad in ("USR1", "NOPE@10", "USR1@soon"):
        answer = _run("launch", "exp.runfile", "--timeout", "60", "--checkpoint-signal", bad, cwd=workdir)
        assert answer.returncode == 2 and answer.stderr.count("\n") == 1 and "--checkpoint-signal" in answer.stderr, answer.stderr
    answer = _run("launch", "exp.runfile", "--timeout", "60", "--checkpoint-signal", "USR1@10", "--executor", "dask", cwd=workdir)
    assert answer.returncode == 2 and answer.stderr == "batchrun: error: --checkpoint-signal runs with the local and slurm executors, not dask\n", answer.stderr
    assert not (workdir / "runs").exists()
