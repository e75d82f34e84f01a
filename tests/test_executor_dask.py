"""`--executor dask` end to end: the real CLI against a real scheduler and two worker processes.

The cluster comes from tests/dask/start-dask.sh (one scheduler, two 1-thread
workers on 127.0.0.1), started once for this module and stopped after it.
Tests that need it are skipped when dask.distributed is not installed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    exit_text,
    kill_all,
    live_pids_with_env,
    read_metadata,
    run_batchrun,
    start_batchrun,
    wait_for,
)

from batchrun.executors import Executor
from batchrun.runfile.file import job_id_of

RunCli = Callable[..., tuple[int, str, str]]
MakeRunfile = Callable[..., Path]

SCRIPTS = Path(__file__).resolve().parent / "dask"

pytestmark = pytest.mark.slow


class Cluster:
    """The test cluster of tests/dask/start-dask.sh in `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        bin_dir = str(Path(sys.executable).parent)
        # The scripts find `dask` on PATH; use this interpreter's, which has batchrun.
        self.env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", DASK_PYTHON=sys.executable)

    @property
    def address(self) -> str:
        return (self.path / "scheduler-address").read_text().strip()

    def ensure(self) -> None:
        """Start it, or restart it if a process is missing (idempotent)."""
        subprocess.run(["bash", str(SCRIPTS / "start-dask.sh"), str(self.path)], env=self.env, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPTS / "stop-dask.sh"), str(self.path)], env=self.env, capture_output=True, timeout=60, check=False)

    def worker_pids(self) -> list[int]:
        return [int(p.read_text().strip()) for p in sorted(self.path.glob("worker-*.pid"))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'batchrun[dask]')")
    found = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        found.ensure()
        yield found
    finally:
        found.stop()


def dask_args(cluster: Cluster, *args: str) -> list[str]:
    return ["launch", *args, "--executor", "dask", "--scheduler", cluster.address]


def states(runs: Path) -> dict[str, tuple[object, object]]:
    return {job_id: (entry["state"], entry["status"]) for job_id, entry in read_metadata(runs).items()}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            break
        pid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        found.append(pid)
    return found


def test_same_job_ids_states_and_outputs_as_the_local_executor(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    commands = ["echo one", "echo err >&2; exit 3", "sh -c 'kill -9 $$'", "pwd; cat", 'echo "$BATCHRUN_JOB_ID"', "exit 0"]
    make_runfile(commands)
    local = run_batchrun("launch", "exp.runfile", "-j", "2", "--accounting_dir", "local", cwd=workdir)
    dask = run_batchrun(*dask_args(cluster, "exp.runfile", "-j", "2", "--accounting_dir", "dask"), cwd=workdir)
    assert local.returncode == dask.returncode == 1, dask.stderr
    assert states(workdir / "dask") == states(workdir / "local")
    got = states(workdir / "dask")
    assert set(got) == {job_id_of(c) for c in commands}
    assert got[job_id_of("echo err >&2; exit 3")] == ("failed", 3)
    assert got[job_id_of("sh -c 'kill -9 $$'")] == ("failed", 137)
    assert got[job_id_of("echo one")] == ("succeeded", 0)
    for command in commands:
        job = job_id_of(command)
        for name in ("out.log", "err.log"):
            assert (workdir / "dask" / "logs" / job / name).read_text() == (workdir / "local" / "logs" / job / name).read_text()
        assert exit_text(workdir / "dask" / "logs" / job) == exit_text(workdir / "local" / "logs" / job)


def test_kill_9_of_batchrun_then_relaunch_runs_each_job_once(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo start {i} >> {side}; sleep 2; echo end {i} >> {side}" for i in range(6)])
    # -j 3 on two workers: one task waits in Dask's queue when batchrun dies.
    proc = start_batchrun(*dask_args(cluster, "exp.runfile", "-j", "3"), cwd=workdir)
    wait_for(lambda: len(lines(side)) >= 2, what="two jobs to start")
    proc.kill()
    proc.communicate()
    again = run_batchrun(*dask_args(cluster, "exp.runfile", "-j", "3"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    # Tasks of the killed launch that were still queued must never run late.
    time.sleep(1)
    assert sorted(lines(side)) == sorted([f"start {i}" for i in range(6)] + [f"end {i}" for i in range(6)])
    assert all(state == ("succeeded", 0) for state in states(workdir / "runs" / "exp").values())


def test_damaged_key_files_neither_break_a_stop_nor_start_a_job(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo start {i} >> {side}; sleep 30" for i in range(3)])
    # -j 3 on two workers: one attempt waits in Dask's queue.
    proc = start_batchrun(*dask_args(cluster, "exp.runfile", "-j", "3"), cwd=workdir)
    wait_for(lambda: len(lines(side)) >= 2, what="two jobs to start")
    for key in (workdir / "runs" / "exp" / "logs").glob("*/dask-key"):
        key.write_bytes(b"\xff\xfe\x00garbage \xc3")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "internal error" not in err, err
    # The queued attempt's key names no attempt now: it must never start.
    time.sleep(1.5)
    assert len(lines(side)) == 2


def test_ctrl_c_leaves_no_command_running_on_the_workers(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    make_runfile(
        [
            f"trap '' TERM; echo start 0 >> {side}; sleep 30; echo end 0 >> {side}",
            f"echo start 1 >> {side}; sleep 30 & wait; echo end 1 >> {side}",
            f"echo start 2 >> {side}; sleep 30; echo end 2 >> {side}",
        ]
    )
    runs = workdir / "runs" / "exp"
    marker = f"BATCHRUN_RUNS_DIR={runs}"
    # Three slots, two workers: the third job is still queued in Dask.
    proc = start_batchrun(*dask_args(cluster, "exp.runfile", "-j", "3", "--grace", "1"), cwd=workdir)
    try:
        wait_for(lambda: len(lines(side)) >= 2, what="two jobs to start")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert live_pids_with_env(marker) == []
        time.sleep(1)
        assert live_pids_with_env(marker) == []
        assert not any(line.startswith("end") for line in lines(side))
        if hasattr(Executor, "cancel_queued"):
            # The launch lets the executor cancel queued jobs before it
            # signals the running ones (whose workers then free up).
            assert len(lines(side)) == 2, "the queued job started after the stop"
        assert {state for state, _ in states(runs).values()} == {"interrupted"}
    finally:
        kill_all(live_pids_with_env(marker))
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    again = run_batchrun(*dask_args(cluster, "exp.runfile", "-j", "3", "--timeout", "1", "--grace", "1"), cwd=workdir)
    assert again.returncode == 1
    assert {state for state, _ in states(runs).values()} == {"timeout"}
    assert live_pids_with_env(marker) == []


def test_batchrun_kill_stops_one_job_on_the_workers_and_the_launch_goes_on(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    """Issue 17: `batchrun kill` on Dask signals the job's processes on its worker; the other job finishes."""
    side = workdir / "side.txt"
    make_runfile([f"echo start 0 >> {side}; sleep 60; echo end 0 >> {side}", f"echo start 1 >> {side}; sleep 3; echo end 1 >> {side}"])
    runs = workdir / "runs" / "exp"
    marker = f"BATCHRUN_RUNS_DIR={runs}"
    proc = start_batchrun(*dask_args(cluster, "exp.runfile", "-j", "2", "--grace", "1"), cwd=workdir)
    try:
        wait_for(lambda: "start 0" in " ".join(lines(side)), what="the long job to start")
        killed = run_batchrun("kill", "exp.runfile", "1", cwd=workdir)
        assert killed.returncode == 0, killed.stderr
        proc.communicate(timeout=90)
        assert proc.returncode == 1  # one job was killed
        assert sorted(lines(side)) == ["end 1", "start 0", "start 1"], "the killed job ran on, or the other one did not finish"
        assert sorted(state for state, _ in states(runs).values()) == ["killed", "succeeded"]
        assert live_pids_with_env(marker) == []
    finally:
        kill_all(live_pids_with_env(marker))
        if proc.returncode is None:
            proc.kill()
            proc.communicate()


def test_a_killed_worker_never_counts_as_success_nor_leaves_an_orphan(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    command = f"echo start >> {side}; sleep 3; echo end >> {side}"
    make_runfile([command])
    marker = f"BATCHRUN_JOB_ID={job_id_of(command)}"
    proc = start_batchrun(*dask_args(cluster, "exp.runfile"), cwd=workdir)
    try:
        wait_for(lambda: lines(side) == ["start"], what="the job to start")
        first = live_pids_with_env(marker)
        worker = next(pid for pid in cluster.worker_pids() if any(pid in ancestors(job) for job in first))
        os.kill(worker, signal.SIGKILL)
        # PR_SET_PDEATHSIG through the supervisor: the whole first run dies with its worker.
        wait_for(lambda: not set(first) & set(live_pids_with_env(marker)), timeout=10, what="the killed worker's job to die")
        out, err = proc.communicate(timeout=60)
        time.sleep(0.5)
        assert live_pids_with_env(marker) == []
        state, status = states(workdir / "runs" / "exp")[job_id_of(command)]
        # Dask reschedules the task on the other worker, which runs the job
        # again from the start, after the killed run is gone; the killed run
        # itself never counts.
        assert lines(side) == ["start", "start", "end"], (out, err)
        assert (state, status) == ("succeeded", 0)
    finally:
        kill_all(live_pids_with_env(marker))
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
        cluster.ensure()  # bring the killed worker back for later tests


@pytest.mark.timeout(240)
def test_a_job_needing_a_resource_runs_only_on_a_worker_offering_it(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    from distributed import Client

    # A third worker, the only one offering GPUs (as `dask worker --resources` starts one on a GPU node).
    gpu_worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", cluster.address, "--nthreads", "1", "--resources", "GPU=2", "--name", f"gpu{os.getpid()}"],
        env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with Client(cluster.address, timeout=30) as client:
            client.wait_for_workers(3, timeout=60)
        chain = "p=$$; while [ \"$p\" -gt 1 ]; do echo $p; p=$(cut -d' ' -f4 /proc/$p/stat); done"
        make_runfile(["# batchrun: gpus=1", *(f"{chain} # gpu {i}" for i in range(4)), "# batchrun:", *(f"{chain} # any {i}" for i in range(2))])
        result = run_batchrun(*dask_args(cluster, "exp.runfile", "-j", "4"), cwd=workdir, timeout=180)
        assert result.returncode == 0, result.stderr
        logs = workdir / "runs" / "exp" / "logs"
        for i in range(4):
            ancestry = (logs / job_id_of(f"{chain} # gpu {i}") / "out.log").read_text().split()
            assert str(gpu_worker.pid) in ancestry, f"gpu job {i} ran on a worker offering no GPU"
        # More than any worker offers: one line at once, not a task that waits forever.
        make_runfile(["# batchrun: gpus=4", "echo never"], "big.runfile")
        refused = run_batchrun(*dask_args(cluster, "big.runfile"), cwd=workdir, timeout=120)
        assert refused.returncode == 2
        assert refused.stderr.splitlines()[-1].startswith(f"batchrun: error: job {job_id_of('echo never')} asks the Dask workers for GPU=4, which none of the 3 workers offers (they offer: GPU=2); start workers with: dask worker ADDRESS --resources \"GPU=4\""), refused.stderr
        assert len(refused.stderr.splitlines()) == 1, refused.stderr
    finally:
        gpu_worker.terminate()
        try:
            gpu_worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gpu_worker.kill()
            gpu_worker.wait()


def test_a_lost_scheduler_is_one_line_and_the_relaunch_collects(cluster: Cluster, make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo start {i} >> {side}; sleep 2; echo end {i} >> {side}" for i in range(3)])
    proc = start_batchrun(*dask_args(cluster, "exp.runfile", "-j", "2"), cwd=workdir)
    try:
        wait_for(lambda: len(lines(side)) == 2, what="two jobs to start")
        os.kill(int((cluster.path / "scheduler.pid").read_text()), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2
        assert err == "batchrun: error: lost the Dask scheduler (scheduler-connection-lost); relaunch to collect or rerun the unfinished jobs\n"
        # The workers outlive their scheduler for a while: the two jobs finish.
        wait_for(lambda: len(lines(side)) == 4, what="the running jobs to end")
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
        cluster.ensure()
    again = run_batchrun(*dask_args(cluster, "exp.runfile", "-j", "2"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert all(state == ("succeeded", 0) for state in states(workdir / "runs" / "exp").values())
    assert sorted(lines(side)) == sorted([f"start {i}" for i in range(3)] + [f"end {i}" for i in range(3)])


def test_without_scheduler_a_local_cluster_runs_the_jobs_and_stops_on_ctrl_c(make_runfile: MakeRunfile, workdir: Path) -> None:
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'batchrun[dask]')")
    side = workdir / "side.txt"
    make_runfile(["echo one", "echo two; exit 4"], name="quick.runfile")
    done = run_batchrun("launch", "quick.runfile", "--executor", "dask", "-j", "2", cwd=workdir)
    assert done.returncode == 1, done.stderr
    assert states(workdir / "runs" / "quick") == {job_id_of("echo one"): ("succeeded", 0), job_id_of("echo two; exit 4"): ("failed", 4)}
    assert (workdir / "runs" / "quick" / "logs" / job_id_of("echo one") / "out.log").read_text() == "one\n"

    make_runfile([f"echo start {i} >> {side}; sleep 30" for i in range(2)])
    marker = f"BATCHRUN_RUNS_DIR={workdir / 'runs' / 'exp'}"
    # A Ctrl-C at a terminal signals the whole foreground process group,
    # which includes the local cluster's worker processes unless they left it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchrun", "launch", "exp.runfile", "--executor", "dask", "-j", "2"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(lines(side)) == 2, timeout=60, what="two jobs to start")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert live_pids_with_env(marker) == []
        assert {state for state, _ in states(workdir / "runs" / "exp").values()} == {"interrupted"}
    finally:
        kill_all(live_pids_with_env(marker))
        if proc.returncode is None:
            proc.kill()
            proc.communicate()


def test_an_unreachable_scheduler_is_one_line_and_exit_2(make_runfile: MakeRunfile, workdir: Path) -> None:
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'batchrun[dask]')")
    make_runfile(["echo never"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: connection refused.
    result = run_batchrun("launch", "exp.runfile", "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{port}", cwd=workdir, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"batchrun: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: Connection refused; check --scheduler\n"
    bad = run_batchrun("launch", "exp.runfile", "--executor", "dask", "--scheduler", "nowhere", cwd=workdir, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr == "batchrun: error: bad Dask scheduler address 'nowhere'; expected tcp://HOST:PORT\n"
    assert exit_text(workdir / "runs" / "exp" / "logs" / job_id_of("echo never")) is None


def test_without_the_extra_dask_is_an_error_naming_the_install(make_runfile: MakeRunfile, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    make_runfile(["echo never"])
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    code, _, err = run_cli("launch", "exp.runfile", "--executor", "dask")
    assert code == 2
    assert err == "batchrun: error: --executor dask needs dask.distributed, which is not installed; install it with: pip install 'batchrun[dask]'\n"
