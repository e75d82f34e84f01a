"""Unit tests of `batchrun.status.view`: reading a runs directory without touching it."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.cli.logs import _tail_bytes
from batchrun.cli.status import _sweep_columns
from batchrun.errors import InputError, MetadataError, UsageError
from batchrun.executors import ExecutorOptions, jobfiles
from batchrun.executors.local.executor import LocalExecutor
from batchrun.executors.slurm import cluster as slurm_cluster
from batchrun.launch.launch import Launch, LaunchOptions
from batchrun.runfile.file import job_id_of, load_runfile
from batchrun.status.lookup import find_job, probe_job, short_id_length
from batchrun.status.preview import preview_launch
from batchrun.status.view import JobStatus, load_status, read_status
from batchrun.store.journal import JOURNAL_NAME
from batchrun.store.records import REMOVED, State
from batchrun.store.rundir import RunsDir, launch_holder
from batchrun.store.target import resolve_target

T0 = 1_700_000_000.0


def write_runfile(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def journal_line(kind: str, command: str, *fields: object) -> str:
    return " ".join([kind, job_id_of(command), *map(str, fields)]) + "\n"


def ended(command: str, status: int, attempt: int = 1) -> str:
    return journal_line("E", command, attempt, status, f"{T0:.6f}", f"{T0 + 2:.6f}")


def started(command: str, slot: int = 0, attempt: int = 1) -> str:
    return journal_line("S", command, attempt, f"{T0:.6f}", slot, "host")


def stopped(command: str, attempt: int = 1) -> str:
    return journal_line("I", command, attempt, f"{T0:.6f}", f"{T0 + 1:.6f}", "interrupted")


def make_runs_dir(workdir: Path, journal: list[str], name: str = "exp") -> RunsDir:
    runs_dir = RunsDir.for_runfile(Path(f"{name}.runfile"))
    runs_dir.logs.mkdir(parents=True, exist_ok=True)
    (runs_dir.path / JOURNAL_NAME).write_text("".join(journal))
    return runs_dir


@pytest.fixture()
def spawned() -> Iterator[list[int]]:
    """Jobs started by a test (the pids of their shells), killed (with their process groups) at its end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def spawn_running_job(runs_dir: RunsDir, command: str, pids: list[int]) -> None:
    """Start a job the way a launch does (holding its lock, as --detach) and leave it running."""
    log_dir = str(runs_dir.log_dir(job_id_of(command)))
    executor = LocalExecutor(ExecutorOptions(runs_dir=str(runs_dir.path)))
    env = {**os.environ, "BATCHRUN_JOB_ID": job_id_of(command), "BATCHRUN_LOG_DIR": log_dir}
    pids.extend(int(ref) for ref in executor.start_many([(job_id_of(command), command, log_dir, env)]))


# -- targets ---------------------------------------------------------------------


def test_resolve_target_tells_runfiles_gridspecs_and_runs_directories_apart(workdir: Path) -> None:
    write_runfile(workdir / "exp.runfile", ["true"])
    (workdir / "grid.yml").write_text("program: echo\nparameters:\n  a:\n    values: [1]\n")
    (workdir / "runs" / "exp").mkdir(parents=True)
    runfile = resolve_target(Path("exp.runfile"))
    assert runfile.runfile == Path("exp.runfile") and runfile.runs_dir.path == workdir / "runs" / "exp"
    grid = resolve_target(Path("grid.yml"))
    assert grid.gridspec == Path("grid.yml") and grid.runfile == Path("grid.runfile")
    assert grid.runs_dir.path == workdir / "runs" / "grid"
    runs = resolve_target(Path("runs/exp"))
    assert runs.runfile is None and runs.runs_dir.path == workdir / "runs" / "exp"
    assert resolve_target(Path("exp.runfile"), accounting_dir=Path("acc")).runs_dir.path == workdir / "acc"
    with pytest.raises(InputError, match="no such runfile, gridspec or runs directory"):
        resolve_target(Path("runs/nope"))


def test_nothing_launched_and_not_a_runs_directory(workdir: Path) -> None:
    write_runfile(workdir / "exp.runfile", ["true"])
    (workdir / "empty").mkdir()
    with pytest.raises(UsageError, match=r"^nothing launched yet for exp.runfile; run batchrun launch exp.runfile$"):
        load_status(resolve_target(Path("exp.runfile")))
    with pytest.raises(InputError, match="not a runs directory"):
        load_status(resolve_target(Path("empty")))
    # A plan does not need an earlier launch.
    assert [job.state for job in load_status(resolve_target(Path("exp.runfile")), need_launched=False).jobs] == [State.PENDING]


