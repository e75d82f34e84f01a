"""End-to-end tests of `batchrun status`, `logs`, `failed`, `plan` and `launch --dry-run`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import batchrun_cmd, exit_text, read_metadata, run_batchrun, start_batchrun, wait_for

from batchrun.cli import app as cli
from batchrun.runfile.file import job_id_of

RunCli = Callable[..., tuple[int, str, str]]
MakeRunfile = Callable[..., Path]

COMMANDS = ("status", "logs", "failed", "plan")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@dataclass
class Mixed:
    """A runs directory with one job in each state, left by a launch stopped with SIGTERM."""

    ok: str
    bad: str
    slow: str
    later: str
    side: Path
    go: Path


@pytest.fixture()
def mixed(make_runfile: MakeRunfile, workdir: Path) -> Mixed:
    side = workdir / "side.txt"
    started = workdir / "started"
    go = workdir / "go"
    ok = f"echo ok >> {side}"
    bad = f"echo bad >> {side}; echo oops >&2; exit 3"
    # Waits until stopped the first time; quick once `go` exists.
    slow = f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; echo slow >> {side}"
    later = f"echo later >> {side}"
    make_runfile(["# one job per state", ok, bad, slow, later])
    proc = start_batchrun("launch", "exp.runfile", "-j", "1", "--grace", "1", cwd=workdir)
    wait_for(started.exists, what="the slow job to start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert side.read_text().split() == ["ok", "bad"]
    return Mixed(ok, bad, slow, later, side, go)


def one_error_line(code: int, err: str, expected: str) -> None:
    assert code == 2
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("batchrun: error: ") or err.startswith("batchrun "), err
    assert expected in err, err


# -- status ----------------------------------------------------------------------


def test_status_counts_and_lists_every_job(mixed: Mixed, workdir: Path, run_cli: RunCli) -> None:
    code, out, err = run_cli("status", "exp.runfile")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "exp.runfile: 4 jobs: 1 succeeded, 1 failed, 1 interrupted, 0 running, 1 pending"
    assert lines[1] == f"runs directory: {workdir / 'runs' / 'exp'}"
    assert lines[2].split() == ["LINE", "ID", "STATE", "EXIT", "RUNTIME", "START", "COMMAND"]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert rows.keys() == {"2", "3", "4", "5"}
    assert rows["2"].split()[1:4] == [job_id_of(mixed.ok)[:8], "succeeded", "0"]
    assert rows["3"].split()[1:4] == [job_id_of(mixed.bad)[:8], "failed", "3"]
    assert rows["4"].split()[1:4] == [job_id_of(mixed.slow)[:8], "interrupted", "-"]
    assert rows["5"].split()[1:6] == [job_id_of(mixed.later)[:8], "pending", "-", "-", "-"]
    assert rows["3"].endswith(mixed.bad) and rows["5"].endswith(mixed.later)


@pytest.mark.parametrize(
    ("states", "expected"),
    [("failed", ["bad"]), ("interrupted", ["slow"]), ("pending", ["later"]), ("succeeded,failed", ["ok", "bad"]), ("running", [])],
)
def test_status_state_filter(mixed: Mixed, run_cli: RunCli, states: str, expected: list[str]) -> None:
    code, out, _ = run_cli("status", "exp.runfile", "--state", states)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("exp.runfile: 4 jobs: 1 succeeded")  # counts stay whole
    assert lines[2] == f"showing {len(expected)} job{'s' if len(expected) != 1 else ''}: {' or '.join(states.split(','))}"
    listed = [line.split()[0] for line in lines[4:]]
    wanted = {"ok": "2", "bad": "3", "slow": "4", "later": "5"}
    assert listed == [wanted[name] for name in expected]


def test_status_json_matches_metadata_json(mixed: Mixed, workdir: Path, run_cli: RunCli) -> None:
    code, out, _ = run_cli("status", "exp.runfile", "--json")
    assert code == 0
    doc = json.loads(out)
    meta = read_metadata(workdir / "runs" / "exp")
    assert doc["counts"] == {
        "succeeded": 1, "failed": 1, "timeout": 0, "interrupted": 1, "requeued": 0, "killed": 0, "stopped": 0, "running": 0, "pending": 1, "ignored": 0, "removed": 0,
    }
    assert doc["launch"] == {"running": False, "pid": None}
    assert doc["runs_dir"] == str(workdir / "runs" / "exp") and doc["runfile"] == "exp.runfile"
    assert set(doc["jobs"]) == set(meta)
    for job_id, entry in meta.items():
        got = doc["jobs"][job_id]
        assert got["removed"] is False
        assert {key: got[key] for key in entry} == entry
    code, out, _ = run_cli("status", "exp.runfile", "--json", "--state", "failed")
    assert list(json.loads(out)["jobs"]) == [job_id_of(mixed.bad)]


def test_status_csv(mixed: Mixed, run_cli: RunCli) -> None:
    code, out, _ = run_cli("status", "exp.runfile", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(row["line"], row["state"], row["status"], row["command"]) for row in rows] == [
        ("2", "succeeded", "0", mixed.ok),
        ("3", "failed", "3", mixed.bad),
        ("4", "interrupted", "", mixed.slow),
        ("5", "pending", "", mixed.later),
    ]
    assert float(rows[0]["runtime"]) >= 0 and rows[0]["removed"] == "false"


def test_status_of_the_runs_directory_and_of_a_removed_line(mixed: Mixed, make_runfile: MakeRunfile, run_cli: RunCli) -> None:
    code, out, _ = run_cli("status", "runs/exp")
    assert code == 0
    assert out.splitlines()[0] == "runs/exp: 4 jobs: 1 succeeded, 1 failed, 1 interrupted, 0 running, 1 pending"
    assert mixed.bad in out
    make_runfile([mixed.bad, mixed.slow, mixed.later, "echo new"])
    code, out, _ = run_cli("status", "exp.runfile")
    lines = out.splitlines()
    assert lines[0] == "exp.runfile: 4 jobs: 0 succeeded, 1 failed, 1 interrupted, 0 running, 2 pending; 1 removed from the runfile"
    assert lines[-1].split()[:3] == ["-", job_id_of(mixed.ok)[:8], "removed"] and lines[-1].endswith(mixed.ok)
    code, out, _ = run_cli("status", "exp.runfile", "--state", "removed", "--json")
    assert json.loads(out)["jobs"][job_id_of(mixed.ok)]["removed"] is True


def test_status_of_a_sweep_shows_its_parameters(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    (workdir / "grid.yml").write_text("program: echo train\nparameters:\n  lr:\n    values: [0.1, 0.2]\n  tag:\n    values: [a, 'b c']\n")
    code, _, err = run_cli("status", "grid.yml")
    one_error_line(code, err, "nothing launched yet for grid.yml; run batchrun launch grid.yml")
    assert run_cli("sweep", "grid.yml")[0] == 0
    assert run_cli("launch", "grid.runfile", "-q")[0] == 0
    for target in ("grid.yml", "grid.runfile"):
        code, out, _ = run_cli("status", target)
        assert code == 0
        lines = out.splitlines()
        assert lines[2].split() == ["LINE", "ID", "STATE", "EXIT", "RUNTIME", "START", "lr", "tag"]
        assert [line.split(None, 6)[6] for line in lines[3:]] == ["0.1  a", "0.1  b c", "0.2  a", "0.2  b c"]
    code, out, _ = run_cli("status", "grid.runfile", "--command")
    assert out.splitlines()[3].endswith("echo train --lr=0.1 --tag=a")
    code, out, _ = run_cli("status", "grid.yml", "--csv")
    assert [(row["lr"], row["tag"]) for row in csv.DictReader(io.StringIO(out))] == [("0.1", "a"), ("0.1", "b c"), ("0.2", "a"), ("0.2", "b c")]


def test_status_reads_a_running_launch_without_disturbing_it(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    started, go = workdir / "started", workdir / "go"
    waiting = f"touch {started}; echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second"
    make_runfile(["echo quick", waiting])
    proc = start_batchrun("launch", "exp.runfile", "-j", "2", cwd=workdir)
    try:
        wait_for(started.exists, what="the waiting job to start")
        wait_for(lambda: "1 succeeded" in run_cli("status", "exp.runfile")[1], what="the quick job to end")
        code, out, _ = run_cli("status", "exp.runfile")
        lines = out.splitlines()
        assert lines[0] == "exp.runfile: 2 jobs: 1 succeeded, 0 failed, 0 interrupted, 1 running, 0 pending"
        assert lines[2] == f"a launch (pid {proc.pid}) is running: 1 job running now"
        assert lines[3].split() == ["LINE", "ID", "STATE", "EXIT", "RUNTIME", "START", "SLOT", "COMMAND"]
        row = lines[5].split()
        assert row[:4] == ["2", job_id_of(waiting)[:8], "running", "-"] and row[6] in ("0", "1")
        code, out, _ = run_cli("plan", "exp.runfile")
        assert f"a launch (pid {proc.pid}) is running it" in out
        # Follow the running job's output until it ends.
        follow = subprocess.Popen(batchrun_cmd("logs", "exp.runfile", "2", "--follow"), cwd=workdir, stdout=subprocess.PIPE, text=True)
        wait_for(lambda: follow.poll() is None, what="logs --follow to start")
        go.touch()
        out, _ = follow.communicate(timeout=30)
        assert follow.returncode == 0
        assert out == "first\nsecond\n"
    finally:
        go.touch()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "1 job running" not in run_cli("status", "exp.runfile")[1]


def test_status_after_kill_9_settles_jobs_like_the_next_launch_without_writing(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    started, go = workdir / "started", workdir / "go"
    job = f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; exit 5"
    make_runfile([job])
    proc = start_batchrun("launch", "exp.runfile", cwd=workdir)
    wait_for(started.exists, what="the job to start")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    journal = workdir / "runs" / "exp" / "jobs.journal"
    before = journal.read_bytes()
    code, out, _ = run_cli("status", "exp.runfile")
    assert "1 running" in out.splitlines()[0]
    assert "1 job still running with no launch watching; the next launch adopts it" in out
    go.touch()
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(job)
    wait_for(lambda: exit_text(log_dir) is not None, what="the job to end")
    code, out, _ = run_cli("status", "exp.runfile", "--state", "failed")
    assert out.splitlines()[0] == "exp.runfile: 1 job: 0 succeeded, 1 failed, 0 interrupted, 0 running, 0 pending"
    assert out.splitlines()[-1].split()[2:4] == ["failed", "5"]
    code, out, _ = run_cli("plan", "exp.runfile")
    assert out.splitlines()[0] == "batchrun: exp.runfile: 1 job, 1 failed earlier (skipped), 0 to run; of these, 1 ended while no launch was watching (collected now)"
    assert journal.read_bytes() == before, "status or plan wrote to the journal"
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 1 and "1 ended while no launch was watching" in again.stdout


# -- logs ------------------------------------------------------------------------


def test_logs_by_line_id_prefix_and_substring(mixed: Mixed, run_cli: RunCli) -> None:
    assert run_cli("logs", "exp.runfile", "3", "--err") == (0, "oops\n", "")
    # The short id of the tables (8 digits): a shorter prefix that is all decimal digits is a line number.
    assert run_cli("logs", "exp.runfile", job_id_of(mixed.bad)[:8], "--err") == (0, "oops\n", "")
    assert run_cli("logs", "exp.runfile", "oops >&2") == (0, "", "")  # its stdout went to side.txt
    assert run_cli("logs", "exp.runfile", "bad >>", "--err", "--tail", "1") == (0, "oops\n", "")


def test_logs_ambiguous_prefix_lists_the_candidates(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    seen: dict[str, str] = {}
    for i in range(10_000):
        command = f"echo {i}"
        prefix = job_id_of(command)[:2]
        if prefix in seen and not prefix.isdigit():
            first, second = seen[prefix], command
            break
        seen.setdefault(prefix, command)
    make_runfile([first, second, "echo other"])
    assert run_cli("launch", "exp.runfile", "-q")[0] == 0
    code, _, err = run_cli("logs", "exp.runfile", prefix)
    one_error_line(code, err, f"job id prefix '{prefix}' matches 2 jobs: ")
    assert f"{job_id_of(first)} (line 1) {first}" in err and f"{job_id_of(second)} (line 2) {second}" in err
    code, out, _ = run_cli("logs", "exp.runfile", job_id_of(second)[:8])
    assert (code, out) == (0, second.split()[1] + "\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["logs", "exp.runfile", "zzz"], "batchrun: error: no job matches 'zzz'"),
        (["logs", "exp.runfile", "echo"], "'echo' matches 4 jobs"),
        (["logs", "exp.runfile", "5"], "has no out.log yet: it is pending"),
        (["logs", "exp.runfile", "2", "--tail", "-1"], "expected a whole number of at least 0, not '-1'"),
    ],
)
def test_logs_bad_job(mixed: Mixed, run_cli: RunCli, args: list[str], expected: str) -> None:
    code, _, err = run_cli(*args)
    one_error_line(code, err, expected)


# -- failed ----------------------------------------------------------------------


def test_failed_prints_a_runfile_that_relaunches_exactly_the_failed_jobs(mixed: Mixed, workdir: Path, run_cli: RunCli) -> None:
    code, out, err = run_cli("failed", "exp.runfile")
    assert (code, out, err) == (0, mixed.bad + "\n", "")
    code, out, _ = run_cli("failed", "exp.runfile", "--interrupted")
    assert out == f"{mixed.bad}\n{mixed.slow}\n"
    (workdir / "retry.runfile").write_text(out)
    mixed.go.touch()
    mixed.side.write_text("")
    code, _, _ = run_cli("launch", "retry.runfile")
    assert code == 1
    assert sorted(mixed.side.read_text().split()) == ["bad", "slow"]
    # Through a real pipe, as the README shows it.
    shell = f"{sys.executable} -m batchrun failed exp.runfile > retry2.runfile"
    assert subprocess.run(shell, shell=True, cwd=workdir, timeout=60).returncode == 0
    assert (workdir / "retry2.runfile").read_text() == mixed.bad + "\n"


# -- plan and launch --dry-run ----------------------------------------------------


def test_plan_is_what_the_next_launch_does(mixed: Mixed, make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    new = f"echo new >> {mixed.side}"
    make_runfile([mixed.bad, mixed.slow, mixed.later, new])
    code, out, _ = run_cli("plan", "exp.runfile")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "batchrun: exp.runfile: 4 jobs, 1 failed earlier (skipped), 1 unfinished (running again), 3 to run"
    assert lines[1:] == [
        "  new, to run: 2",
        f"    line 3     {job_id_of(mixed.later)[:8]}  {mixed.later}",
        f"    line 4     {job_id_of(new)[:8]}  {new}",
        "  interrupted or never finished, to run again: 1",
        f"    line 2     {job_id_of(mixed.slow)[:8]}  {mixed.slow}",
        "  failed earlier, skipped (rerun them with --retry-failed): 1",
        f"    line 1     {job_id_of(mixed.bad)[:8]}  {mixed.bad}",
        "  removed from the runfile (records and logs kept): 1",
        f"    removed    {job_id_of(mixed.ok)[:8]}  {mixed.ok}",
    ]
    code, dry, _ = run_cli("launch", "exp.runfile", "--dry-run")
    assert (code, dry) == (0, out)
    mixed.go.touch()
    mixed.side.write_text("")
    code, launched, _ = run_cli("launch", "exp.runfile")
    assert launched.splitlines()[0] == lines[0]
    assert sorted(mixed.side.read_text().split()) == ["later", "new", "slow"]
    code, out, _ = run_cli("plan", "exp.runfile", "--retry-failed", "--show", "0")
    assert out.splitlines() == [
        "batchrun: exp.runfile: 4 jobs, 3 already succeeded, 1 to run, mode retry_failed",
        "  failed earlier, to run again: 1",
        "    ... and 1 more",
        "  already succeeded, skipped: 3",
        "    ... and 3 more",
        "  removed from the runfile (records and logs kept): 1",
        "    ... and 1 more",
    ]
    mixed.side.write_text("")
    code, launched, _ = run_cli("launch", "exp.runfile", "--retry-failed")
    assert launched.splitlines()[0] == out.splitlines()[0]
    assert mixed.side.read_text().split() == ["bad"]
    code, out, _ = run_cli("plan", "exp.runfile")
    assert out.splitlines()[0].endswith(", 0 to run") and out.splitlines()[-1] == "nothing to do"


def test_plan_of_a_runfile_never_launched_and_of_a_runs_directory(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli) -> None:
    make_runfile(["echo a", "echo b"])
    code, out, _ = run_cli("plan", "exp.runfile")
    assert code == 0 and out.splitlines()[0] == "batchrun: exp.runfile: 2 jobs, 2 to run"
    assert not (workdir / "runs").exists()
    run_cli("launch", "exp.runfile", "-q")
    code, _, err = run_cli("plan", "runs/exp")
    one_error_line(code, err, "runs/exp: a plan needs the runfile")


# -- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "logs", "failed"])  # a plan of it is its first launch
def test_a_runfile_never_launched(make_runfile: MakeRunfile, run_cli: RunCli, command: str) -> None:
    make_runfile(["true"])
    args = [command, "exp.runfile"] + (["1"] if command == "logs" else [])
    code, _, err = run_cli(*args)
    assert err == "batchrun: error: nothing launched yet for exp.runfile; run batchrun launch exp.runfile\n"
    assert code == 2


@pytest.mark.parametrize("command", COMMANDS)
def test_a_runs_directory_that_does_not_exist(workdir: Path, run_cli: RunCli, command: str) -> None:
    args = [command, "runs/nope"] + (["1"] if command == "logs" else [])
    code, _, err = run_cli(*args)
    assert err == "batchrun: error: runs/nope: no such runfile, gridspec or runs directory\n"
    assert code == 2


def test_a_directory_that_is_not_a_runs_directory(workdir: Path, run_cli: RunCli) -> None:
    (workdir / "somewhere").mkdir()
    code, _, err = run_cli("status", "somewhere")
    one_error_line(code, err, "somewhere: not a runs directory (no jobs.journal or metadata.json in it)")


@pytest.mark.parametrize("target", ["exp.runfile", "runs/exp"])
def test_a_corrupt_metadata_json(make_runfile: MakeRunfile, workdir: Path, run_cli: RunCli, target: str) -> None:
    make_runfile(["true"])
    assert run_cli("launch", "exp.runfile", "-q")[0] == 0
    (workdir / "runs" / "exp" / "metadata.json").write_text('{"abc": {"status": 0,')
    for command in ("status", "failed"):
        code, _, err = run_cli(command, target)
        one_error_line(code, err, "metadata.json:1: corrupt metadata")


def test_a_pipe_closed_early_is_not_an_error(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile([f"true {i} {'x' * 100}" for i in range(2000)])
    runs = workdir / "runs" / "exp"
    runs.mkdir(parents=True)
    # A synthetic journal: as if all 2000 jobs had run.
    (runs / "jobs.journal").write_text("".join(f"E {job_id_of(f'true {i} ' + 'x' * 100)} 1 0 1.0 2.0\n" for i in range(2000)))
    shell = f"{sys.executable} -m batchrun status exp.runfile | head -1"
    proc = subprocess.run(shell, shell=True, cwd=workdir, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "exp.runfile: 2000 jobs: 2000 succeeded, 0 failed, 0 interrupted, 0 running, 0 pending\n"
    assert proc.stderr == ""


# -- documentation -------------------------------------------------------------------


def test_each_subcommand_has_help_and_an_example() -> None:
    parser = cli._build_parser()
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
    for name in (*COMMANDS, "launch"):
        assert helps.get(name), f"{name} has no help="
        assert "Example: batchrun " in (_subcommands()[name].description or ""), f"{name} has no example"
    assert "--dry-run" in _subcommands()["launch"].format_help()
