"""A job SLURM itself requeues (`scontrol requeue` of a running array task, as preemption with
PreemptMode=REQUEUE or a node failure do) is run again by SLURM under the same task id: batchrun
waits on it as one job, never records it failed, and never has it running twice at once.

Against the real one-node SLURM of the test suite (tests/slurm/start-slurm.sh); skipped with the
reason when it does not answer, as tests/test_executor_slurm.py is.
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
