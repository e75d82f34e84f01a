"""The launch's exit log (`executors/exitlog.py`): one append-only file per launch, read after a kill -9 and beside the previous release's files."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import read_metadata, run_batchrun

from batchrun.executors import exitlog, exitrecord, jobfiles
from batchrun.executors.local._slot_helper import KILL_AFTER_HOOK
from batchrun.launch.settle import Outcome, settle_one
from batchrun.store.records import JobRecord, State

MakeRunfile = Callable[..., Path]


def _log_dir(runs: Path, job: str) -> Path:
    log_dir = runs / "logs" / job
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir


def _running(job: str, attempt: int) -> JobRecord:
    rec = JobRecord(job)
    rec.state, rec.attempts, rec.start = State.RUNNING, attempt, 1.0
    return rec


def test_records_of_a_launch_are_lines_of_one_file_named_after_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for n, job in enumerate(("a", "b", "c")):
        assert exitrecord.record_end(bytes(_log_dir(runs, job)), n, b"2", usage, launch="L1")
    (folder,) = [runs / exitlog.FOLDER]
    assert [path.name for path in folder.iterdir()] == ["L1"]
    lines = (folder / "L1").read_bytes().splitlines()
    assert [line.split()[:4] for line in lines] == [[b"a", b"2", b"0", b"-"], [b"b", b"2", b"1", b"-"], [b"c", b"2", b"2", b"-"]]
    assert not any((runs / "logs" / job / "exit").exists() for job in "abc"), "a per-job file was written too"
    assert jobfiles.read_exit_record(runs / "logs" / "b", 2)[0::2] == (1, None)  # type: ignore[index]
    assert jobfiles.read_exit_record(runs / "logs" / "b", 1) is None, "another attempt's record was taken"
    assert jobfiles.read_usage(runs / "logs" / "c", 2) == (usage.ru_maxrss, round(usage.ru_utime, 3), round(usage.ru_stime, 3))


def test_a_torn_last_line_is_no_record_and_the_lines_before_it_stand(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for job in ("a", "b"):
        exitrecord.record_end(bytes(_log_dir(runs, job)), 0, b"1", launch="L1")
    path = runs / exitlog.FOLDER / "L1"
    whole = path.read_bytes()
    torn = b"c 1 0 - 1796551972.6"  # a record cut short: no newline
    path.write_bytes(whole + torn)
    _log_dir(runs, "c")
    assert jobfiles.read_exit_record(runs / "logs" / "c", 1) is None
    # Settlement: the job whose record is torn ran to an end nobody saw whole: it runs again; the others are collected.
    free = lambda rec, log_dir: False  # noqa: E731 - no process of any job is alive
    assert settle_one(_running("c", 1), runs / "logs" / "c", free, 5.0).outcome == Outcome.RERUN
    decision = settle_one(_running("a", 1), runs / "logs" / "a", free, 5.0)
    assert (decision.outcome, decision.status) == (Outcome.COLLECTED, 0)
    # Every cut of a whole line is no record (none reads as a shorter number or a plain end of a stopped job).
    line = b"d 1 137 killed 1796551972.625 10 0.100 0.200\n"
    for cut in range(1, len(line)):
        path.write_bytes(whole + line[:cut])
        found = jobfiles.read_exit_record(_log_dir(runs, "d"), 1)
        assert found is None or cut == len(line) - 1, cut


def test_the_previous_release_per_job_files_still_settle(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    old = _log_dir(runs, "old")
    (old / "exit").write_text("3 1\n")
    (old / "usage").write_text("1 100 0.500 0.250\n")
    free = lambda rec, log_dir: False  # noqa: E731
    decision = settle_one(_running("old", 1), old, free, 5.0)
    assert (decision.outcome, decision.status, decision.usage) == (Outcome.COLLECTED, 3, (100, 0.5, 0.25))
    # A newer attempt's record in a launch's file is read first.
    exitrecord.record_end(bytes(old), 0, b"2", launch="L2")
    assert jobfiles.read_exit_record(old, 2)[0] == 0  # type: ignore[index]
    assert jobfiles.read_exit_record(old)[0] == 0, "asked for any attempt, the newest is not the one read"  # type: ignore[index]
    assert jobfiles.read_exit_record(old, 1)[0] == 3  # type: ignore[index]


def test_a_stop_note_names_the_state_a_record_of_the_launch_file_keeps(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    log_dir = _log_dir(runs, "s")
    exitrecord.note_stop(log_dir, "killed", 4)
    assert exitrecord.record_end(bytes(log_dir), 0, b"4", launch="L1")  # a trapped TERM's exit 0
    assert jobfiles.read_exit_record(log_dir, 4) == (0, jobfiles.read_exit_record(log_dir, 4)[1], "killed")  # type: ignore[index]
    assert not exitrecord.record_end(bytes(log_dir), -9, b"5", launch="L1"), "a job a signal killed, with no stop noted for it, got a record"


def test_a_launch_killed_right_after_a_supervisor_appended_a_record_is_settled_from_the_file_next_time(make_runfile: MakeRunfile, workdir: Path) -> None:
    """The slot helper SIGKILLs the launch once its job's record is appended (KILL_AFTER_HOOK): the relaunch collects the job without running it again."""
    side = workdir / "side"
    line = f"echo ran >> {side}; exit 3"
    make_runfile([line])
    launch = subprocess.run([sys.executable, "-m", "batchrun", "launch", "exp.runfile", "-q"], cwd=workdir, env={**os.environ, KILL_AFTER_HOOK: "1"},
                            capture_output=True, text=True, timeout=120)
    assert launch.returncode == -signal.SIGKILL, launch.stderr
    runs = workdir / "runs" / "exp"
    (exits,) = (runs / exitlog.FOLDER).iterdir()
    assert exits.read_bytes().count(b"\n") == 1 and exits.read_bytes().split()[1:4] == [b"1", b"3", b"-"]
    (log_dir,) = (runs / "logs").iterdir()
    assert not (log_dir / "exit").exists()
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 1, again.stderr
    assert side.read_text() == "ran\n", "the job ran twice"
    (entry,) = read_metadata(runs).values()
    assert (entry["state"], entry["status"], entry["attempts"]) == ("failed", 3, 1)
    assert entry.get("max_rss_kb") is not None, "what the job used was lost with the launch"
    assert not exits.exists(), "the killed launch's exit log outlived the launch that settled it"


