"""End-to-end tests of launch's options: retries, timeouts, fail-fast, GPUs, order, env."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import kill_all, live_pids_with_env, read_metadata

from batchrun.runfile.file import job_id_of

RunCli = Callable[..., tuple[int, str, str]]
MakeRunfile = Callable[..., Path]


def test_retries_rerun_a_failed_job_and_keep_earlier_logs(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    count = workdir / "count"
    # Fails on its first two attempts, succeeds on the third.
    cmd = f"echo try >> {count}; echo attempt $(wc -l < {count}); test $(wc -l < {count}) -ge 3"
    make_runfile([cmd])
    code, out, _ = run_cli("launch", "exp.runfile", "--retries", "2")
    assert code == 0
    entry = read_metadata(workdir / "runs" / "exp")[job_id_of(cmd)]
    assert entry["attempts"] == 3 and entry["exit_codes"] == [1, 1, 0] and entry["state"] == "succeeded"
    logs = workdir / "runs" / "exp" / "logs" / job_id_of(cmd)
    assert (logs / "out.1.log").read_text() == "attempt 1\n"
    assert (logs / "out.2.log").read_text() == "attempt 2\n"
    assert (logs / "out.log").read_text() == "attempt 3\n"
    assert out.count("retrying") == 2


def test_retries_give_up_after_n_more_attempts(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["exit 7"])
    assert run_cli("launch", "exp.runfile", "--retries", "1")[0] == 1
    entry = read_metadata(workdir / "runs" / "exp")[job_id_of("exit 7")]
    assert entry["exit_codes"] == [7, 7] and entry["state"] == "failed"


def test_timeout_stops_the_whole_job_and_counts_as_failed(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    marker = f"BRTIMEOUT{os.getpid()}"
    cmd = f"export {marker}=1; sh -c 'trap \"\" TERM; sleep 60' & sleep 60"
    make_runfile([cmd, "echo fine"])
    try:
        code, out, _ = run_cli("launch", "exp.runfile", "-j", "2", "--timeout", "1", "--grace", "1")
        assert live_pids_with_env(marker) == [], "a process of the timed-out job survived"
    finally:
        kill_all(live_pids_with_env(marker))
    assert code == 1
    meta = read_metadata(workdir / "runs" / "exp")
    entry = meta[job_id_of(cmd)]
    assert entry["state"] == "timeout"
    assert 1.0 <= entry["runtime"] < 30
    assert meta[job_id_of("echo fine")]["state"] == "succeeded"
    # Finished for a plain resume, rerun by --retry-failed.
    code, out, _ = run_cli("launch", "exp.runfile")
    assert "0 to run" in out
    code, out, _ = run_cli("launch", "exp.runfile", "--retry-failed", "--timeout", "1", "--grace", "0")
    assert "1 to run" in out
    kill_all(live_pids_with_env(marker))


@pytest.mark.parametrize("spelling", ["90", "45s", "30m", "2h", "1h30m", "1.5h"])
def test_timeout_durations_parse(make_runfile: MakeRunfile, run_cli: RunCli, spelling: str) -> None:
    make_runfile(["true"])
    assert run_cli("launch", "exp.runfile", "--timeout", spelling)[0] == 0


def test_fail_fast_starts_nothing_after_the_first_failure(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side"
    make_runfile(["exit 1", f"echo a >> {side}", f"echo b >> {side}"])
    code, out, _ = run_cli("launch", "exp.runfile", "--fail-fast")
    assert code == 1
    assert not side.exists()
    assert "--fail-fast" in out
    # The next launch runs what fail-fast left.
    assert run_cli("launch", "exp.runfile")[0] == 1
    assert side.read_text() == "a\nb\n"


def test_halt_now_stops_running_jobs_too(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    marker = f"BRHALT{os.getpid()}"
    slow = f"export {marker}=1; sleep 60"
    make_runfile([slow, "sleep 0.5; exit 2"])
    started = time.monotonic()
    try:
        code, out, _ = run_cli("launch", "exp.runfile", "-j", "2", "--halt-now", "--grace", "1")
        assert live_pids_with_env(marker) == []
    finally:
        kill_all(live_pids_with_env(marker))
    assert code == 1
    assert time.monotonic() - started < 50
    meta = read_metadata(workdir / "runs" / "exp")
    assert meta[job_id_of(slow)]["state"] == "interrupted"
    assert meta[job_id_of("sleep 0.5; exit 2")]["state"] == "failed"


def test_gpus_map_each_slot_to_one_gpu(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    cmds = [f'sleep 0.0{i % 5}; echo "$BATCHRUN_SLOT $CUDA_VISIBLE_DEVICES" # {i}' for i in range(18)]
    make_runfile(cmds)
    code, _, err = run_cli("launch", "exp.runfile", "--gpus", "4,5,6", "--jobs-per-gpu", "2")
    assert code == 0, err
    seen = set()
    for cmd in cmds:
        slot, gpu = (workdir / "runs" / "exp" / "logs" / job_id_of(cmd) / "out.log").read_text().split()
        seen.add((int(slot), gpu))
    # -j defaults to 3 GPUs x 2; each slot always gets the same GPU, each GPU two slots.
    assert all(0 <= slot < 6 for slot, _ in seen)
    assert all(gpu == ["4", "5", "6"][slot % 3] for slot, gpu in seen)


def test_shuffle_is_random_but_reproducible(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side"
    cmds = [f"echo {i} >> {side}" for i in range(30)]
    orders = []
    for name in ("one", "two"):
        make_runfile(cmds, name=f"{name}.runfile")
        assert run_cli("launch", f"{name}.runfile", "--order", "shuffle", "--seed", "7")[0] == 0
        orders.append(side.read_text().split())
        side.unlink()
    assert orders[0] == orders[1]
    assert orders[0] != [str(i) for i in range(30)]
    assert sorted(orders[0], key=int) == [str(i) for i in range(30)]


def test_env_adds_variables_to_every_job(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(['echo "$FOO|$BAR"'])
    code, _, _ = run_cli("launch", "exp.runfile", "--env", "FOO=a b", "--env", "BAR=x=y")
    assert code == 0
    out = workdir / "runs" / "exp" / "logs" / job_id_of('echo "$FOO|$BAR"') / "out.log"
    assert out.read_text() == "a b|x=y\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["--env", "1X=2"], "expected KEY=VALUE"),
        (["--timeout", "soon"], "expected a duration"),
        (["--gpus", "0,,1"], "comma-separated list"),
        (["--retries", "-1"], "--retries must be 0 or more"),
        (["--fail-fast", "--halt-now"], "not allowed with argument"),
    ],
)
def test_bad_option_values(make_runfile: MakeRunfile, run_cli: RunCli, args: list[str], expected: str) -> None:
    make_runfile(["true"])
    code, _, err = run_cli("launch", "exp.runfile", *args)
    assert code == 2 and expected in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "args",
    [["--cpus", "2", "--executor", "dask"], ["--retries", "-1"], ["--mem", "4G", "--executor", "slurm"], ["--detach", "--executor", "dask"]],
)
def test_dry_run_refuses_the_options_the_launch_refuses(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli, args: list[str]) -> None:
    make_runfile(["true"])
    real = run_cli("launch", "exp.runfile", *args)
    dry = run_cli("launch", "exp.runfile", "--dry-run", *args)
    assert real[0] == dry[0] == 2
    assert real[2] == dry[2] and real[2].startswith("batchrun: error: ") and real[2].count("\n") == 1, (real, dry)
    assert not (workdir / "runs").exists(), "refused options still touched the runs directory"