# -- reading states ----------------------------------------------------------------


def test_states_come_from_the_journal_and_removed_lines_are_counted_apart(workdir: Path) -> None:
    lines = ["echo ok", "exit 3", "sleep 1", "echo pending"]
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", lines))
    runs_dir = make_runs_dir(workdir, [ended("echo ok", 0), ended("exit 3", 3), stopped("sleep 1"), ended("echo gone", 0)])
    (runs_dir.metadata).write_text(json.dumps({job_id_of("echo gone"): {"command": "echo gone", "state": "succeeded", "line": 9}}))
    status = read_status(runs_dir, runfile)
    assert [(job.command, job.category) for job in status.jobs] == [
        ("echo ok", State.SUCCEEDED),
        ("exit 3", State.FAILED),
        ("sleep 1", State.INTERRUPTED),
        ("echo pending", State.PENDING),
        ("echo gone", REMOVED),
    ]
    counts = status.counts()
    assert counts == {
        "succeeded": 1, "failed": 1, "timeout": 0, "interrupted": 1, "requeued": 0, "killed": 0, "stopped": 0, "running": 0, "pending": 1, "ignored": 0, "removed": 1,
    }
    assert [job.command for job in status.select(["failed", "removed"])] == ["exit 3", "echo gone"]
    assert not status.launch_running


