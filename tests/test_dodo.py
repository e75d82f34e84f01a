"""batchrun tasks in a user's own dodo.py, run with plain doit: same records as launch."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_metadata, run_batchrun, wait_for

from batchrun.runfile.file import job_id_of

DODO = textwrap.dedent(
    """
    from batchrun.dodo import DOIT_CONFIG, runfile_tasks

    def task_exp():
        yield from runfile_tasks("exp.runfile")

    def task_after():
        return {"actions": ["echo after > after.txt"], "task_dep": ["exp"]}
    """
)


def doit(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _states(runs: Path) -> dict[str, str]:
    return {job_id: str(entry["state"]) for job_id, entry in read_metadata(runs).items()}


def test_plain_doit_leaves_the_same_records_as_launch(tmp_path: Path) -> None:
    lines = ["echo a", "sleep 0.2; echo b", "exit 3", "echo d"]
    for name in ("with_doit", "with_launch"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "exp.runfile").write_text("\n".join(lines) + "\n")
    (tmp_path / "with_doit" / "dodo.py").write_text(DODO)
    done = doit("-n", "2", cwd=tmp_path / "with_doit")
    assert done.returncode == 1, done.stderr  # a job failed: the summary task fails
    assert "1 job(s) of exp.runfile failed" in done.stdout  # doit reports failures on stdout
    assert not (tmp_path / "with_doit" / "after.txt").exists()  # task_dep on the group waits for success
    launched = run_batchrun("launch", "exp.runfile", "-j", "2", cwd=tmp_path / "with_launch")
    assert launched.returncode == 1
    assert _states(tmp_path / "with_doit" / "runs" / "exp") == _states(tmp_path / "with_launch" / "runs" / "exp")
    out = tmp_path / "with_doit" / "runs" / "exp" / "logs" / job_id_of("echo a") / "out.log"
    assert out.read_text() == "a\n"
    # Both resume the same way: nothing more runs.
    again = run_batchrun("launch", "exp.runfile", cwd=tmp_path / "with_doit")
    assert "0 to run" in again.stdout


def test_doit_runs_dependents_once_every_job_succeeded(tmp_path: Path) -> None:
    (tmp_path / "exp.runfile").write_text("echo a\necho b\n")
    (tmp_path / "dodo.py").write_text(DODO)
    done = doit("-n", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "after.txt").read_text() == "after\n"
    # Up to date the second time: no job runs again.
    again = doit("-n", "2", cwd=tmp_path)
    assert again.returncode == 0
    assert "-- exp:" in again.stdout and ".  exp:" + job_id_of("echo a") not in again.stdout


def test_kill_9_of_doit_then_batchrun_launch_finishes_exactly_once(tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    lines = [f"sleep 0.{(i * 3) % 10}; echo {i} >> {side}" for i in range(16)]
    (tmp_path / "exp.runfile").write_text("\n".join(lines) + "\n")
    (tmp_path / "dodo.py").write_text(DODO)
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-n", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: side.exists() and len(side.read_text().split()) >= 4, what="doit to finish some jobs")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    finished = run_batchrun("launch", "exp.runfile", "-j", "2", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert sorted(side.read_text().split(), key=int) == [str(i) for i in range(16)]
    # And the other way round: doit now finds everything done.
    assert doit("-n", "2", cwd=tmp_path).returncode == 0
    assert sorted(side.read_text().split(), key=int) == [str(i) for i in range(16)]


def test_doit_list_and_info_show_commands(tmp_path: Path) -> None:
    (tmp_path / "exp.runfile").write_text("python3 train.py --lr=0.1\n")
    (tmp_path / "dodo.py").write_text(DODO)
    listed = doit("list", "--all", cwd=tmp_path)
    job = job_id_of("python3 train.py --lr=0.1")
    assert f"exp:{job}   python3 train.py --lr=0.1" in listed.stdout
    assert "exp:summary" in listed.stdout
    info = doit("info", f"exp:{job}", cwd=tmp_path)
    assert "python3 train.py --lr=0.1" in info.stdout
    assert not (tmp_path / "runs" / "exp" / "metadata.json").exists()  # listing runs nothing


def test_a_doit_plugin_command_still_shows_and_runs_beside_batchrun_tasks(tmp_path: Path) -> None:
    # batchrun's own launch skips doit's plugin look-ups; doit run on a user's dodo.py keeps them.
    (tmp_path / "exp.runfile").write_text("true 1\n")
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "hello_plugin.py").write_text(
        "from doit.cmd_base import Command\n\n"
        "class Hello(Command):\n"
        "    doc_purpose = 'say hello from a plugin'\n"
        "    def execute(self, params, args):\n"
        "        print('hello from the plugin')\n"
        "        return 0\n"
    )
    (tmp_path / "doit.cfg").write_text("[COMMAND]\nhello = hello_plugin:Hello\n")
    helped = doit("help", cwd=tmp_path)
    assert "say hello from a plugin" in helped.stdout, helped.stdout + helped.stderr
    said = doit("hello", cwd=tmp_path)
    assert said.returncode == 0 and "hello from the plugin" in said.stdout, said.stdout + said.stderr
    ran = doit(cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "after.txt").exists()


def test_doit_process_mode_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "exp.runfile").write_text("echo a\necho b\n")
    (tmp_path / "dodo.py").write_text(DODO)
    done = doit("-n", "2", "-P", "process", cwd=tmp_path)
    assert done.returncode != 0
    assert "batchrun tasks need doit's thread mode" in done.stdout + done.stderr


SIDE_DODO = textwrap.dedent(
    """
    from batchrun.dodo import DOIT_CONFIG, runfile_tasks

    def task_exp():
        yield from runfile_tasks("exp.runfile")
    """
)


def _side_project(tmp_path: Path, n: int = 3) -> tuple[list[str], Path]:
    side = tmp_path / "side.txt"
    lines = [f"echo {i} >> {side}" for i in range(n)] + ["exit 3"]
    (tmp_path / "exp.runfile").write_text("\n".join(lines) + "\n")
    (tmp_path / "dodo.py").write_text(SIDE_DODO)
    return [job_id_of(line) for line in lines], side


def _journal_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "runs" / "exp" / "jobs.journal").read_text().splitlines()


def test_doit_forget_of_one_job_runs_exactly_it_again_under_doit_and_launch(tmp_path: Path) -> None:
    ids, side = _side_project(tmp_path)
    assert doit("-n", "2", cwd=tmp_path).returncode == 1  # `exit 3` fails the summary
    assert sorted(side.read_text().split()) == ["0", "1", "2"]
    forgot = doit("forget", f"exp:{ids[1]}", cwd=tmp_path)
    assert forgot.returncode == 0, forgot.stderr
    assert _journal_lines(tmp_path)[-1] == f"R {ids[1]}"  # the journal records it
    doit("-n", "2", cwd=tmp_path)
    assert sorted(side.read_text().split()) == ["0", "1", "1", "2"]
    # The failed job was not forgotten: it did not run again.
    assert sum(line.startswith(f"S {ids[3]} ") for line in _journal_lines(tmp_path)) == 1
    doit("forget", f"exp:{ids[2]}", cwd=tmp_path)
    launched = run_batchrun("launch", "exp.runfile", cwd=tmp_path)
    assert "1 to run" in launched.stdout
    assert sorted(side.read_text().split()) == ["0", "1", "1", "2", "2"]
    assert not list(tmp_path.glob(".doit.db*"))


def test_doit_forget_of_the_group_and_bare_forget_run_every_job_again(tmp_path: Path) -> None:
    ids, side = _side_project(tmp_path)
    doit("-n", "2", cwd=tmp_path)
    group = doit("forget", "exp", cwd=tmp_path)
    assert f"forgetting exp:{ids[0]}" in group.stdout
    doit("-n", "2", cwd=tmp_path)
    assert sorted(side.read_text().split()) == ["0", "0", "1", "1", "2", "2"]
    bare = doit("forget", cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    assert set(_journal_lines(tmp_path)[-4:]) == {f"R {job_id}" for job_id in ids}
    assert run_batchrun("launch", "exp.runfile", "-j", "2", cwd=tmp_path).returncode == 1  # `exit 3` ran again
    assert sorted(side.read_text().split()) == ["0", "0", "0", "1", "1", "1", "2", "2", "2"]


def test_doit_ignore_skips_a_job_until_it_is_forgotten(tmp_path: Path) -> None:
    from batchrun.store.journal import Journal

    ids, side = _side_project(tmp_path)
    ignored = doit("ignore", f"exp:{ids[0]}", cwd=tmp_path)
    assert ignored.returncode == 0, ignored.stderr
    assert _journal_lines(tmp_path) == [f"X {ids[0]}"]
    listed = doit("list", "--all", "--status", cwd=tmp_path)
    assert f"I exp:{ids[0]}" in listed.stdout and f"R exp:{ids[1]}" in listed.stdout
    doit("-n", "2", cwd=tmp_path)
    assert sorted(side.read_text().split()) == ["1", "2"]
    # batchrun launch goes through the same backend: doit skips the job there too.
    launched = run_batchrun("launch", "exp.runfile", cwd=tmp_path)
    assert launched.returncode == 1, launched.stderr  # `exit 3` failed in the doit run
    assert "1 ignored (doit forget runs it again), 0 to run" in launched.stdout
    assert sorted(side.read_text().split()) == ["1", "2"]
    journal = Journal(tmp_path / "runs" / "exp")
    journal.load()
    assert journal.records[ids[0]].ignored
    status = run_batchrun("status", "exp.runfile", "--state", "ignored", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "1 ignored" in status.stdout.splitlines()[0]
    lines = status.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("LINE "))
    assert [line.split()[1] for line in lines[header + 1 :]] == [ids[0][:8]]
    doit("forget", f"exp:{ids[0]}", cwd=tmp_path)
    assert "ignored" not in run_batchrun("status", "exp.runfile", cwd=tmp_path).stdout
    doit("-n", "2", cwd=tmp_path)
    assert sorted(side.read_text().split()) == ["0", "1", "2"]


def test_doit_list_info_and_dumpdb_show_what_the_journal_says(tmp_path: Path) -> None:
    ids, _ = _side_project(tmp_path)
    doit("-n", "2", cwd=tmp_path)
    doit("forget", f"exp:{ids[1]}", cwd=tmp_path)
    listed = doit("list", "--all", "--status", cwd=tmp_path)
    assert f"U exp:{ids[0]}" in listed.stdout
    assert f"R exp:{ids[1]}" in listed.stdout
    assert f"F exp:{ids[3]}" in listed.stdout  # failed: done for a resume, not up to date
    info = doit("info", f"exp:{ids[1]}", cwd=tmp_path)
    assert "status     : run" in info.stdout
    assert "batchrun journal: no record" in info.stdout
    dumped = doit("dumpdb", cwd=tmp_path)
    assert dumped.returncode == 0, dumped.stderr
    assert f"exp:{ids[3]} -> " in dumped.stdout and "'status': 3" in dumped.stdout
    assert f"exp:{ids[1]} -> " not in dumped.stdout
    retry = (tmp_path / "dodo.py").read_text().replace('runfile_tasks("exp.runfile")', 'runfile_tasks("exp.runfile", retry_failed=True)')
    (tmp_path / "dodo.py").write_text(retry)
    info = doit("info", f"exp:{ids[3]}", cwd=tmp_path)
    assert "batchrun journal: failed, exit 3 (not done for mode retry_failed)" in info.stdout


def test_under_another_backend_a_job_the_journal_holds_never_runs_twice(tmp_path: Path) -> None:
    # A dodo.py with a DOIT_CONFIG of its own: doit's json file, written only
    # at the end of a run, is lost (as a kill -9 would lose it).
    _, side = _side_project(tmp_path)
    (tmp_path / "dodo.py").write_text(SIDE_DODO.replace("from batchrun.dodo import DOIT_CONFIG, runfile_tasks", "from batchrun.dodo import runfile_tasks\nDOIT_CONFIG = {'par_type': 'thread', 'backend': 'json', 'dep_file': 'own.json'}"))
    doit("-n", "2", cwd=tmp_path)
    assert sorted(side.read_text().split()) == ["0", "1", "2"]
    (tmp_path / "own.json").unlink()
    doit("-n", "2", cwd=tmp_path)
    assert sorted(side.read_text().split()) == ["0", "1", "2"]


def test_kill_9_of_doit_then_doit_again_runs_each_job_exactly_once(tmp_path: Path) -> None:
    # doit's database is the journal: what the killed doit finished, the next doit knows.
    side = tmp_path / "side.txt"
    lines = [f"sleep 0.{(i * 3) % 10}; echo {i} >> {side}" for i in range(12)]
    (tmp_path / "exp.runfile").write_text("\n".join(lines) + "\n")
    (tmp_path / "dodo.py").write_text(SIDE_DODO)
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-n", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: side.exists() and len(side.read_text().split()) >= 3, what="doit to finish some jobs")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = doit("-n", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(side.read_text().split(), key=int) == [str(i) for i in range(12)]
    assert not list(tmp_path.glob(".doit.db*"))


def test_doit_dumpdb_of_another_backend_or_no_dodo_is_doits_own(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text("DOIT_CONFIG = {'backend': 'dbm', 'dep_file': 'deps.db'}\ndef task_a():\n    return {'actions': ['true'], 'file_dep': ['dodo.py']}\n")
    assert doit(cwd=tmp_path).returncode == 0
    dumped = doit("dumpdb", cwd=tmp_path)  # the dodo.py's dep_file, which doit's own dumpdb ignores
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout.startswith("DBM type is 'dbm.") and "b'a' -> " in dumped.stdout
    (tmp_path / "dodo.py").unlink()
    no_dodo = doit("dumpdb", "--db-file", "deps.db", cwd=tmp_path)
    assert no_dodo.returncode == 0, no_dodo.stderr
    assert "b'a' -> " in no_dodo.stdout


@pytest.mark.parametrize("broken", ["def task_a(:\n", "import no_such_module_anywhere\n", "raise RuntimeError('boom')\n"], ids=["syntax", "import", "raises"])
def test_doit_dumpdb_with_a_broken_dodo_dumps_the_file_without_it(tmp_path: Path, broken: str) -> None:
    """Stock doit's dumpdb never loads the dodo.py: with batchrun installed a broken one must not stop it either."""
    (tmp_path / "dodo.py").write_text("from batchrun.dodo import DOIT_CONFIG\ndef task_a():\n    return {'actions': ['true'], 'file_dep': ['dodo.py']}\n")
    assert doit(cwd=tmp_path).returncode == 0
    (tmp_path / "dodo.py").write_text(broken)
    dumped = doit("dumpdb", cwd=tmp_path)
    assert dumped.returncode == 0, dumped.stderr
    assert "Traceback" not in dumped.stderr and "could not be loaded" in dumped.stderr
    assert ".doit.journal" in dumped.stdout and "a -> " in dumped.stdout


def test_batchrun_kill_reaches_a_plain_doit_run_which_goes_on(tmp_path: Path) -> None:
    doomed = f"touch {tmp_path}/started; sleep 60"
    (tmp_path / "exp.runfile").write_text(f"{doomed}\necho b >> ran\n")
    (tmp_path / "dodo.py").write_text(DODO)
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-n", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "started").exists(), what="the first job")
        kill = run_batchrun("kill", "exp.runfile", "1", cwd=tmp_path)
        assert kill.returncode == 0, kill.stderr
        out, _err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 1
    assert f"{job_id_of(doomed)} (killed)" in out
    assert (tmp_path / "ran").read_text() == "b\n"
    assert _states(tmp_path / "runs" / "exp")[job_id_of(doomed)] == "killed"
