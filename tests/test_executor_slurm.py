"""The SLURM executor, end to end through the real CLI against a real SLURM.

The end-to-end tests need `sbatch` and a controller that answers; without
them they are skipped with the reason (CI starts a one-node cluster with
tests/slurm/start-slurm.sh). The unit tests at the top run everywhere.

Other tests may share the cluster: every check on `squeue` is limited to
this test's job name (batchrun names a job array `batchrun-<runs dir name>`),
and every runfile name carries the test process's pid. SLURM starts about
one array task per second per free CPU, so runfiles are short and -j small.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import exit_text, read_metadata, run_batchrun, slurm_skip_reason, start_batchrun, wait_for

from batchrun.errors import ExecutorError
from batchrun.executors.base import ExecutorOptions
from batchrun.executors.jobfiles import Unrecorded
from batchrun.executors.slurm.executor import SlurmExecutor, SlurmSettings, _Tracked, manifest_line, parse_squeue
from batchrun.executors.slurm.submit import index_manifests, submitted_arrays, write_task_script
from batchrun.executors.slurm.text import manifest_job_id, parse_submitted, task_script
from batchrun.runfile.file import job_id_of

MakeRunfile = Callable[..., Path]


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = slurm_skip_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture()
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A runfile name unique to this test and process; no task of its array outlives the test."""
    stem = f"sl{os.getpid()}{request.node.name[5:20].replace('_', '')}"
    yield stem
    if shutil.which("scancel"):
        subprocess.run(["scancel", "-n", f"batchrun-{stem}"], check=False, capture_output=True)


def _active_tasks(stem: str) -> dict[str, tuple[str, str]]:
    """This test's array tasks that are queued or running.

    Not those COMPLETING: their script has ended and SLURM is cleaning up after
    it, for a moment or (on a loaded machine) a few seconds after batchrun saw it end.
    """
    answer = subprocess.run(["squeue", "-h", "-r", "-n", f"batchrun-{stem}", "-o", "%i %T %o"], capture_output=True, text=True, check=True)
    return {task: seen for task, seen in parse_squeue(answer.stdout).items() if seen[0] != "COMPLETING"}


def _slurm(*args: str) -> list[str]:
    return ["launch", *args, "--executor", "slurm"]


def _states(runs_dir: Path) -> dict[str, tuple[str, object]]:
    """job id -> (state, exit status) from metadata.json."""
    return {job_id: (str(entry["state"]), entry["status"]) for job_id, entry in read_metadata(runs_dir).items()}


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# -- without SLURM ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["plain", "it's", 'say "hi" $HOME `id` \\n \\', "two\nlines\n", "\n", "", "ünïcødé ✓", "  spaced  ", "a;b&&c|d"],
)
def test_manifest_line_round_trips_through_sh(value: str) -> None:
    base = {"PATH": os.environ["PATH"], "KEEP": "same", "GONE": "x"}
    env = {"PATH": os.environ["PATH"], "KEEP": "same", "VALUE": value, "BATCHRUN_JOB_ID": "0123abcd"}
    line = manifest_line("0123abcd", f"printf '%s|' \"$VALUE\" {value!r}", env, base)
    assert line.count("\n") == 1 and line.startswith(": 0123abcd; ")
    script = f"__batchrun_nl='\n'\n{line}" + 'printf "%s|%s|%s|%s" "$VALUE" "${GONE-unset}" "$KEEP" "$__batchrun_cmd"'
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=base, check=True).stdout
    assert out == f"{value}|unset|same|printf '%s|' \"$VALUE\" {value!r}"
    assert "KEEP" not in line and "PATH" not in line, "only what differs from the submitting environment"


def test_parse_squeue_keeps_array_tasks_only() -> None:
    text = "12_0 RUNNING /r/slurm/batchrun-task.sh /r/slurm/a b.manifest\n12_1 PENDING x\n13 CANCELLED y\n14_[2-5%2] PENDING z\n"
    assert parse_squeue(text) == {
        "12_0": ("RUNNING", "/r/slurm/batchrun-task.sh /r/slurm/a b.manifest"),
        "12_1": ("PENDING", "x"),
    }


# -- damaged files under runs/<name>/slurm/, read back after a crash ----------