def test_a_job_a_dead_launch_left_running_is_settled_in_memory_only(workdir: Path, spawned: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["ended meanwhile", "died", "still going", "on slurm"]
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", lines))
    journal = [started(line, slot) for slot, line in enumerate(lines)]
    runs_dir = make_runs_dir(workdir, [*journal, journal_line("P", "on slurm", 1, "4242_7", 0)])
    done_dir = runs_dir.log_dir(job_id_of("ended meanwhile"))
    done_dir.mkdir()
    (done_dir / jobfiles.EXIT_NAME).write_text("7\n")
    spawn_running_job(runs_dir, "sleep 30", spawned)
    # The running job's lock: hand "still going" the lock file of a live job.
    alive_dir = runs_dir.log_dir(job_id_of("still going"))
    alive_dir.mkdir()
    fd = os.open(alive_dir / jobfiles.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        before = (runs_dir.path / JOURNAL_NAME).read_bytes()
        status = read_status(runs_dir, runfile)
        states = {job.command: job for job in status.jobs}
        assert states["ended meanwhile"].category == State.FAILED and states["ended meanwhile"].record.status == 7
        assert states["ended meanwhile"].unwatched
        assert states["died"].category == State.INTERRUPTED
        assert states["still going"].category == State.RUNNING and states["still going"].record.slot == 2
        # A detached SLURM job: squeue tells (one call); no answer, or not asked: it stays as the journal has it.
        asked: list[list[str]] = []
        for answer, expected in (({"4242_7"}, State.RUNNING), (set(), State.INTERRUPTED), (None, State.RUNNING)):
            monkeypatch.setattr(slurm_cluster, "slurm_active", lambda refs, answer=answer: asked.append(list(refs)) or answer)
            assert {job.command: job for job in read_status(runs_dir, runfile).jobs}["on slurm"].category == expected
        assert asked == [["4242_7"]] * 3
        assert {job.command: job for job in read_status(runs_dir, runfile, ask_cluster=False).jobs}["on slurm"].category == State.RUNNING
        assert len(asked) == 3
        assert (runs_dir.path / JOURNAL_NAME).read_bytes() == before, "status wrote to the journal"
        assert not (runs_dir.path / ".lock").exists(), "status touched the launch lock"
    finally:
        os.close(fd)


def test_a_held_launch_lock_means_running_jobs_are_running(workdir: Path) -> None:
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", ["sleep 9"]))
    runs_dir = make_runs_dir(workdir, [started("sleep 9", 1)])
    lock = runs_dir.path / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, f"{os.getpid()}\n".encode())
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        status = read_status(runs_dir, runfile)
        assert status.launch_running and status.launch_pid == os.getpid()
        assert status.jobs[0].category == State.RUNNING
        # The probe sees the launch too, without taking its lock.
        probe = probe_job(runs_dir, job_id_of("sleep 9"))
        assert probe.launch_running and not probe.running and probe.exit_time is None
    finally:
        os.close(fd)
    assert read_status(runs_dir, runfile).jobs[0].category == State.INTERRUPTED


def test_status_names_the_lock_holder_as_kill_and_stop_do_even_when_the_file_names_another(workdir: Path) -> None:
    """The lock file may still name the previous launch for an instant: /proc/locks names the holder."""
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", ["sleep 9"]))
    runs_dir = make_runs_dir(workdir, [started("sleep 9", 1)])
    fd = os.open(runs_dir.path / ".lock", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert read_status(runs_dir, runfile).launch_pid == launch_holder(runs_dir) == os.getpid()
    finally:
        os.close(fd)
    assert read_status(runs_dir, runfile).launch_pid is None and launch_holder(runs_dir) is None


def test_a_corrupt_metadata_json_is_reported_unless_the_launch_vouches_for_it(workdir: Path) -> None:
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", ["true"]))
    runs_dir = make_runs_dir(workdir, [ended("true", 0)])
    runs_dir.metadata.write_text('{"abc": ')
    with pytest.raises(MetadataError, match=r"metadata.json:1: corrupt metadata"):
        read_status(runs_dir, runfile)


def test_metadata_from_the_original_batchrun_counts_as_finished(workdir: Path) -> None:
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", ["a", "b", "c"]))
    runs_dir = RunsDir.for_runfile(Path("exp.runfile"))
    runs_dir.path.mkdir(parents=True)
    runs_dir.metadata.write_text(json.dumps({
        job_id_of("a"): {"command": "a", "status": 0, "start": 1.0, "runtime": 2.0},
        job_id_of("b"): {"command": "b", "status": 1, "start": 1.0, "runtime": 2.0},
        job_id_of("c"): {"command": "c", "status": None, "start": 1.0, "runtime": None},
    }))
    status = read_status(runs_dir, runfile)
    assert [job.category for job in status.jobs] == [State.SUCCEEDED, State.FAILED, State.PENDING]


def test_a_runs_directory_alone_lists_what_metadata_json_knows_in_line_order(workdir: Path) -> None:
    runs_dir = make_runs_dir(workdir, [ended("b", 0), ended("a", 2)])
    runs_dir.metadata.write_text(json.dumps({
        job_id_of("b"): {"command": "b", "line": 2, "state": "succeeded"},
        job_id_of("a"): {"command": "a", "line": 1, "state": "failed"},
    }))
    status = load_status(resolve_target(Path("runs/exp")))
    assert [(job.line, job.command, job.category) for job in status.jobs] == [(1, "a", State.FAILED), (2, "b", State.SUCCEEDED)]


# -- finding one job ---------------------------------------------------------------


def colliding_commands(length: int = 2) -> tuple[str, str, str]:
    """Two commands whose job ids share a non-numeric `length`-digit prefix."""
    seen: dict[str, str] = {}
    for i in range(100_000):
        command = f"echo {i}"
        prefix = job_id_of(command)[:length]
        if prefix.isdigit():
            continue
        if prefix in seen:
            return seen[prefix], command, prefix
        seen[prefix] = command
    raise AssertionError("no collision")


def test_find_job_by_line_id_prefix_and_substring(workdir: Path) -> None:
    first, second, prefix = colliding_commands()
    lines = ["# comment", first, second, "python3 train.py --lr=0.1", first]
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", lines))
    runs_dir = make_runs_dir(workdir, [ended(first, 0)])
    status = read_status(runs_dir, runfile)
    assert find_job(status, "2").command == first
    assert find_job(status, "5").command == first  # a repeated line is its first occurrence's job
    assert find_job(status, job_id_of(second)[:6]).command == second
    assert find_job(status, job_id_of(second).upper()).command == second
    assert find_job(status, "train").command == "python3 train.py --lr=0.1"
    with pytest.raises(UsageError, match=rf"job id prefix '{prefix}' matches 2 jobs: .*\(line 2\) {first}; .*\(line 3\) {second}; give more digits"):
        find_job(status, prefix)
    with pytest.raises(UsageError, match="'echo' matches 2 jobs"):
        find_job(status, "echo")
    with pytest.raises(UsageError, match="no job matches 'nothing-like-it'"):
        find_job(status, "nothing-like-it")


def test_short_ids_grow_until_unique() -> None:
    def jobs(*ids: str) -> list[JobStatus]:
        return [JobStatus(job_id, "true", n, None, None, False) for n, job_id in enumerate(ids, 1)]

    assert short_id_length(jobs("aaaaaaaa11111111", "aaaaaaab11111111")) == 8
    assert short_id_length(jobs("aaaaaaaa11111111", "aaaaaaaa21111111")) == 9
    assert short_id_length(jobs("aaaaaaaaaaa11111", "aaaaaaaaaaa21111", "b" * 16)) == 12
    assert short_id_length([]) == 8


def test_tail_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100_000)))
    assert _tail_bytes(log, 2) == b"line 99998\nline 99999\n"
    assert _tail_bytes(log, 0) == b""
    log.write_bytes(b"a\nb\nno newline")
    assert _tail_bytes(log, 1) == b"no newline"
    assert _tail_bytes(log, 2) == b"b\nno newline"
    assert _tail_bytes(log, 10) == b"a\nb\nno newline"
    log.write_bytes(b"")
    assert _tail_bytes(log, 3) == b""


