"""Shared fixtures: a runfile factory, in-process and subprocess CLI runners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchrun import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory: runs/ is created under it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def make_runfile(workdir: Path) -> Callable[..., Path]:
    def make(lines: list[str] | str, name: str = "exp.runfile") -> Path:
        path = workdir / name
        text = lines if isinstance(lines, str) else "".join(line + "\n" for line in lines)
        path.write_text(text)
        return path

    return make


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Call cli.main in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def batchrun_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchrun", *args]


def run_batchrun(*args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def start_batchrun(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(batchrun_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_metadata(runs_dir: Path) -> dict[str, dict[str, object]]:
    return json.loads((runs_dir / "metadata.json").read_text())


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def exit_text(log_dir: Path) -> str | None:
    """A job's exit record as its own `exit` file says it (`<status> <attempt>[ <state>]\\n`), read from its launch's exit log or that file; None when it has none."""
    from batchrun.executors import exitlog  # noqa: PLC0415 - the package under test, imported where used

    record = exitlog.lookup(log_dir)
    if record is not None:
        return f"{record.status} {record.attempt}" + (f" {record.state}" if record.state else "") + "\n"
    try:
        return (log_dir / "exit").read_text()
    except FileNotFoundError:
        return None


def damage_exit_record(log_dir: Path, junk: bytes) -> None:
    """Replace a job's exit record, in its launch's exit log and its own file, with `junk`."""
    for path in (log_dir.parent.parent / ".exits").glob("*"):
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(junk if line.startswith(log_dir.name.encode() + b" ") else line for line in lines))
    (log_dir / "exit").write_bytes(junk)


def live_pids_with_env(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        if marker.encode() in env and stat[stat.rindex(b")") + 2 :][:1] != b"Z":
            found.append(int(entry))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


FAULTS = REPO / "tests" / "data" / "faults"


def fault_env(**faults: str) -> dict[str, str]:
    """This environment with the fault-injection sitecustomize (tests/data/faults) on PYTHONPATH and these faults named."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRFAULT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(faults)
    return env


def slurm_skip_reason() -> str | None:
    """Why the SLURM tests cannot run here (no client commands, or no controller answers), or None."""
    import shutil

    for command in ("sbatch", "sinfo", "squeue", "scancel"):
        if shutil.which(command) is None:
            return f"SLURM not installed ({command} not on PATH); start a test cluster with tests/slurm/start-slurm.sh"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%P"], check=False, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "the SLURM controller does not answer (sinfo timed out); start it with tests/slurm/start-slurm.sh"
    if answer.returncode != 0:
        return f"the SLURM controller does not answer ({answer.stderr.strip()}); start it with tests/slurm/start-slurm.sh"
    return None


# Under pytest-xdist (`-n 2 --dist loadgroup`, pyproject's addopts), the tests of one group run in one
# worker, one after another: those sharing the one-node SLURM cluster (and test_shell_compat, whose
# module fixture launches its corpus once per executor, SLURM's among them), those starting Dask
# clusters, those driving Chromium, and the matrix, whose runs directories are made once per module.
# Every other test goes to whichever worker is free. The groups are named here, by module, and read
# by the scheduler below: xdist's own `xdist_group` marks do not reach its scheduler under pytest 9
# (xdist 3.8 renames the test's `_nodeid`, which pytest 9 no longer reads).
XDIST_GROUPS = {
    "test_executor_slurm": "slurm",
    "test_slurm_requeue": "slurm",
    "test_shell_compat": "slurm",
    "test_cli_queue": "slurm",
    "test_executor_dask": "dask",
    "test_dask_worker": "dask",
    "test_ui_browser": "browser",
    "test_report_browser": "browser",
    "test_matrix": "matrix",
}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, there only when it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """For `--dist loadgroup`: xdist's scheduler by scope, each group of XDIST_GROUPS one scope, every other test a scope of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only under xdist

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            group = XDIST_GROUPS.get(Path(nodeid.split("::", 1)[0]).stem)
            return group if group is not None else nodeid

    return GroupScheduling(config, log)
