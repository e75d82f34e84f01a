"""Damaged and missing files of a runs directory, through the real CLI.

Each test damages one file batchrun reads back, exactly (truncated, emptied,
non-UTF-8, garbage, deleted), then runs `python -m batchrun` on it: the
outcome is a clean recovery (said in one line when records were rebuilt) or
one `batchrun: error:` line with exit 2, never a traceback, never a job run
twice or forgotten.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import batchrun_cmd, damage_exit_record, run_batchrun, wait_for

from batchrun.store.journal import Journal

MakeRunfile = Callable[..., Path]


def _no_crash(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def _first_launch(make_runfile: MakeRunfile, workdir: Path, n: int = 3) -> tuple[Path, Path]:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}" for i in range(n)])
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return side, workdir / "runs" / "exp"


_STAMP_DAMAGES: list[object] = [
    pytest.param(lambda good: good.replace(b" ", b"\xff", 1), id="non-utf8"),
    pytest.param(lambda good: good[:7], id="truncated"),
    pytest.param(lambda good: b"", id="empty"),
    pytest.param(lambda good: bytes(range(256)) * 64, id="binary-garbage"),
]


@pytest.mark.parametrize("damage", _STAMP_DAMAGES)
def test_a_damaged_fingerprint_only_means_the_view_is_rebuilt(make_runfile: MakeRunfile, workdir: Path, damage: Callable[[bytes], bytes]) -> None:
    side, runs = _first_launch(make_runfile, workdir)
    stamp = runs / ".fingerprint"
    stamp.write_bytes(damage(stamp.read_bytes()))
    meta_before = (runs / "metadata.json").read_bytes()
    for command in (["launch", "exp.runfile"], ["status", "exp.runfile"], ["plan", "exp.runfile"], ["failed", "exp.runfile"]):
        proc = run_batchrun(*command, cwd=workdir)
        _no_crash(proc)
        assert proc.returncode == 0, (command, proc.stderr)
        assert proc.stderr == "", (command, proc.stderr)
    assert side.read_text().count("\n") == 3  # nothing ran again
    assert (runs / "metadata.json").read_bytes() == meta_before
    # The relaunch wrote a good fingerprint back.
    assert stamp.read_bytes().startswith(b"batchrun-fingerprint 1 ")


def _notices(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line]


_METADATA_DAMAGES: list[object] = [
    pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
    pytest.param(lambda text: text[:1], id="truncated-to-one-byte"),
    pytest.param(lambda text: b"", id="emptied"),
    pytest.param(lambda text: bytes(random.Random(7).randrange(256) for _ in range(300)), id="random-bytes"),
    pytest.param(lambda text: b"\0" * 4096, id="nul-filled"),
    pytest.param(lambda text: text.replace(b'"state"', b'"st\xffte"', 1), id="non-utf8"),
    pytest.param(lambda text: b"null\n", id="json-null"),
    pytest.param(lambda text: b"[1, 2]\n", id="json-list"),
    pytest.param(lambda text: b'{"abc": 1}\n', id="json-wrong-entries"),
    pytest.param(lambda text: text + b"{}", id="trailing-garbage"),
    pytest.param(lambda text: b"[" * 100_000, id="deep-nesting"),
    pytest.param(lambda text: b'{"abc": {"status": 1' + b"0" * 5000 + b"}}", id="huge-integer"),
]


@pytest.mark.parametrize("damage", _METADATA_DAMAGES)
def test_a_damaged_metadata_json_is_rebuilt_from_the_journal(make_runfile: MakeRunfile, workdir: Path, damage: Callable[[bytes], bytes]) -> None:
    side, runs = _first_launch(make_runfile, workdir, 2)
    meta = runs / "metadata.json"
    good = json.loads(meta.read_text())
    damaged = damage(meta.read_bytes())
    meta.write_bytes(damaged)
    # The read-only commands say what is wrong and what repairs it.
    for command in ("status", "plan", "failed"):
        proc = run_batchrun(command, "exp.runfile", cwd=workdir)
        _no_crash(proc)
        assert proc.returncode == 2, (command, proc.stderr)
        assert _notices(proc) == [proc.stderr.strip()] and proc.stderr.startswith(f"batchrun: error: {meta}"), proc.stderr
        assert "batchrun launch rebuilds it from the job journal" in proc.stderr
    make_runfile([f"echo {i} >> {side}" for i in range(3)])
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    _no_crash(proc)
    assert proc.returncode == 0, proc.stderr
    [notice] = _notices(proc)
    assert notice.startswith(f"batchrun: {meta}") and "rebuilt from the job journal, " in notice, notice
    assert ("corrupt metadata" in notice or "not a JSON object" in notice) and "batchrun launch rebuilds" not in notice, notice
    assert side.read_text() == "0\n1\n2\n"  # only the new line ran
    [aside] = runs.glob("metadata.json.damaged-*")
    assert aside.read_bytes() == damaged
    now = json.loads(meta.read_text())
    assert {k: v["state"] for k, v in now.items()} == dict.fromkeys(now, "succeeded") and len(now) == 3
    for job_id, entry in good.items():
        assert now[job_id] == entry
    # Repaired for good: the next launch is silent.
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_truncated_metadata_json_keeps_what_only_it_held(make_runfile: MakeRunfile, workdir: Path) -> None:
    """Entries of the original batchrun and of removed lines live only in
    metadata.json: those that are whole survive a truncation."""
    side, runs = _first_launch(make_runfile, workdir, 2)
    meta = runs / "metadata.json"
    entries = json.loads(meta.read_text())
    legacy_id, removed_id = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    legacy = {"command": "echo legacy", "status": 0, "start": 1.0, "runtime": 2.0, "parameters": {}}
    removed = {**next(iter(entries.values())), "command": "echo removed", "line": 9}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in [(legacy_id, legacy), (removed_id, removed), *entries.items()]]
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    meta.write_text(text[: text.rindex("{") + 10])  # the last entry torn
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "3 whole entries kept" in proc.stderr, proc.stderr
    now = json.loads(meta.read_text())
    assert now[legacy_id]["command"] == "echo legacy" and now[removed_id]["command"] == "echo removed"
    assert set(entries) <= set(now)
    assert side.read_text() == "0\n1\n"


def _sitecustomize(tmp_path: Path, code: str) -> dict[str, str]:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(code))
    return {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


# A launch SIGKILLed mid-write of metadata.json: the temporary file is
# written (half) and the kill lands before the rename.
_KILL_IN_METADATA_WRITE = """
    import os, signal
    import batchrun.store.viewfile as viewfile

    def write_atomic(path, text):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text('{\\n  "0123456789abcdef": {"comm')
        os.kill(os.getpid(), signal.SIGKILL)

    viewfile.write_atomic = write_atomic