def test_manifest_lines_that_name_no_job_are_skipped(tmp_path: Path) -> None:
    good = manifest_line("0123456789abcdef", "echo hi", {}, {}).encode()
    assert manifest_job_id(good) == "0123456789abcdef"
    for damaged in (b"\xff\xfe: 0123", b": 0123456789abc", b": 0123456789abcdef", b": 01234567\xff9abcdef; x", b"", b"\x00" * 40):
        assert manifest_job_id(damaged) is None
    (tmp_path / "a.manifest").write_bytes(b"\xff\xfe\x00garbage\n" + good + b": 0123456789ab")
    assert index_manifests(tmp_path) == {"0123456789abcdef": ("a.manifest", 1)}


def test_damaged_submitted_lines_are_skipped(tmp_path: Path) -> None:
    data = b"a.manifest 12 3\n\xff\xfe garbage\na.manifest \xff 3\na.manifest 1\xd9\xa3 3\nb.manifest 13 1\na.manifest 14 3\na.manifest 1"
    assert parse_submitted(data, "a.manifest") == ["12", "14"]
    assert submitted_arrays(tmp_path, "a.manifest") == []
    (tmp_path / "submitted").write_bytes(data)
    assert submitted_arrays(tmp_path, "b.manifest") == ["13"]


def test_a_damaged_task_script_is_replaced(tmp_path: Path) -> None:
    script = tmp_path / "batchrun-task.sh"
    script.write_bytes(b"\xff\xfe#!/bin/sh garbage\x00")
    write_task_script(tmp_path, "/some/dir")
    assert script.read_text() == task_script("/some/dir")
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize("args", [["--signal=B:USR1@60"], ["--signal", "RB:10@5"], ["-p", "x", "--signal=b:TERM"]])
def test_a_signal_for_the_batch_shell_in_sbatch_args_is_refused_for_the_checkpoint_signal(tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch shell is the job's supervisor: SLURM's B: signal would kill it, leaving the job without its record."""
    executor = SlurmExecutor(ExecutorOptions(runs_dir=str(tmp_path)), SlurmSettings(sbatch_args=args))
    with pytest.raises(ExecutorError, match=r"pass --checkpoint-signal SIG@SECONDS \(with --timeout\)"):
        executor.open()
    # A signal for job steps (srun) passes: no sbatch on this PATH is the next thing open finds.
    monkeypatch.setenv("PATH", str(tmp_path))
    executor = SlurmExecutor(ExecutorOptions(runs_dir=str(tmp_path)), SlurmSettings(sbatch_args=["--signal=USR1@60", "--signal", "10"]))
    with pytest.raises(ExecutorError, match="sbatch not found on PATH"):
        executor.open()


def test_a_task_slurm_ended_at_its_time_limit_without_a_record_timed_out_others_keep_their_status(tmp_path: Path) -> None:
    for state, record, status in [("TIMEOUT", None, Unrecorded.TIMED_OUT), ("CANCELLED", None, -9), ("TIMEOUT", "0 1\n", 0), ("", None, -9)]:
        log_dir = tmp_path / state / str(status)
        log_dir.mkdir(parents=True)
        if record is not None:
            (log_dir / "exit").write_text(record)
        tracked = _Tracked(str(log_dir))
        tracked.settle_gone("12_0", state, tmp_path)
        assert (tracked.status, tracked.done.is_set()) == (status, True), state
        assert ("without an exit record" in (log_dir / "err.log").read_text()) if record is None else not (log_dir / "err.log").exists()


def test_missing_sbatch_or_controller_is_a_one_line_error(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo never"])
    env = {**os.environ, "PATH": str(workdir / "nothing")}
    proc = run_batchrun(*_slurm("exp.runfile"), cwd=workdir, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("batchrun: error: sbatch not found on PATH: --executor slurm needs") and proc.stderr.count("\n") == 1
    # A controller that does not answer: stand-ins for the SLURM commands.
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    for command in ("sbatch", "sinfo", "squeue", "scancel", "scontrol"):
        (bin_dir / command).write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n")
        (bin_dir / command).chmod(0o755)
    proc = run_batchrun(*_slurm("exp.runfile"), cwd=workdir, env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr == (
        "batchrun: error: the SLURM controller does not answer (sinfo: slurm_load_partitions: "
        "Unable to contact slurm controller (connect failure)); is slurmctld running?\n"
    )
    assert exit_text(workdir / "runs" / "exp" / "logs" / job_id_of("echo never")) is None


# -- against a real SLURM -----------------------------------------------------


def test_same_job_ids_states_exit_codes_and_output_as_local(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    commands = [
        "echo hello; echo oops >&2",
        "exit 3",
        'echo "$BATCHRUN_JOB_ID" $0 $# "$FOO"; pwd',
        "printf '%s\\n' 'it'\"'\"'s' \"two words\" ünïcødé",
        "sh -c 'kill -TERM $$'",
    ]
    make_runfile(commands, f"{name}.runfile")
    results = {}
    for executor in ("local", "slurm"):
        args = ["launch", f"{name}.runfile", "-j", "8", "--executor", executor, "--accounting_dir", f"runs/{executor}", "--env", "FOO=a\nb"]
        proc = run_batchrun(*args, cwd=workdir)
        assert proc.returncode == 1, proc.stderr
        results[executor] = _states(workdir / "runs" / executor)
    assert results["slurm"] == results["local"]
    assert results["slurm"][job_id_of("exit 3")] == ("failed", 3)
    assert results["slurm"][job_id_of("sh -c 'kill -TERM $$'")] == ("failed", 143)
    assert {state for state, _ in results["slurm"].values()} == {"succeeded", "failed"}
    for command in commands:
        local = workdir / "runs" / "local" / "logs" / job_id_of(command)
        remote = workdir / "runs" / "slurm" / "logs" / job_id_of(command)
        for log in ("out.log", "err.log"):
            assert (remote / log).read_text() == (local / log).read_text(), (command, log)
        assert exit_text(remote) == exit_text(local), command
    # Manifests are removed once their tasks ended; the task script stays.
    assert sorted(path.name for path in (workdir / "runs" / "slurm" / "slurm").iterdir()) == ["batchrun-task.sh", "submitted"]


def test_sbatch_args_reach_sbatch(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    make_runfile(['echo "$SLURM_JOB_NAME" "$SLURM_JOB_PARTITION"'], f"{name}.runfile")
    proc = run_batchrun(*_slurm(f"{name}.runfile", "--sbatch-args", f"--job-name=xyz{name} --partition=debug"), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    out = workdir / "runs" / name / "logs" / job_id_of('echo "$SLURM_JOB_NAME" "$SLURM_JOB_PARTITION"') / "out.log"
    assert out.read_text() == f"xyz{name} debug\n"
    proc = run_batchrun(*_slurm(f"{name}.runfile", "--rerun-all", "--sbatch-args=--partition=nosuchpartition"), cwd=workdir)
    assert proc.returncode == 2
    assert re.fullmatch(r"batchrun: error: sbatch failed: sbatch: error: .*[Pp]artition.*\n", proc.stderr.splitlines(keepends=True)[-1])


def _scontrol_fields(out_log: Path) -> dict[str, str]:
    """The key=value fields of the `scontrol show job` a task printed about itself."""
    return dict(word.split("=", 1) for word in out_log.read_text().split() if "=" in word)


def test_requests_reach_slurm_one_array_per_request(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    show = 'scontrol show job "$SLURM_JOB_ID"; echo'
    lines = ["# batchrun: cpus=3 mem=100M time=10m", f"{show} a", f"{show} b", "# batchrun: cpus=2 time=90", f"{show} c", "# batchrun:", f"{show} d"]
    make_runfile(lines, f"{name}.runfile")
    proc = run_batchrun(*_slurm(f"{name}.runfile", "-j", "4", "--sbatch-args", f"--comment=all{name}"), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    shown = {tag: _scontrol_fields(workdir / "runs" / name / "logs" / job_id_of(f"{show} {tag}") / "out.log") for tag in "abcd"}
    for tag in "ab":
        assert (shown[tag]["CPUs/Task"], shown[tag]["MinMemoryNode"], shown[tag]["TimeLimit"]) == ("3", "100M", "00:10:00"), shown[tag]
    assert (shown["c"]["CPUs/Task"], shown["c"]["TimeLimit"]) == ("2", "00:02:00"), shown["c"]  # SLURM counts whole minutes
    # No limit asked: UNLIMITED, or 365 days, as the test cluster shows it in some runs (a year is SLURM's stand-in for "no limit").
    assert shown["d"]["CPUs/Task"] == "1" and shown["d"]["TimeLimit"] in ("UNLIMITED", "365-00:00:00"), shown["d"]
    assert {fields["Comment"] for fields in shown.values()} == {f"all{name}"}  # --sbatch-args applies to every array
    arrays = {tag: fields["ArrayJobId"] for tag, fields in shown.items()}
    assert arrays["a"] == arrays["b"] and len({arrays["a"], arrays["c"], arrays["d"]}) == 3
    # A GPU request is --gres=gpu:N; this test cluster has no GPU gres, so sbatch's refusal is the one line.
    make_runfile(["# batchrun: gpus=2", "true"], f"{name}.runfile")
    proc = run_batchrun(*_slurm(f"{name}.runfile"), cwd=workdir)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == "batchrun: error: sbatch failed: sbatch: error: Invalid generic resource (gres) specification", proc.stderr


def test_kill_9_then_relaunch_submits_nothing_twice(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}; sleep 1" for i in range(24)], f"{name}.runfile")
    proc = start_batchrun(*_slurm(f"{name}.runfile", "-j", "8"), cwd=workdir)
    wait_for(lambda: len(_lines(side)) >= 10, timeout=60, what="some jobs to run")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = run_batchrun(*_slurm(f"{name}.runfile", "-j", "8"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert sorted(_lines(side), key=int) == [str(i) for i in range(24)], "a job ran twice or was skipped"
    assert {state for state, _ in _states(workdir / "runs" / name).values()} == {"succeeded"}
    assert _active_tasks(name) == {}


def test_jobs_submitted_just_before_a_kill_are_found_without_their_journal_line(
    slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str
) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}; sleep 3" for i in range(8)], f"{name}.runfile")
    proc = start_batchrun(*_slurm(f"{name}.runfile", "-j", "8"), cwd=workdir)
    wait_for(lambda: len(_lines(side)) >= 1, timeout=60, what="a job to run")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # As if batchrun died between sbatch and writing the references.
    journal = workdir / "runs" / name / "jobs.journal"
    journal.write_text("".join(line for line in journal.read_text().splitlines(keepends=True) if not line.startswith("P ")))
    again = run_batchrun(*_slurm(f"{name}.runfile", "-j", "8"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "still running from an earlier launch (adopting)" in again.stdout
    assert sorted(_lines(side), key=int) == [str(i) for i in range(8)], "a job ran twice or was skipped"


def test_damaged_manifests_submitted_log_and_task_script_after_a_kill_give_a_clean_relaunch(
    slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str
) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}; sleep 3" for i in range(8)], f"{name}.runfile")
    proc = start_batchrun(*_slurm(f"{name}.runfile", "-j", "8"), cwd=workdir)
    wait_for(lambda: len(_lines(side)) >= 1, timeout=60, what="a job to run")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    runs = workdir / "runs" / name
    journal = runs / "jobs.journal"
    journal.write_text("".join(line for line in journal.read_text().splitlines(keepends=True) if not line.startswith("P ")))
    # Garbage around every line a relaunch reads back to find the jobs (the tasks have read theirs).
    slurm_dir = runs / "slurm"
    for manifest in slurm_dir.glob("*.manifest"):
        with manifest.open("ab") as f:
            f.write(b"\xff\xfe\x00 not a line\n: 0123456789ab")
    submitted = slurm_dir / "submitted"
    submitted.write_bytes(b"\xff\xfe garbage\n" + submitted.read_bytes() + b"\xc3\x28 1\xd9 2\nx.manifest")
    (slurm_dir / "batchrun-task.sh").write_bytes(b"\xff\xfe\x00")
    again = run_batchrun(*_slurm(f"{name}.runfile", "-j", "8"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert sorted(_lines(side), key=int) == [str(i) for i in range(8)], "a job ran twice or was skipped"
    assert (slurm_dir / "batchrun-task.sh").read_bytes().startswith(b"#!/bin/sh\n")


def test_ctrl_c_cancels_every_job_and_records_them_interrupted(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    started = workdir / "started.txt"
    make_runfile([f"echo {i} >> {started}; sleep 120" for i in range(10)], f"{name}.runfile")
    proc = start_batchrun(*_slurm(f"{name}.runfile", "-j", "6", "--grace", "2"), cwd=workdir)
    wait_for(lambda: len(_lines(started)) >= 2, timeout=60, what="jobs to start")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert _active_tasks(name) == {}
    states = [state for state, _ in _states(workdir / "runs" / name).values()]
    assert states.count("interrupted") == 6 and states.count("pending") == 4


def test_batchrun_kill_cancels_one_running_job_and_the_launch_goes_on(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    """Issue 17: `batchrun kill` on SLURM goes through scancel; the other job runs to its end."""
    started, side = workdir / "started.txt", workdir / "side.txt"
    make_runfile([f"echo a >> {started}; sleep 120; echo a >> {side}", f"echo b >> {started}; sleep 3; echo b >> {side}"], f"{name}.runfile")
    proc = start_batchrun(*_slurm(f"{name}.runfile", "-j", "2", "--grace", "2"), cwd=workdir)
    wait_for(lambda: "a" in _lines(started), timeout=60, what="the long job to start")
    killed = run_batchrun("kill", f"{name}.runfile", "1", cwd=workdir)
    assert killed.returncode == 0, killed.stderr
    proc.communicate(timeout=120)
    assert proc.returncode == 1  # not every job succeeded: one was killed
    assert _lines(side) == ["b"], "the killed job ran on, or the other one did not finish"
    states = _states(workdir / "runs" / name)
    assert sorted(state for state, _ in states.values()) == ["killed", "succeeded"]
    assert _active_tasks(name) == {}


def test_sigterm_cancels_queued_tasks(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    make_runfile(["echo never 1", "echo never 2", "echo never 3", "echo never 4"], f"{name}.runfile")
    proc = start_batchrun(*_slurm(f"{name}.runfile", "-j", "3", "--sbatch-args=--begin=now+3600"), cwd=workdir)
    wait_for(lambda: len(_active_tasks(name)) == 3, timeout=30, what="three queued tasks")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert _active_tasks(name) == {}
    assert sorted(state for state, _ in _states(workdir / "runs" / name).values()) == ["interrupted"] * 3 + ["pending"]


def test_detach_submits_and_a_later_launch_collects(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}; sleep 1" for i in range(12)], f"{name}.runfile")
    proc = run_batchrun(*_slurm(f"{name}.runfile", "-j", "4", "--detach"), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    meta = read_metadata(workdir / "runs" / name)
    assert all(re.fullmatch(r"\d+_\d+", str(entry["job_ref"])) for entry in meta.values())
    assert len({entry["job_ref"] for entry in meta.values()}) == 12
    # -j holds in the cluster although no launch is watching.
    most = 0
    deadline = time.monotonic() + 60
    while len(_lines(side)) < 12 and time.monotonic() < deadline:
        running = [state for state, _ in _active_tasks(name).values() if state == "RUNNING"]
        assert len(running) <= 4
        most = max(most, len(running))
    assert most > 0
    again = run_batchrun(*_slurm(f"{name}.runfile", "-j", "4"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert sorted(_lines(side), key=int) == [str(i) for i in range(12)]
    assert {state for state, _ in _states(workdir / "runs" / name).values()} == {"succeeded"}


def test_a_job_that_leaves_no_exit_record_is_lost_not_succeeded(slurm: None, make_runfile: MakeRunfile, workdir: Path, name: str) -> None:
    # $$ is the wrapper: killed, it cannot record an exit status, and SLURM
    # ends the task. batchrun notices it is gone, as after a node failure.
    command = "kill -KILL $$; sleep 60"
    make_runfile([command, "true"], f"{name}.runfile")
    proc = run_batchrun(*_slurm(f"{name}.runfile", "-j", "2"), cwd=workdir)
    assert proc.returncode == 1, proc.stderr
    assert _states(workdir / "runs" / name)[job_id_of(command)] == ("failed", 137)
    err = (workdir / "runs" / name / "logs" / job_id_of(command) / "err.log").read_text()
    assert re.fullmatch(r"batchrun: SLURM job \d+_\d+ ended \w+ without an exit record; SLURM's output: .*\.out\n", err)
