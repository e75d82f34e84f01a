"""Exactly once across a kill -9: each fault of issue 13 placed at its exact instant.

Each test SIGKILLs (or stalls) the real CLI at one chosen point through the
hooks of `tests/data/faults/sitecustomize.py`, then relaunches and checks
that no job ran twice, none was lost, and the options still applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import batchrun_cmd, fault_env, kill_all, live_pids_with_env, read_metadata, wait_for

from batchrun.runfile.file import job_id_of
from batchrun.store.journal import Journal
from batchrun.store.records import State

MakeRunfile = Callable[..., Path]


def _start(*args: str, cwd: Path, **faults: str) -> subprocess.Popen[str]:
    return subprocess.Popen(batchrun_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fault_env(**faults))


def _run(*args: str, cwd: Path, **faults: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=120, env=fault_env(**faults))


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def _records(workdir: Path) -> dict[str, object]:
    journal = Journal(workdir / "runs" / "exp")
    journal.load()
    return dict(journal.records)


def _running_jobs(workdir: Path) -> int:
    return sum(1 for rec in _records(workdir).values() if rec.state == State.RUNNING and rec.ref is not None)  # type: ignore[attr-defined]


def _kill_9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def _read_until(proc: subprocess.Popen[str], text: str, count: int = 1) -> list[str]:
    """Lines of the launch's stdout up to the `count`-th containing `text`."""
    assert proc.stdout is not None
    seen: list[str] = []
    while sum(text in line for line in seen) < count:
        line = proc.stdout.readline()
        assert line, f"the launch ended before printing {text!r} {count} times: {seen}"
        seen.append(line)
    return seen


@pytest.fixture()
def marker() -> Iterator[str]:
    name = f"BRREC{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


def _gate(gate: Path) -> str:
    return f"n=0; while [ ! -e {gate} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done"


@pytest.mark.parametrize("fault", [{"BRFAULT_SLOW_EXIT_READ": "3"}, {"BRFAULT_SLOW_PROBE": "3"}], ids=["ends-after-the-read", "ends-after-the-probe"])
def test_a_job_ending_while_the_relaunch_settles_it_runs_once(make_runfile: MakeRunfile, workdir: Path, marker: str, fault: dict[str, str]) -> None:
    """Issue 13 (1): the job ends between settlement's two looks at it."""
    side = workdir / "side"
    make_runfile([f"export {marker}=1; sleep 2; echo done >> {side}"])
    first = _start("launch", "exp.runfile", cwd=workdir)
    wait_for(lambda: _running_jobs(workdir) == 1, what="the job to start")
    _kill_9(first)
    again = _run("launch", "exp.runfile", cwd=workdir, **fault)
    assert again.returncode == 0, again.stderr
    assert _lines(side) == 1, "the job ran twice"
    assert read_metadata(workdir / "runs" / "exp")[job_id_of(f"export {marker}=1; sleep 2; echo done >> {side}")]["state"] == "succeeded"


