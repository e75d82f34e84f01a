"""`batchrun launch --follow` through the real CLI: lines that enter the runfile while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import read_metadata, run_batchrun, start_batchrun, wait_for

from batchrun.runfile.file import job_id_of

MakeRunfile = Callable[..., Path]


def ran(workdir: Path) -> list[str]:
    """What the jobs wrote to `ran`, one line per job run (its end)."""
    path = workdir / "ran"
    return path.read_text().split() if path.exists() else []


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def rewrite_as_an_editor(path: Path, lines: list[str]) -> None:
    """Write a temporary file and rename it over the runfile, as editors save."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def interrupt(launch: subprocess.Popen[str]) -> tuple[int, str, str]:
    launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    return launch.returncode, out, err


def test_appended_lines_start_without_a_relaunch_and_run_once_across_a_kill_9(make_runfile: MakeRunfile, workdir: Path) -> None:
    gate = workdir / "gate"
    path = make_runfile(["echo a >> ran"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "2", "--follow", cwd=workdir)
    try:
        wait_for(lambda: ran(workdir) == ["a"], what="the first job")
        append(path, "echo b >> ran", "echo c >> ran")
        wait_for(lambda: sorted(ran(workdir)) == ["a", "b", "c"], what="the appended jobs")
        waiting = f"touch {workdir}/started; while [ ! -e {gate} ]; do sleep 0.05; done; echo d >> ran"
        append(path, waiting)
        wait_for(lambda: (workdir / "started").exists(), what="the gated job to start")
        launch.kill()  # kill -9: the gated job keeps running, in a process group of its own
        launch.communicate(timeout=60)
        append(path, "echo e >> ran")
        again = start_batchrun("launch", "exp.runfile", "-j", "2", "--follow", cwd=workdir)
        try:
            wait_for(lambda: "e" in ran(workdir), what="the line appended while no launch ran")
            gate.touch()
            wait_for(lambda: "d" in ran(workdir), what="the adopted job")
            append(path, "echo f >> ran")
            wait_for(lambda: "f" in ran(workdir), what="a line appended to the relaunch")
            code, out, err = interrupt(again)
        finally:
            again.kill()
            again.communicate()
    finally:
        gate.touch()
        launch.kill()
        launch.communicate()
    assert code == 130, err
    assert sorted(ran(workdir)) == ["a", "b", "c", "d", "e", "f"]
    assert "batchrun: exp.runfile: following exp.runfile for new lines (batchrun stop exp.runfile to end)\n" in out
    assert f"queued      {job_id_of('echo f >> ran')}  line 6  echo f >> ran\n" in out
    assert "batchrun: exp.runfile: 6 jobs: 6 succeeded" in out
    entries = read_metadata(workdir / "runs" / "exp")
    assert sorted(entry["state"] for entry in entries.values()) == ["succeeded"] * 6
    assert all(entry["attempts"] == 1 for entry in entries.values())


def test_lines_removed_before_their_job_starts_never_run(make_runfile: MakeRunfile, workdir: Path) -> None:
    gate = workdir / "gate"
    first = f"touch {workdir}/started; while [ ! -e {gate} ]; do sleep 0.05; done; echo first >> ran"
    path = make_runfile([first, "echo queued >> ran", "echo kept >> ran"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "1", "--follow", cwd=workdir)
    try:
        wait_for(lambda: (workdir / "started").exists(), what="the first job")
        # Queued behind the first job (in doit's window), then removed; one appended and removed before the slot frees.
        append(path, "echo brief >> ran")
        rewrite_as_an_editor(path, [first, "echo kept >> ran"])
        gate.touch()
        wait_for(lambda: ran(workdir) == ["first", "kept"], what="the jobs still in the file")
        append(path, "echo last >> ran")
        wait_for(lambda: "last" in ran(workdir), what="a line appended after the editor's rename")
        code, out, err = interrupt(launch)
    finally:
        gate.touch()
        launch.kill()
        launch.communicate()
    assert code == 130, err
    assert ran(workdir) == ["first", "kept", "last"]
    assert f"dropped     {job_id_of('echo queued >> ran')}  left the runfile before it started; not run  echo queued >> ran\n" in out
    assert "batchrun: exp.runfile: 3 jobs: 3 succeeded" in out
    entries = read_metadata(workdir / "runs" / "exp")
    assert job_id_of("echo queued >> ran") not in entries
    assert job_id_of("echo brief >> ran") not in entries
    status = run_batchrun("status", "exp.runfile", cwd=workdir)
    assert "3 jobs: 3 succeeded" in status.stdout


def test_an_empty_runfile_is_followed_and_a_gridspec_is_swept_again_on_change(make_runfile: MakeRunfile, workdir: Path) -> None:
    path = make_runfile(["# nothing yet"])
    launch = start_batchrun("launch", "exp.runfile", "--follow", cwd=workdir)
    try:
        wait_for(lambda: (workdir / "runs" / "exp" / "jobs.journal").exists(), what="the launch to start")
        append(path, "echo late >> ran")
        wait_for(lambda: ran(workdir) == ["late"], what="the first line of an empty runfile")
        code, out, err = interrupt(launch)
    finally:
        launch.kill()
        launch.communicate()
    assert code == 130, err
    assert "batchrun: exp.runfile: 0 jobs, 0 to run\n" in out
    (workdir / "record.sh").write_text('echo "$1" >> ran\n')
    grid = workdir / "grid.yml"
    grid.write_text("program: sh record.sh\nparameters:\n  lr:\n    values: [1, 2]\n")
    launch = start_batchrun("launch", "grid.yml", "--follow", cwd=workdir)
    try:
        wait_for(lambda: sorted(ran(workdir)) == ["--lr=1", "--lr=2", "late"], what="the gridspec's jobs")
        grid.write_text("program: sh record.sh\nparameters:\n  lr:\n    values: [1, 2, 3]\n")
        wait_for(lambda: "--lr=3" in ran(workdir), what="the job a changed gridspec adds")
        code, out, err = interrupt(launch)
    finally:
        launch.kill()
        launch.communicate()
    assert code == 130, err
    assert "following grid.yml for new lines (batchrun stop grid.yml to end)" in out
    assert sorted(ran(workdir)) == ["--lr=1", "--lr=2", "--lr=3", "late"]


def test_follow_refuses_detach_in_one_line(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo a"])
    done = run_batchrun("launch", "exp.runfile", "--follow", "--detach", cwd=workdir)
    assert (done.returncode, done.stderr) == (
        2, "batchrun: error: --follow and --detach do not go together: a detached launch exits at once, so nothing follows the runfile\n",
    )