# -- sweeps --------------------------------------------------------------------------


def test_commands_that_differ_only_in_parameters_are_a_sweep(workdir: Path) -> None:
    lines = ["python3 t.py --lr=0.1 --tag='a b'", "python3 t.py --lr=0.2 --tag=c --fast", "python3 t.py --lr=0.3 --tag=d"]
    runfile = load_runfile(write_runfile(workdir / "exp.runfile", lines))
    status = read_status(make_runs_dir(workdir, []), runfile)
    sweep = _sweep_columns(status)
    assert sweep is not None
    names, params = sweep
    assert names == ["lr", "tag", "fast"]
    assert params[job_id_of(lines[0])] == {"lr": "0.1", "tag": "a b"}
    assert params[job_id_of(lines[1])] == {"lr": "0.2", "tag": "c", "fast": True}
    for other in (["python3 a.py --x=1", "python3 b.py --x=2"], ["echo a", "echo b"], ["t --x=1 in.txt", "t --x=2 out.txt"], ["t --x=1"]):
        runfile = load_runfile(write_runfile(workdir / "exp.runfile", other))
        assert _sweep_columns(read_status(make_runs_dir(workdir, []), runfile)) is None, other


# -- plans ---------------------------------------------------------------------------


def launch_plan(runfile_path: Path, mode: str) -> tuple[object, ...]:
    launch = Launch(load_runfile(runfile_path), LaunchOptions(mode=mode))
    plan = launch.prepare()
    launch.finish()
    return plan_key(plan)


def plan_key(plan: object) -> tuple[object, ...]:
    return (
        [job.job_id for job in plan.to_run],  # type: ignore[attr-defined]
        sorted(job.job_id for job in plan.adopt),  # type: ignore[attr-defined]
        *(getattr(plan, name) for name in ("new", "succeeded", "failed", "failed_skipped", "rerun_unfinished", "recovered", "removed")),
    )


@pytest.mark.parametrize("mode", ["resume", "retry_failed", "overwrite"])
def test_preview_is_the_plan_the_launch_then_makes(workdir: Path, spawned: list[int], mode: str) -> None:
    lines = ["echo ok", "exit 3", "sleep 1", "echo pending", "ended meanwhile", "died", "sleep 30", "echo reset"]
    path = write_runfile(workdir / "exp.runfile", lines)
    journal = [
        ended("echo ok", 0), ended("exit 3", 3), stopped("sleep 1"), ended("echo gone", 1),
        started("ended meanwhile"), started("died"), started("sleep 30"),
        ended("echo reset", 0), journal_line("R", "echo reset"),
    ]
    runs_dir = make_runs_dir(workdir, journal)
    runs_dir.metadata.write_text(json.dumps({job_id_of("echo gone"): {"command": "echo gone", "state": "failed", "line": 9}}))
    done_dir = runs_dir.log_dir(job_id_of("ended meanwhile"))
    done_dir.mkdir()
    (done_dir / jobfiles.EXIT_NAME).write_text("0\n")
    spawn_running_job(runs_dir, "sleep 30", spawned)
    shown = preview_launch(load_runfile(path), runs_dir, mode)
    assert {name: [job.command for job in jobs] for name, jobs in shown.groups.items() if jobs} == {
        "new": ["echo pending", "echo reset"],
        "interrupted": ["sleep 1", "died"],
        "running": ["sleep 30"],
        "failed": ["exit 3"],
        "succeeded": ["echo ok", "ended meanwhile"],
        "recovered": ["ended meanwhile"],
        "removed": ["echo gone"],
    }
    assert plan_key(shown.plan) == launch_plan(path, mode)


def test_preview_of_a_runfile_never_launched(workdir: Path) -> None:
    path = write_runfile(workdir / "exp.runfile", ["a", "b"])
    runs_dir = RunsDir.for_runfile(path)
    shown = preview_launch(load_runfile(path), runs_dir)
    assert not runs_dir.path.exists(), "a preview created the runs directory"
    assert plan_key(shown.plan) == launch_plan(path, "resume")
    with pytest.raises(UsageError, match="unknown mode 'fast'"):
        preview_launch(load_runfile(path), runs_dir, "fast")