def test_a_kill_between_a_retry_start_and_its_spawn_still_gives_the_retry(make_runfile: MakeRunfile, workdir: Path) -> None:
    """Issue 13 (2): attempt 1's exit record is never read as attempt 2's."""
    cnt = workdir / "cnt"
    line = f"echo run >> {cnt}; [ $(wc -l < {cnt}) -ge 2 ]"
    make_runfile([line])
    first = _run("launch", "exp.runfile", "--retries", "1", cwd=workdir, BRFAULT_KILL_RETRY_SPAWN="1")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert _lines(cnt) == 1
    rec = _records(workdir)[job_id_of(line)]
    assert (rec.state, rec.attempts) == (State.RUNNING, 2)  # type: ignore[attr-defined]
    again = _run("launch", "exp.runfile", "--retries", "1", cwd=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _lines(cnt) == 2, "the retry never ran"
    assert read_metadata(workdir / "runs" / "exp")[job_id_of(line)]["state"] == "succeeded"


def test_an_adopted_job_that_fails_is_retried(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """Issue 13 (3): --retries applies to an adopted job as to any other."""
    cnt, gate = workdir / "cnt", workdir / "gate"
    line = f"export {marker}=1; echo run >> {cnt}; {_gate(gate)}; [ $(wc -l < {cnt}) -ge 2 ]"
    make_runfile([line])
    first = _start("launch", "exp.runfile", "--retries", "1", cwd=workdir)
    wait_for(lambda: _running_jobs(workdir) == 1, what="the job to start")
    _kill_9(first)
    again = _start("launch", "exp.runfile", "--retries", "1", cwd=workdir)
    try:
        _read_until(again, "adopted")
        gate.touch()
        out, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 0, out + err
    assert _lines(cnt) == 2
    assert read_metadata(workdir / "runs" / "exp")[job_id_of(line)]["state"] == "succeeded"


@pytest.mark.parametrize("halt", ["--fail-fast", "--halt-now"])
def test_an_adopted_job_that_fails_halts_a_fail_fast_launch(make_runfile: MakeRunfile, workdir: Path, marker: str, halt: str) -> None:
    """Issue 13 (3): the adopted job's failure stops the launch like any failure."""
    side, gate = workdir / "side", workdir / "gate"
    make_runfile([f"export {marker}=1; {_gate(gate)}; exit 1", f"echo two >> {side}", f"echo three >> {side}"])
    first = _start("launch", "exp.runfile", "-j", "1", halt, cwd=workdir)
    wait_for(lambda: _running_jobs(workdir) == 1, what="the job to start")
    _kill_9(first)
    again = _start("launch", "exp.runfile", "-j", "1", halt, cwd=workdir)
    try:
        _read_until(again, "adopted")
        gate.touch()
        out, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 1, out + err
    assert not side.exists(), "jobs started after the adopted job failed"
    assert halt.lstrip("-") in out + err or "stopped" in out + err, out


def test_sigterm_stops_every_adopted_job_even_beyond_j(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """Issue 13 (4): 8 adopted with -j 4 are 8 running jobs: shown, counted, stopped."""
    side = workdir / "side"
    make_runfile([f"export {marker}=1; sleep 100; echo {i} >> {side}" for i in range(8)])
    first = _start("launch", "exp.runfile", "-j", "8", cwd=workdir)
    wait_for(lambda: _running_jobs(workdir) == 8, what="8 jobs to start")
    _kill_9(first)
    again = _start("launch", "exp.runfile", "-j", "4", "--grace", "1", cwd=workdir)
    try:
        _read_until(again, "adopted", 8)
        again.send_signal(signal.SIGTERM)
        out, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 130, out + err
    assert live_pids_with_env(marker) == [], "adopted jobs outlived the launch"
    assert {rec.state for rec in _records(workdir).values()} == {State.INTERRUPTED}  # type: ignore[attr-defined]
    assert not side.exists()


def test_timeout_returns_only_when_the_whole_group_is_gone(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """--timeout: a SIGKILL not yet delivered when the wrapper is reaped is sent again."""
    make_runfile([f"export {marker}=1; trap '' TERM; sleep 1000 & wait"])
    result = _run("launch", "exp.runfile", "--timeout", "1", "--grace", "0.5", cwd=workdir, BRFAULT_DROP_KILL="1")
    assert live_pids_with_env(marker) == [], "the job's sleep outlived the launch"
    assert result.returncode == 1, result.stdout + result.stderr
    assert {str(e["state"]) for e in read_metadata(workdir / "runs" / "exp").values()} == {"timeout"}


def test_the_fault_hooks_are_off_by_default(workdir: Path) -> None:
    """A guard on the guard: without BRFAULT_ variables nothing is patched."""
    code = "import batchrun.executors.jobfiles as j, sys; sys.exit(j.read_exit_record.__module__ != 'batchrun.executors.exitrecord')"
    assert subprocess.run([sys.executable, "-c", code], env=fault_env(), cwd=workdir).returncode == 0


def test_a_fail_fast_launch_still_waits_for_every_adopted_job(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """Adopted beyond -j: after --fail-fast stops dispatch, they are still waited for and recorded."""
    side, gate = workdir / "side", workdir / "gate"
    lines = [f"export {marker}=1; {_gate(gate)}; exit 1"] + [f"export {marker}=1; {_gate(gate)}; echo {i} >> {side}" for i in range(3)]
    make_runfile(lines)
    first = _start("launch", "exp.runfile", "-j", "4", cwd=workdir)
    wait_for(lambda: _running_jobs(workdir) == 4, what="4 jobs to start")
    _kill_9(first)
    make_runfile([*lines, f"echo late >> {side}"])
    again = _start("launch", "exp.runfile", "-j", "1", "--fail-fast", cwd=workdir)
    try:
        _read_until(again, "adopted", 4)
        gate.touch()
        out, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    assert again.returncode == 1, out + err
    assert sorted(side.read_text().split()) == ["0", "1", "2"], "a new job started after the failure, or an adopted one was lost"
    states = {str(e["state"]) for job_id, e in read_metadata(workdir / "runs" / "exp").items() if job_id != job_id_of(f"echo late >> {side}")}
    assert states == {"succeeded", "failed"}