def test_a_launch_that_leaves_a_job_running_keeps_the_exit_logs_and_the_next_one_drops_them_once_settled(make_runfile: MakeRunfile, workdir: Path) -> None:
    go = workdir / "go"
    make_runfile(["true", f"while [ ! -f {go} ]; do sleep 0.05; done"])
    detached = run_batchrun("launch", "exp.runfile", "-j", "2", "--detach", cwd=workdir)
    assert detached.returncode == 0, detached.stderr
    runs = workdir / "runs" / "exp"
    go.touch()
    done = run_batchrun("wait", "exp.runfile", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert (runs / exitlog.FOLDER).is_dir(), "the detached launch's records are only in its exit log until a launch journals them"
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert not (runs / exitlog.FOLDER).exists()


def test_a_record_torn_in_the_launch_file_runs_its_job_again_and_costs_nothing_else(make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side"
    make_runfile([f"echo ran >> {side}"])
    launch = subprocess.run([sys.executable, "-m", "batchrun", "launch", "exp.runfile", "-q"], cwd=workdir, env={**os.environ, KILL_AFTER_HOOK: "1"},
                            capture_output=True, text=True, timeout=120)
    assert launch.returncode == -signal.SIGKILL, launch.stderr
    runs = workdir / "runs" / "exp"
    (exits,) = (runs / exitlog.FOLDER).iterdir()
    exits.write_bytes(exits.read_bytes()[:-8])  # its last line cut short, as by a crash of the machine
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert side.read_text() == "ran\nran\n"
    (entry,) = read_metadata(runs).values()
    assert (entry["state"], entry["attempts"]) == ("succeeded", 2)


def test_a_record_that_cannot_be_one_short_line_goes_to_the_job_own_file(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("with blank", "tab\there"):
        log_dir = _log_dir(runs, name)
        assert exitrecord.record_end(bytes(log_dir), 2, b"1", launch="L1")
        assert (log_dir / "exit").read_text() == "2 1\n"
        assert jobfiles.read_exit_record(log_dir, 1)[0] == 2  # type: ignore[index]
    assert not (runs / exitlog.FOLDER / "L1").exists()
