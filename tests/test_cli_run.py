"""`batchrun run` (and `sweep` of a command line) through the real CLI: each notation, resume, kill -9, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import batchrun_cmd, run_batchrun, wait_for

from batchrun.runfile.file import job_id_of

RunCli = Callable[..., tuple[int, str, str]]

# Appends its arguments as one line to ran.txt: what ran, and how often.
RECORDER = 'printf "%s\\n" "$*" >> ran.txt\n'


@pytest.fixture()
def rec(workdir: Path) -> Path:
    (workdir / "rec.sh").write_text(RECORDER)
    return workdir


def ran(workdir: Path) -> list[str]:
    path = workdir / "ran.txt"
    return path.read_text().splitlines() if path.exists() else []


def lines_of(runfile: Path) -> list[str]:
    return [line for line in runfile.read_text().splitlines() if not line.startswith("#")]


def test_braces_give_ten_lines_the_last_brace_fastest(rec: Path) -> None:
    result = run_batchrun("run", "-j", "4", "sh rec.sh --lr={0.1,0.01} --seed={1..5}", cwd=rec)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "batchrun: rec.runfile: 10 lines from bash braces (name from the command; --name to choose)"
    runfile = rec / "rec.runfile"
    assert runfile.read_text().splitlines()[0] == "# batchrun run: 'sh rec.sh --lr={0.1,0.01} --seed={1..5}'"
    assert lines_of(runfile) == [f"sh rec.sh --lr={lr} --seed={s}" for lr in ("0.1", "0.01") for s in range(1, 6)]
    assert sorted(ran(rec)) == sorted(f"--lr={lr} --seed={s}" for lr in ("0.1", "0.01") for s in range(1, 6))
    # The runfile is an ordinary one: status, plan and launch read it.
    status = run_batchrun("status", "rec.runfile", cwd=rec)
    assert status.stdout.startswith("rec.runfile: 10 jobs: 10 succeeded"), status.stdout
    again = run_batchrun("launch", "rec.runfile", cwd=rec)
    assert again.returncode == 0 and len(ran(rec)) == 10


def test_a_widened_range_runs_only_the_new_points(rec: Path) -> None:
    assert run_batchrun("run", "-j", "2", "sh rec.sh --lr={0.1,0.01} --seed={1..3}", cwd=rec).returncode == 0
    assert len(ran(rec)) == 6
    same = run_batchrun("run", "-j", "2", "sh rec.sh --lr={0.1,0.01} --seed={1..3}", cwd=rec)
    assert same.returncode == 0 and len(ran(rec)) == 6
    assert "6 jobs, 6 already succeeded, 0 to run" in same.stdout
    wider = run_batchrun("run", "-j", "2", "sh rec.sh --lr={0.1,0.01,0.001} --seed={1..4}", cwd=rec)
    assert wider.returncode == 0, wider.stderr
    assert "12 jobs, 6 already succeeded, 6 to run" in wider.stdout
    counts = Counter(ran(rec))
    assert len(counts) == 12 and set(counts.values()) == {1}


def test_parallel_lists_as_parallel_dry_run_writes_them(rec: Path) -> None:
    words = ["sh rec.sh --lr {1} --seed {2}", ":::", "0.1", "0.01", ":::", "1", "2", "3"]
    result = run_batchrun("run", "-j", "4", *words, cwd=rec)
    assert result.returncode == 0, result.stderr
    expected = [f"sh rec.sh --lr {lr} --seed {s}" for lr in ("0.1", "0.01") for s in (1, 2, 3)]
    assert lines_of(rec / "rec.runfile") == expected
    if shutil.which("parallel"):
        live = subprocess.run(["parallel", "--will-cite", "--keep-order", "--dry-run", *words], capture_output=True, text=True, check=True)
        assert live.stdout.splitlines() == expected
    assert len(ran(rec)) == 6


@pytest.mark.parametrize(("words", "expected"), [
    (["echo", ":::", "a b", "c"], ["echo 'a b'", "echo c"]),
    (["echo {}.txt", ":::", "x"], ["echo x.txt"]),
    (["echo {1}-{2}", ":::", "a", "b", ":::+", "1", "2"], ["echo a-1", "echo b-2"]),
    (["echo", "::::", "list.txt"], ["echo one", "echo 'two three'"]),
])
def test_parallel_forms(words: list[str], expected: list[str], workdir: Path, run_cli: RunCli) -> None:
    (workdir / "list.txt").write_text("one\ntwo three\n")
    code, out, err = run_cli("run", "--dry-run", *words)
    assert code == 0, err
    assert out.splitlines() == expected


def test_hydra_multirun_copied_as_is(rec: Path) -> None:
    result = run_batchrun("run", "-j", "4", "sh", "rec.sh", "-m", "lr=0.1,0.01", "seed=range(1,4)", cwd=rec)
    assert result.returncode == 0, result.stderr
    assert "6 lines from Hydra's multirun overrides" in result.stdout.splitlines()[0]
    assert lines_of(rec / "rec.runfile") == [f"sh rec.sh lr={lr} seed={s}" for lr in ("0.1", "0.01") for s in (1, 2, 3)]
    assert Counter(ran(rec)) == Counter(f"lr={lr} seed={s}" for lr in ("0.1", "0.01") for s in (1, 2, 3))


def test_hydra_quoted_values_reach_the_app_as_typed(workdir: Path, run_cli: RunCli) -> None:
    code, out, err = run_cli("run", "--dry-run", "python", "app.py", "-m", "msg='a b','c'", "db.url=${oc.env:URL}", "n=1,2")
    assert code == 0, err
    assert out.splitlines() == [
        "python app.py 'msg='\"'\"'a b'\"'\"'' 'db.url=${oc.env:URL}' n=1",
        "python app.py 'msg='\"'\"'a b'\"'\"'' 'db.url=${oc.env:URL}' n=2",
        "python app.py 'msg='\"'\"'c'\"'\"'' 'db.url=${oc.env:URL}' n=1",
        "python app.py 'msg='\"'\"'c'\"'\"'' 'db.url=${oc.env:URL}' n=2",
    ]
    # What the app receives: Hydra's own words.
    argv = subprocess.run(["sh", "-c", "printf '%s\\n' " + out.splitlines()[0].removeprefix("python ")], capture_output=True, text=True).stdout
    assert argv.splitlines() == ["app.py", "msg='a b'", "db.url=${oc.env:URL}", "n=1"]


def test_pythons_own_dash_m_is_not_a_multirun(workdir: Path, run_cli: RunCli) -> None:
    code, out, _ = run_cli("run", "--dry-run", "python -m pkg.train --lr={1,2}")
    assert code == 0 and out.splitlines() == ["python -m pkg.train --lr=1", "python -m pkg.train --lr=2"]
    code, out, _ = run_cli("run", "--dry-run", "python", "-m", "pkg.app", "-m", "lr=1,2")
    assert code == 0 and out.splitlines() == ["python -m pkg.app lr=1", "python -m pkg.app lr=2"]


def test_no_notation_is_one_line(workdir: Path, run_cli: RunCli) -> None:
    code, out, err = run_cli("run", "--dry-run", "echo", "hello", "world")
    assert (code, out) == (0, "echo hello world\n")
    assert "1 line from a command with no sweep" in err


def test_dry_run_writes_nothing_and_says_the_plan(rec: Path) -> None:
    dry = run_batchrun("run", "--dry-run", "sh rec.sh {a,b}", cwd=rec)
    assert dry.returncode == 0 and dry.stdout.splitlines() == ["sh rec.sh a", "sh rec.sh b"]
    assert not (rec / "rec.runfile").exists() and not (rec / "runs").exists() and not ran(rec)
    assert run_batchrun("run", "sh rec.sh {a,b}", cwd=rec).returncode == 0
    dry = run_batchrun("run", "--dry-run", "sh rec.sh {a,b,c}", cwd=rec)
    assert "batchrun: rec.runfile: 3 jobs, 2 already succeeded, 1 to run" in dry.stderr
    assert len(ran(rec)) == 2


@pytest.mark.parametrize(("words", "count"), [
    (["python train.py --lr={0.1,0.01} --seed={1..5}"], 10),
    (["python train.py --lr {1} --seed {2}", ":::", "0.1", "0.01", ":::", "1", "2", "3"], 6),
    (["python", "app.py", "-m", "lr=0.1,0.01", "seed=range(1,4)"], 6),
    (["python train.py --seed={1..1000}{1..1000}"], 1_000_000),
    (["python app.py"], 1),
])
def test_count_before_anything_runs(words: list[str], count: int, workdir: Path, run_cli: RunCli) -> None:
    assert run_cli("run", "--count", *words) == (0, f"{count}\n", "")
    assert run_cli("sweep", "--count", *words) == (0, f"{count}\n", "")
    assert list(workdir.iterdir()) == []


def test_sweep_writes_a_commands_runfile_without_launching(workdir: Path, run_cli: RunCli) -> None:
    code, out, err = run_cli("sweep", "python train.py --lr={0.1,0.01}")
    assert (code, out) == (0, "batchrun: wrote train.runfile (2 commands)\n"), err
    assert lines_of(workdir / "train.runfile") == ["python train.py --lr=0.1", "python train.py --lr=0.01"]
    code, out, _ = run_cli("sweep", "-o", "x.runfile", "echo", ":::", "a", "b")
    assert code == 0 and lines_of(workdir / "x.runfile") == ["echo a", "echo b"]
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(("words", "message"), [
    (["python train.py --lr={0.1,0.01"], "batchrun: error: unclosed brace in the command at column 22: a '{' with ',' or '..' after it needs its '}' (quote it, or write \\{, to keep it as text)\n"),
    (["python", "train.py", "--lr={0.1,0.01", "--seed={1,2}"], "batchrun: error: unclosed brace in '--lr={0.1,0.01' (argument 3 of the command at column 6): a '{' with ',' or '..' after it needs its '}' (quote it, or write \\{, to keep it as text)\n"),
    ([":::", "a", "b"], "batchrun: error: ':::' with no command before it (write the command first: CMD ::: a b) (argument 1 of the command)\n"),
    (["echo", ":::"], "batchrun: error: ':::' with no values after it (argument 2 of the command)\n"),
    (["python", "app.py", "-m", "lr=interval(0,1)"], "batchrun: error: 'lr=interval(0,1)': interval() is a continuous range, which needs a sampler (Hydra's Optuna or Nevergrad sweeper) to pick points; batchrun expands lists, choice() and range() (argument 4 of the command)\n"),
    (["python", "app.py", "-m", "lr=[1,2"], "batchrun: error: 'lr=[1,2' is not an override Hydra accepts: expected bracket close at 'the end' (argument 4 of the command)\n"),
    (["echo 'unclosed"], "batchrun: error: unclosed ' quote in the command at column 6\n"),
    (["echo {%}", ":::", "a"], "batchrun: error: '{%}' is a job slot, known only when the job starts: use $BATCHRUN_SLOT (counted from 0) in the command instead\n"),
    ([], "batchrun: error: no command given: batchrun run [OPTIONS] COMMAND (quote a brace or Hydra sweep so the shell leaves it alone)\n"),
])
def test_bad_notation_is_one_line_and_exit_2(words: list[str], message: str, workdir: Path) -> None:
    result = run_batchrun("run", "-j", "2", *words, cwd=workdir)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)
    assert list(workdir.iterdir()) == []


def test_a_hand_written_runfile_of_the_same_name_is_left_alone(rec: Path, run_cli: RunCli) -> None:
    (rec / "rec.runfile").write_text("echo mine\n")
    code, out, err = run_cli("run", "sh rec.sh {1,2}")
    assert code == 2
    assert err == "batchrun: error: rec.runfile exists and was not written by batchrun run; it is left alone: choose another name with --name, or remove it\n"
    assert (rec / "rec.runfile").read_text() == "echo mine\n"


def test_another_command_under_the_same_name(rec: Path, run_cli: RunCli) -> None:
    assert run_cli("run", "sh rec.sh --lr={1,2}")[0] == 0
    code, _, err = run_cli("run", "sh rec.sh --wd={1,2}")
    assert code == 2
    assert err == ("batchrun: error: rec.runfile holds the sweep of another command ('sh rec.sh --lr={1,2}'); name this one with "
                   "--name NAME, or give --name rec to replace it (its records stay in its runs directory)\n")
    code, out, err = run_cli("run", "--name", "rec", "sh rec.sh --wd={1,2}")
    assert code == 0, err
    assert err.startswith("batchrun: rec.runfile: replaces the sweep of 'sh rec.sh --lr={1,2}'")
    assert lines_of(rec / "rec.runfile") == ["sh rec.sh --wd=1", "sh rec.sh --wd=2"]
    code, out, err = run_cli("run", "--name", "wd", "sh rec.sh --wd={1,2,3}")
    assert code == 0 and (rec / "wd.runfile").exists()
    assert run_cli("run", "--name", "../x", "echo")[0] == 2


def test_kill_9_mid_run_then_the_same_run_runs_every_line_once(workdir: Path) -> None:
    # Each job notes its start, sleeps, and notes its end.
    (workdir / "job.sh").write_text('echo "$1" >> started.txt; sleep 1; echo "$1" >> ended.txt\n')
    command = ["run", "-j", "2", "sh job.sh {1..6}"]
    launch = subprocess.Popen(batchrun_cmd(*command), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (workdir / "started.txt").exists() and len((workdir / "started.txt").read_text().split()) >= 2, what="two jobs to start")
    os.kill(launch.pid, signal.SIGKILL)
    launch.wait()
    again = run_batchrun(*command, cwd=workdir)
    assert again.returncode == 0, again.stderr
    started = Counter((workdir / "started.txt").read_text().split())
    ended = Counter((workdir / "ended.txt").read_text().split())
    assert started == ended == Counter(str(i) for i in range(1, 7))


def test_a_running_launch_keeps_its_runfile(workdir: Path) -> None:
    (workdir / "job.sh").write_text("sleep 30\n")
    launch = subprocess.Popen(batchrun_cmd("run", "sh job.sh {1,2}"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (workdir / "runs" / "job" / "logs").is_dir(), what="the launch to start")
        before = (workdir / "job.runfile").read_text()
        result = run_batchrun("run", "sh job.sh {1,2,3}", cwd=workdir)
        assert result.returncode == 2
        assert f"a launch (pid {launch.pid}) is running it" in result.stderr
        assert (workdir / "job.runfile").read_text() == before
    finally:
        launch.send_signal(signal.SIGINT)
        launch.wait(timeout=60)


def test_job_ids_are_the_lines_hashes(workdir: Path, run_cli: RunCli) -> None:
    assert run_cli("run", "--name", "ids", "true {a,b}")[0] == 0
    code, out, _ = run_cli("status", "ids.runfile", "--json")
    assert code == 0
    for line in ("true a", "true b"):
        assert job_id_of(line) in out
