"""Requeue on SLURM, against the real one-node SLURM of the test suite (tests/slurm/start-slurm.sh);
skipped with the reason when it does not answer, as tests/test_executor_slurm.py is.

A job SLURM itself requeues (`scontrol requeue` of a running array task, as preemption with
PreemptMode=REQUEUE or a node failure do) is run again by SLURM under the same task id: batchrun
waits on it as one job, never records it failed, and never has it running twice at once.

The checkpoint signal: `--timeout` and `--checkpoint-signal` become sbatch's `--time` and
`--signal=B:SIG@SECONDS`; the job supervisor, the batch shell, passes the signal on to the job's
group. A job that saves a checkpoint and exits 75 on it is requeued and finishes from its
checkpoint on its next attempt, never recorded failed, never running twice at once; one that lets
the signal pass is stopped by SLURM at its time limit and recorded `timeout`. SLURM counts --time
in whole minutes and checks time limits every 30 s: it sends the signal in the 30 s before it is
due (its manual says up to 60 s early) and stops a job up to 30 s after its limit. With `--timeout
2m --checkpoint-signal USR1@60` the signal comes 30 to 60 s after a task starts, well after its
supervisor and its trap are ready, and SLURM stops the job 120 to 150 s after it started.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_metadata, slurm_skip_reason, start_batchrun, wait_for

from batchrun.runfile.file import job_id_of

pytestmark = pytest.mark.slow


@pytest.fixture()
def stem(workdir: Path) -> Iterator[str]:
    reason = slurm_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"rq{os.getpid()}"
    yield name
    subprocess.run(["scancel", "-n", f"batchrun-{name}"], check=False, capture_output=True)


def _task(stem: str) -> tuple[str, str] | None:
    answer = subprocess.run(["squeue", "-h", "-r", "-n", f"batchrun-{stem}", "-o", "%i %T"], capture_output=True, text=True, check=True)
    lines = answer.stdout.split()
    return (lines[0], lines[1]) if len(lines) >= 2 else None


@pytest.mark.timeout(300)  # SLURM's own requeue and restart of a task
def test_scontrol_requeue_of_a_running_array_task_runs_it_again_once_never_failed(workdir: Path, stem: str) -> None:
    runs = workdir / "runs.txt"
    # Appends one line as it starts and one as it ends: two runs at once would interleave them.
    cmd = f'echo "start ${{SLURM_RESTART_COUNT:-0}}" >> {runs}; while [ ! -f {workdir}/go ]; do sleep 0.1; done; echo "end ${{SLURM_RESTART_COUNT:-0}}" >> {runs}'
    (workdir / f"{stem}.runfile").write_text(cmd + "\n")
    launch = start_batchrun("launch", f"{stem}.runfile", "--executor", "slurm", cwd=workdir)
    try:
        wait_for(lambda: runs.exists() and "start" in runs.read_text(), timeout=120, what="the task to start")
        task = _task(stem)
        assert task is not None and task[1] == "RUNNING", task
        requeue = subprocess.run(["scontrol", "requeue", task[0]], capture_output=True, text=True)
        assert requeue.returncode == 0, requeue.stderr
        # SLURM holds a requeued task back a while (BeginTime); let it start again now.
        wait_for(lambda: (t := _task(stem)) is not None and t[1] == "PENDING", timeout=60, what="the task to be requeued")
        subprocess.run(["scontrol", "update", f"jobid={task[0]}", "begintime=now"], capture_output=True, check=False)
        wait_for(lambda: runs.read_text().count("start") == 2, timeout=180, what="the requeued task to start again")
        (workdir / "go").touch()
        out, err = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.communicate(timeout=30)
    assert launch.returncode == 0, out + err
    # The first run was stopped by SLURM before it ended; the second ran to its end, alone.
    assert runs.read_text().splitlines() == ["start 0", "start 1", "end 1"]
    entry = read_metadata(workdir / "runs" / stem)[job_id_of(cmd)]
    assert entry["state"] == "succeeded" and entry["exit_codes"] == [0] and entry["attempts"] == 1, entry


# Notes each attempt's start and its checkpoint's end; on USR1 saves a checkpoint and asks to run again; resumes from it.
CHECKPOINTING = (
    'echo "start $BATCHRUN_ATTEMPT" >> "$BATCHRUN_LOG_DIR/runs"; '
    'if [ -f "$BATCHRUN_LOG_DIR/ckpt" ]; then echo "resumed from $(cat "$BATCHRUN_LOG_DIR/ckpt")"; exit 0; fi; '
    'trap \'echo step-7 > "$BATCHRUN_LOG_DIR/ckpt"; echo "end $BATCHRUN_ATTEMPT" >> "$BATCHRUN_LOG_DIR/runs"; exit 75\' USR1; '
    "sleep 600 & wait"
)
# Notes the signal and goes on until SLURM stops it.
IGNORING = 'trap \'echo warned >> "$BATCHRUN_LOG_DIR/warned"\' USR1; while :; do sleep 1; done'


@pytest.mark.timeout(400)  # SLURM stops the second job 2 to 2.5 minutes after it starts
def test_a_checkpointing_job_is_requeued_and_finishes_and_one_letting_the_signal_pass_times_out(workdir: Path, stem: str) -> None:
    (workdir / f"{stem}.runfile").write_text(f"{CHECKPOINTING}\n{IGNORING}\n")
    args = ["launch", f"{stem}.runfile", "-j", "2", "--executor", "slurm", "--timeout", "2m", "--checkpoint-signal", "USR1@60"]
    launch = start_batchrun(*args, cwd=workdir)
    try:
        out, err = launch.communicate(timeout=330)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.communicate(timeout=30)
    assert launch.returncode == 1, out + err  # one job timed out
    logs = workdir / "runs" / stem / "logs"
    metadata = read_metadata(workdir / "runs" / stem)
    checkpointing, ignoring = job_id_of(CHECKPOINTING), job_id_of(IGNORING)
    assert f"requeued    {checkpointing}  attempt 1 exited 75" in out, out
    entry = metadata[checkpointing]
    assert (entry["state"], entry["exit_codes"], entry["attempts"]) == ("succeeded", [75, 0], 2), entry
    assert (logs / checkpointing / "out.log").read_text() == "resumed from step-7\n"
    # The second attempt started after the first had saved its checkpoint and ended: never both at once.
    assert (logs / checkpointing / "runs").read_text().splitlines() == ["start 1", "end 1", "start 2"]
    entry = metadata[ignoring]
    assert (entry["state"], entry["attempts"]) == ("timeout", 1), entry
    assert (logs / ignoring / "warned").read_text() == "warned\n", "the signal reached the job before its time limit"