"""


def test_temp_files_of_writers_killed_mid_write_are_removed(make_runfile: MakeRunfile, workdir: Path, tmp_path: Path) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}" for i in range(4)])
    killing = _sitecustomize(tmp_path, _KILL_IN_METADATA_WRITE)
    runs = workdir / "runs" / "exp"
    for storm in range(3):
        killed = subprocess.Popen(batchrun_cmd("launch", "exp.runfile"), cwd=workdir, env=killing, stdout=subprocess.DEVNULL)
        assert killed.wait(timeout=60) == -9, storm
        # Each launch removed the files of the launches killed before it.
        assert [p.name for p in runs.glob(".metadata.json.*.tmp")] == [f".metadata.json.{killed.pid}.tmp"]
    # A live writer's file (a pid that exists) is never touched.
    live = subprocess.Popen(["sleep", "60"])
    try:
        live_tmp = runs / f".metadata.json.{live.pid}.tmp"
        live_tmp.write_text("{")
        proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
        assert proc.returncode == 0, proc.stderr
        assert sorted(runs.glob(".metadata.json.*.tmp")) == [live_tmp]
    finally:
        live.kill()
        live.wait()
    assert sorted(side.read_text().split()) == ["0", "1", "2", "3"]


def test_a_deleted_journal_is_rebuilt_from_metadata_and_exit_records(make_runfile: MakeRunfile, workdir: Path) -> None:
    side, runs = _first_launch(make_runfile, workdir, 20)
    (runs / "jobs.journal").unlink()
    proc = run_batchrun("status", "exp.runfile", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["succeeded"] == 20
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    [notice] = _notices(proc)
    assert notice.startswith(f"batchrun: {runs / 'jobs.journal'}: missing or empty; rebuilt from metadata.json")
    assert "20 finished jobs kept" in notice and "--rerun-all" in notice
    assert side.read_text().count("\n") == 20  # none ran again
    assert len(Journal(runs).path.read_text().splitlines()) >= 20
    # Starting over on purpose still works.
    proc = run_batchrun("launch", "exp.runfile", "-q", "--rerun-all", cwd=workdir)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert side.read_text().count("\n") == 40


@pytest.mark.parametrize("loss", ["journal-and-metadata-deleted", "journal-emptied"])
def test_exit_records_alone_keep_finished_jobs(make_runfile: MakeRunfile, workdir: Path, loss: str) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo {i} >> {side}; exit {i % 2}" for i in range(6)])
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 1
    runs = workdir / "runs" / "exp"
    if loss == "journal-emptied":
        (runs / "jobs.journal").write_bytes(b"")
    else:
        (runs / "jobs.journal").unlink()
        (runs / "metadata.json").unlink()
    # One exit record is garbage: that job is not believed finished.
    garbage = sorted((runs / "logs").iterdir())[0]
    damage_exit_record(garbage, b"\xff\xfe\x00 junk\n")
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    _no_crash(proc)
    assert proc.returncode == 1, proc.stderr
    if loss == "journal-emptied":
        # metadata.json still says how each job ended: the exit records are not needed.
        assert "6 finished jobs kept" in proc.stderr, proc.stderr
        assert side.read_text().count("\n") == 6
    else:
        assert "5 finished jobs kept" in proc.stderr, proc.stderr
        assert side.read_text().count("\n") == 7  # only the job with the garbage record ran again
    meta = json.loads((runs / "metadata.json").read_text())
    assert sorted(e["status"] for e in meta.values()) == [0, 0, 0, 1, 1, 1]


def test_a_deleted_journal_with_a_job_left_running_adopts_it(make_runfile: MakeRunfile, workdir: Path) -> None:
    side = workdir / "side.txt"
    go = workdir / "go"
    make_runfile([f"echo quick >> {side}", f"while [ ! -e {go} ]; do sleep 0.05; done; echo slow >> {side}"])
    launch = subprocess.Popen(batchrun_cmd("launch", "exp.runfile", "-j", "2"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = workdir / "runs" / "exp"
    try:
        wait_for(lambda: '"running"' in _text(runs / "metadata.json") and '"succeeded"' in _text(runs / "metadata.json"), what="a flush with one job running")
    finally:
        launch.kill()
        launch.wait()
    (runs / "jobs.journal").unlink()
    relaunch = subprocess.Popen(batchrun_cmd("launch", "exp.runfile", "-q"), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (runs / "jobs.journal").exists() and b"S " in (runs / "jobs.journal").read_bytes(), what="the rebuilt journal")
    go.touch()
    out, err = relaunch.communicate(timeout=60)
    assert relaunch.returncode == 0, err
    assert "1 finished jobs kept, 1 left running to settle" in err, err
    assert sorted(side.read_text().split()) == ["quick", "slow"]


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"99999999999999999999\n", b"0\n", b"-1\n", b"1" * 100_000])
def test_a_damaged_lock_file_is_no_obstacle(make_runfile: MakeRunfile, workdir: Path, content: bytes) -> None:
    side, runs = _first_launch(make_runfile, workdir)
    lock = runs / ".lock"
    lock.write_bytes(content)
    for command in ("status", "plan"):
        proc = run_batchrun(command, "exp.runfile", cwd=workdir)
        assert (proc.returncode, proc.stderr) == (0, ""), (command, proc.stderr)
    # Held by someone whose pid the file does not name: a clean refusal.
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = run_batchrun("launch", "exp.runfile", cwd=workdir)
        assert proc.returncode == 2 and proc.stderr.startswith("batchrun: error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "another process" in proc.stderr
    finally:
        os.close(fd)
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert lock.read_bytes().strip().isdigit()
    assert side.read_text().count("\n") == 3


def test_damaged_job_logs_and_exit_records_are_read_without_error(make_runfile: MakeRunfile, workdir: Path) -> None:
    side, runs = _first_launch(make_runfile, workdir)
    first, second, _ = sorted((runs / "logs").iterdir())
    (first / "out.log").write_bytes(b"ok\xff\xfe\x00bin\n")
    damage_exit_record(second, bytes(range(256)))
    proc = subprocess.run(batchrun_cmd("logs", "exp.runfile", first.name), cwd=workdir, capture_output=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"ok\xff\xfe\x00bin\n", b"")
    for command in (["status", "exp.runfile"], ["failed", "exp.runfile"], ["launch", "exp.runfile", "-q"]):
        proc2 = run_batchrun(*command, cwd=workdir)
        assert (proc2.returncode, proc2.stderr) == (0, ""), (command, proc2.stderr)
    assert side.read_text().count("\n") == 3


@pytest.mark.parametrize("data", [b"\xff\xfe\n", b"garbage\n", b'V "sweep" {"a": 1\n', b"\x00\x00\x00\n"])
def test_a_damaged_sweep_database_is_removed_and_the_sweep_runs_again(workdir: Path, data: bytes) -> None:
    (workdir / "grid.yml").write_text("program: echo\nparameters:\n  x:\n    values: [1, 2]\n")
    assert run_batchrun("launch", "grid.yml", "-q", cwd=workdir).returncode == 0
    db = workdir / "runs" / "grid" / ".sweep.doit.json.journal"
    assert db.read_text()  # the sweep's state, kept by the batchrun backend
    db.write_bytes(data)
    proc = run_batchrun("launch", "grid.yml", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"batchrun: {db}: damaged; removed (a cache of the sweep's inputs: the sweep runs again)\n"
    assert db.read_text().startswith("V ")  # written anew
    assert "(0 ran now)" in proc.stdout


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("metadata.json", "metadata.json: cannot read: Is a directory"),
        ("jobs.journal", "jobs.journal: cannot read the job journal: Is a directory"),
        (".lock", ".lock: cannot create the launch lock: Is a directory"),
    ],
)
def test_a_record_that_is_a_directory_is_one_error_line(make_runfile: MakeRunfile, workdir: Path, name: str, expected: str) -> None:
    side, runs = _first_launch(make_runfile, workdir)
    path = runs / name
    path.unlink()
    path.mkdir()
    commands = [["launch", "exp.runfile"]] + ([["status", "exp.runfile"], ["plan", "exp.runfile"], ["failed", "exp.runfile"]] if name != ".lock" else [])
    for command in commands:
        proc = run_batchrun(*command, cwd=workdir)
        _no_crash(proc)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stderr == f"batchrun: error: {runs}/{expected}\n", (command, proc.stderr)
    assert side.read_text().count("\n") == 3
