"""Submitting to SLURM against a stand-in sbatch, and the files that record what was submitted."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from test_slurm_commands import FakeSlurm

from batchrun.errors import ExecutorError
from batchrun.executors.base import ExecutorOptions
from batchrun.executors.slurm.commands import SlurmCommands
from batchrun.executors.slurm.settings import SlurmSettings
from batchrun.executors.slurm.submit import (
    Submission,
    Submitter,
    append_line,
    index_manifests,
    prepare_log_dir,
    remove_spent,
    submitted_arrays,
)
from batchrun.executors.slurm.text import manifest_line, request_args, signal_args, task_script
from batchrun.resources import Request

JOBS = [f"{i:016x}" for i in range(5)]


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path)


def submitter(fake: FakeSlurm, n_jobs: int = 2, settings: SlurmSettings | None = None) -> tuple[Submitter, list[tuple[str, str, bool]]]:
    slurm_dir = fake.bin.parent / "runs" / "slurm"
    slurm_dir.mkdir(parents=True)
    registered: list[tuple[str, str, bool]] = []
    cond = threading.Condition()
    options = ExecutorOptions(n_jobs=n_jobs, cwd=str(fake.bin.parent), runs_dir=str(slurm_dir.parent))
    commands = SlurmCommands(options.cwd, fake.env, [], list)
    env = dict(fake.env)
    return Submitter(options, commands, slurm_dir, env, cond, threading.Event(), lambda *r: registered.append(r), settings), registered


def requests(n: int) -> list[Submission]:
    return [Submission(JOBS[i], f"echo {i}", f"/logs/{JOBS[i]}", dict(os.environ, PATH="x")) for i in range(n)]


def test_a_batch_is_one_array_with_its_manifest_and_submitted_line(fake: FakeSlurm) -> None:
    fake.answer("sbatch", b"Submitted\n123;c1\n")
    sub, registered = submitter(fake)
    batch = requests(3)
    sub.submit(batch)
    assert [r.ref for r in batch] == ["123_0", "123_1", "123_2"]
    assert registered == [(f"123_{i}", f"/logs/{JOBS[i]}", True) for i in range(3)]
    assert sub.outstanding == 3
    slurm_dir = fake.bin.parent / "runs" / "slurm"
    (manifest,) = slurm_dir.glob("*.manifest")
    assert index_manifests(slurm_dir) == {JOBS[i]: (manifest.name, i) for i in range(3)}
    assert submitted_arrays(slurm_dir, manifest.name) == ["123"]
    (call,) = fake.called()
    assert call.startswith("sbatch --parsable --array=0-2%2 --job-name=batchrun-runs ")
    assert call.endswith(f"/batchrun-task.sh {manifest}")


def test_more_tasks_than_max_array_go_as_a_chain_of_arrays(fake: FakeSlurm) -> None:
    fake.command("sbatch", f"echo $(( $(wc -l < {fake.calls}) + 100 ))")
    sub, registered = submitter(fake)
    sub.max_array = 2
    batch = requests(5)
    sub.submit(batch, chain=True, track=False)
    assert [r.ref for r in batch] == ["101_0", "101_1", "102_0", "102_1", "103_0"]
    assert sub.outstanding == 0 and all(not tracked for _, _, tracked in registered)
    calls = fake.called()
    assert "--dependency" not in calls[0]
    assert "--dependency=afterany:101" in calls[1] and "--dependency=afterany:102" in calls[2]


def test_a_garbled_sbatch_answer_is_resolved_through_squeue_never_resubmitted(fake: FakeSlurm) -> None:
    fake.answer("sbatch", b"\xff\xfe\xd9\xa1\xd9\xa2\n")  # not UTF-8, then Arabic-Indic digits
    sub, _ = submitter(fake)
    slurm_dir = fake.bin.parent / "runs" / "slurm"
    fake.command("squeue", f'for m in {slurm_dir}/*.manifest; do echo "77_0 PENDING /x/batchrun-task.sh $m"; done')
    batch = requests(1)
    sub.submit(batch)
    assert batch[0].ref == "77_0"
    assert [call.split()[0] for call in fake.called()] == ["sbatch", "squeue"]


def test_a_failed_sbatch_is_one_line(fake: FakeSlurm) -> None:
    fake.answer("sbatch", b"", code=1, stderr="sbatch: error: invalid partition specified: nosuch")
    fake.answer("squeue", b"")
    sub, _ = submitter(fake)
    with pytest.raises(ExecutorError, match=r"^sbatch failed: sbatch: error: invalid partition specified: nosuch$"):
        sub.submit(requests(1))


def test_prepare_log_dir_drops_an_old_exit_record(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs" / JOBS[0]
    prepare_log_dir(str(log_dir))
    (log_dir / "exit").write_text("0 1\n")
    prepare_log_dir(str(log_dir))
    assert list(log_dir.iterdir()) == []


def test_append_line_is_only_an_aid(tmp_path: Path) -> None:
    append_line(tmp_path / "submitted", "a 1 1\n")
    append_line(tmp_path / "submitted", "b \udcff 1\n")  # surrogate-escaped bytes go out as they came in
    append_line(tmp_path / "no-such-dir" / "submitted", "c 3 1\n")
    assert (tmp_path / "submitted").read_bytes() == b"a 1 1\nb \xff 1\n"


def test_remove_spent_keeps_what_queued_tasks_still_read(tmp_path: Path) -> None:
    for name in ("a.manifest", "b.manifest", "12.out", "13.out", "submitted"):
        (tmp_path / name).write_text("")
    (tmp_path / "13.out").write_text("output\n")
    remove_spent(tmp_path, lambda: None)  # SLURM did not answer: nothing goes
    assert len(list(tmp_path.iterdir())) == 5
    remove_spent(tmp_path, lambda: {"12_0": ("RUNNING", f"/x/batchrun-task.sh {tmp_path / 'a.manifest'}")})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["12.out", "13.out", "a.manifest", "submitted"]
    # A task completing (its script ended) reads its manifest no more; its output file stays while it is shown.
    remove_spent(tmp_path, lambda: {"12_0": ("COMPLETING", f"/x/batchrun-task.sh {tmp_path / 'a.manifest'}")})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["12.out", "13.out", "submitted"]


def test_a_task_shown_running_after_its_job_was_recorded_is_waited_for_a_moment_then_its_manifest_goes(tmp_path: Path) -> None:
    """squeue may show a task running for a moment after its job's exit record: the launch's last cleanup asks again (a CI run met it)."""
    slurm_dir = tmp_path / "slurm"
    slurm_dir.mkdir()
    ended, running = "0123456789abcdef", "fedcba9876543210"
    manifest = slurm_dir / "a.manifest"
    manifest.write_text(manifest_line(ended, "true", {}, {}) + manifest_line(running, "sleep 9", {}, {}))
    for job_id in (ended, running):
        (tmp_path / "logs" / job_id).mkdir(parents=True)
    (tmp_path / "logs" / ended / "exit").write_text("0 1\n")
    task = f"/x/batchrun-task.sh {manifest}"
    answers = [{"12_0": ("RUNNING", task)}, {"12_0": ("RUNNING", task)}, {}]
    remove_spent(slurm_dir, lambda: answers.pop(0), patience=10.0)
    assert answers == [] and not manifest.exists()
    # A task completing (its script ended, SLURM cleaning up) is waited for too: then its empty output file goes.
    manifest.write_text(manifest_line(ended, "true", {}, {}))
    (slurm_dir / "12.out").write_text("")
    answers = [{"12_0": ("COMPLETING", task)}, {"12_0": ("COMPLETING", task)}, {}]
    remove_spent(slurm_dir, lambda: answers.pop(0), patience=10.0)
    assert answers == [] and not manifest.exists() and not (slurm_dir / "12.out").exists()
    # A task still running its job (no record) is not waited for: the manifest stays, and one answer did.
    manifest.write_text(manifest_line(ended, "true", {}, {}) + manifest_line(running, "sleep 9", {}, {}))
    answers = [{"12_1": ("RUNNING", task)}, {}]
    remove_spent(slurm_dir, lambda: answers.pop(0), patience=10.0)
    assert answers == [{}] and manifest.exists()
    # A record older than the manifest is an earlier attempt's: not waited for either.
    os.utime(tmp_path / "logs" / ended / "exit", (manifest.stat().st_mtime - 60,) * 2)
    answers = [{"12_0": ("RUNNING", task)}, {}]
    remove_spent(slurm_dir, lambda: answers.pop(0), patience=10.0)
    assert answers == [{}] and manifest.exists()
    # Another runs directory's task, whatever its job ids, is not waited for.
    other = tmp_path / "other" / "slurm" / "a.manifest"
    other.parent.mkdir(parents=True)
    other.write_text(manifest.read_text())
    os.utime(tmp_path / "logs" / ended / "exit", (other.stat().st_mtime + 1,) * 2)
    answers = [{"14_0": ("RUNNING", f"/x/batchrun-task.sh {other}")}, {}]
    remove_spent(slurm_dir, lambda: answers.pop(0), patience=10.0)
    assert answers == [{}] and not manifest.exists() and other.exists()  # ours unused: it goes


def test_a_time_limit_is_whole_minutes_rounded_up_and_a_jobs_own_time_wins_over_the_timeout() -> None:
    assert request_args(None) == [] and signal_args(None) == []
    assert request_args(None, 3601) == ["--time=1:01:00"]
    assert request_args(Request(time=0.5), None) == ["--time=0:01:00"]  # never --time=0, which is no limit
    assert request_args(Request(time=90), 7200) == ["--time=0:02:00"]
    assert request_args(Request(cpus=2), 60) == ["--cpus-per-task=2", "--time=0:01:00"]
    assert signal_args((signal.SIGUSR1, 89.5)) == ["--signal=B:USR1@90"]


def test_timeout_and_checkpoint_signal_reach_sbatch_after_its_args_as_time_and_signal(fake: FakeSlurm) -> None:
    fake.command("sbatch", f"echo $(( $(wc -l < {fake.calls}) + 100 ))")
    settings = SlurmSettings(sbatch_args=["--comment=x", "--time=9:00:00"], timeout=121, checkpoint_signal=(signal.SIGUSR1, 90))
    sub, _ = submitter(fake, settings=settings)
    batch = requests(3)
    batch[1].request = Request(time=30)  # its own time limit, as its directive says
    batch[2].request = Request(cpus=2)  # asks no time: the launch's --timeout
    sub.submit(batch)
    calls = fake.called()
    assert len(calls) == 3, "one array per distinct request and time limit"
    asks = [call.split(" --comment=x --time=9:00:00 ")[1].split(" /")[0] for call in calls]
    # sbatch takes the last of an option given twice: the time limit batchrun was given wins over --sbatch-args'.
    assert asks == ["--time=0:03:00 --signal=B:USR1@90", "--time=0:01:00 --signal=B:USR1@90", "--cpus-per-task=2 --time=0:03:00 --signal=B:USR1@90"]


def test_the_task_script_has_the_supervisor_pass_the_checkpoint_signal_on() -> None:
    assert "--forward" not in task_script("/d")
    assert ' --cwd /d --forward USR2 "$BATCHRUN_LOG_DIR" < "$BATCHRUN_LOG_DIR/command.sh"\n' in task_script("/d", signal.SIGUSR2)
