"""`status`, `failed` and `results` of a runs directory given by path, streamed through its runfile beside it, print what the held read prints.

Real launches make the runs directories (finished with failures, pending
after `--fail-fast`); the golden is the CLI in another process with the
runfile beside never looked for (`beside.runfile_beside`), so that every
job is held as before (`view.load_status` without a runfile: "runfile": null,
jobs in metadata.json's line order). Jobs of no line (records of removed
lines, an entry of a line deleted before it ran) are merged in by line; a
runfile with lines added since its launch is read up to them; one edited
otherwise is not used.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_batchrun

from batchrun.status.beside import entry_lines, read_streamable
from batchrun.store.target import resolve_target

pytestmark = pytest.mark.timeout(300)

_HELD = """
import sys
from batchrun.status import beside
beside.runfile_beside = lambda target: None
from batchrun.cli.app import main
sys.exit(main(sys.argv[1:]))
"""

_FORMS = [
    ["status"],
    ["status", "--state", "failed", "--state", "pending"],
    ["status", "--command"],
    ["status", "--json"],
    ["status", "--json", "--state", "succeeded"],
    ["status", "--csv"],
    ["status", "--resources"],
    ["failed"],
    ["failed", "--interrupted"],
    ["results"],
    ["results", "--json"],
    ["results", "--csv", "--state", "failed"],
    ["results", "--sort", "-loss", "--top", "7"],
    ["results", "--sort", "command"],
    ["results", "--over", "seed"],
    ["results", "--best", "loss"],
]


def _line(n: int) -> str:
    metric = f'echo "{{\\"loss\\": {n % 17 / 10}}}" >> "$BATCHRUN_METRICS"; ' if n % 3 else ""
    return f"sh -c '{metric}exit {1 if n % 5 == 0 else 0}' {n} --lr=0.{n % 4 + 1} --seed={n % 6}"


def _same(workdir: Path, runs: str, forms: list[list[str]]) -> None:
    for form in forms:
        argv = [form[0], runs, *form[1:]]
        streamed = run_batchrun(*argv, cwd=workdir, timeout=120)
        held = subprocess.run([sys.executable, "-c", _HELD, *argv], cwd=workdir, capture_output=True, text=True, timeout=120, check=False)
        assert (streamed.returncode, streamed.stdout, streamed.stderr) == (held.returncode, held.stdout, held.stderr), argv
        assert streamed.stdout or streamed.stderr, argv


def _streams(workdir: Path, runs: str) -> bool:
    return read_streamable(resolve_target(workdir / runs), usage=False) is not None


def test_a_runs_directory_with_its_runfile_beside_streams_what_the_held_read_prints(workdir: Path) -> None:
    (workdir / "fin.runfile").write_text("".join(f"{_line(n)}\n" for n in range(300)))
    assert run_batchrun("launch", "fin.runfile", "-j", "2", cwd=workdir).returncode == 1
    # Pending: the first job fails, and --fail-fast starts no other.
    (workdir / "pend.runfile").write_text("false --seed=0\n" + "".join(f"{_line(n)}\n" for n in range(1, 40)))
    assert run_batchrun("launch", "pend.runfile", "-j", "1", "--fail-fast", cwd=workdir).returncode == 1
    for runs, forms in (("runs/fin", _FORMS), ("runs/pend", _FORMS[:8])):
        assert _streams(workdir, runs), runs
        _same(workdir, runs, forms)
    assert "39 pending" in run_batchrun("status", "runs/pend", cwd=workdir).stdout
    assert entry_lines(workdir / "runs" / "fin" / "metadata.json") == 300


def test_a_runs_directory_with_jobs_of_no_line_or_another_runfile(workdir: Path) -> None:
    lines = [_line(n) for n in range(1, 30)]
    (workdir / "a.runfile").write_text("false --seed=0\n" + "".join(f"{line}\n" for line in lines))
    assert run_batchrun("launch", "a.runfile", "-j", "1", "--fail-fast", cwd=workdir).returncode == 1
    shutil.copytree(workdir / "runs" / "a", workdir / "runs" / "b")
    shutil.copytree(workdir / "runs" / "a", workdir / "runs" / "c")
    shutil.copytree(workdir / "runs" / "a", workdir / "runs" / "d")
    # d: lines added to its runfile since its launch, not launched: its view is of the runfile's first lines.
    (workdir / "d.runfile").write_text((workdir / "a.runfile").read_text() + "echo added --seed=1\necho added --seed=2\n")
    # b: a pending line deleted before it ran; the relaunch leaves its entry (no record) in metadata.json.
    (workdir / "b.runfile").write_text("false --seed=0\n" + "".join(f"{line}\n" for line in lines[:-1]))
    assert run_batchrun("launch", "b.runfile", "-j", "2", cwd=workdir).returncode == 1
    # c: lines that ran deleted (records of removed jobs), relaunched.
    (workdir / "c.runfile").write_text("".join(f"{line}\n" for line in lines))
    run_batchrun("launch", "c.runfile", "-j", "2", cwd=workdir)
    (workdir / "c.runfile").write_text("".join(f"{line}\n" for line in lines[5:]))
    assert run_batchrun("launch", "c.runfile", "-j", "2", cwd=workdir).returncode == 1
    # a: its runfile edited since its launch, not launched again.
    (workdir / "a.runfile").write_text("false --seed=0\n" + "".join(f"{line}\n" for line in lines[:10]))
    # b and c: the jobs of no line merged in by line (sorted: placed by position).
    assert not _streams(workdir, "runs/a") and _streams(workdir, "runs/b") and _streams(workdir, "runs/c") and _streams(workdir, "runs/d")
    forms = [
        ["status"], ["status", "--json"], ["status", "--state", "pending", "--state", "succeeded", "--csv"], ["failed", "--interrupted"],
        ["results", "--csv"], ["results", "--sort", "-seed"], ["results", "--sort", "command", "--json"], ["results", "--over", "seed"],
    ]
    for runs in ("runs/b", "runs/c", "runs/d"):
        _same(workdir, runs, forms)
    _same(workdir, "runs/a", [["status", "--json"], ["results"]])
    assert len(run_batchrun("status", "runs/b", cwd=workdir).stdout.splitlines()) == 3 + len(lines) + 1
