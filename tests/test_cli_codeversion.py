"""Which code each run used, through the real CLI: commit, dirty flag and diff per launch, the version per job, --snapshot.

A launch inside a git repository records its code version once in
`runs/<name>/code/` (the diff of a dirty tree stored once per distinct
diff) and each job's start record names it; `status`, `results` show it
and `status --other-code` lists the jobs run under another version than
the tree's now. `--snapshot` runs the jobs from a copy of the tracked files
made when the launch started, so an edit while it runs changes no job.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

from conftest import batchrun_cmd, read_metadata, run_batchrun, wait_for

from batchrun.executors.jobfiles import job_lock_held
from batchrun.runfile.file import job_id_of
from batchrun.store.journal import Journal


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _repo(workdir: Path) -> Path:
    _git(workdir, "init", "-q")
    _git(workdir, "config", "user.email", "t@example.com")
    _git(workdir, "config", "user.name", "t")
    (workdir / ".gitignore").write_text("runs/\n")
    (workdir / "prog.py").write_text('print("v1")\n')
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "first")
    return workdir


def test_a_launch_records_its_commit_dirty_flag_and_diff_once_per_distinct_diff(workdir: Path) -> None:
    repo = _repo(workdir)
    commit = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "exp.runfile").write_text("python3 prog.py --a=1\n")
    assert run_batchrun("launch", "exp.runfile", cwd=repo).returncode == 0
    code_dir = repo / "runs" / "exp" / "code"
    # The runfile is untracked: listed, not in the diff; the tree is clean otherwise.
    first = read_metadata(repo / "runs" / "exp")[job_id_of("python3 prog.py --a=1")]["code"]
    assert first == commit[:12]
    doc = json.loads((code_dir / f"{first}.json").read_text())
    assert doc["commit"] == commit and doc["dirty"] is False and doc["diff"] is None and doc["untracked"] == ["exp.runfile"]
    # Dirty: the diff is stored, once however many launches run under it.
    (repo / "prog.py").write_text('print("v2")\n')
    for _ in range(2):
        assert run_batchrun("launch", "exp.runfile", "--rerun-all", cwd=repo).returncode == 0
    second = read_metadata(repo / "runs" / "exp")[job_id_of("python3 prog.py --a=1")]["code"]
    assert isinstance(second, str) and second.startswith(commit[:12] + "-")
    assert sorted(p.name for p in code_dir.glob("*.diff")) == [f"{second}.diff"]
    assert '+print("v2")' in (code_dir / f"{second}.diff").read_text()
    assert json.loads((code_dir / f"{second}.json").read_text())["dirty"] is True
    # A job added now runs under it too; the old job, relaunched after a commit, under the new commit.
    (repo / "exp.runfile").write_text("python3 prog.py --a=1\npython3 prog.py --a=2\n")
    assert run_batchrun("launch", "exp.runfile", cwd=repo).returncode == 0
    meta = read_metadata(repo / "runs" / "exp")
    assert meta[job_id_of("python3 prog.py --a=2")]["code"] == second
    # status and results show it, as metadata.json does.
    rows = {row["job_id"]: row for row in csv.DictReader(io.StringIO(run_batchrun("status", "exp.runfile", "--csv", cwd=repo).stdout))}
    assert rows[job_id_of("python3 prog.py --a=2")]["code"] == second
    results = json.loads(run_batchrun("results", "exp.runfile", "--json", cwd=repo).stdout)
    assert {row["code"] for row in results} == {second}
    # --other-code: none while the tree is as they ran; both once it changes.
    listed = run_batchrun("status", "exp.runfile", "--other-code", "--csv", cwd=repo).stdout.splitlines()
    assert len(listed) == 1  # the header
    (repo / "prog.py").write_text('print("v3")\n')
    listed = run_batchrun("status", "exp.runfile", "--other-code", "--csv", cwd=repo).stdout.splitlines()
    assert len(listed) == 3
    assert run_batchrun("launch", "exp.runfile", "--rerun-all", cwd=repo).returncode == 0
    assert len(run_batchrun("status", "exp.runfile", "--other-code", "--csv", cwd=repo).stdout.splitlines()) == 1


def test_snapshot_runs_every_job_from_the_tree_as_it_was_when_the_launch_started(workdir: Path) -> None:
    repo = _repo(workdir)
    (repo / "prog.py").write_text('print("v2")\n')  # uncommitted: in the snapshot too
    go = repo / "go"
    first = f"while [ ! -f {go} ]; do sleep 0.05; done; python3 prog.py --a=1"
    (repo / "exp.runfile").write_text(f"{first}\npython3 prog.py --a=2\n")
    for snapshot, expected in ((True, "v2"), (False, "v3")):
        go.unlink(missing_ok=True)
        (repo / "prog.py").write_text('print("v2")\n')
        launch = subprocess.Popen(batchrun_cmd("launch", "exp.runfile", "-j", "1", "--rerun-all", *(["--snapshot"] if snapshot else [])),
                                  cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log_dir = repo / "runs" / "exp" / "logs" / job_id_of(first)
        wait_for(lambda log_dir=log_dir: (log_dir / "out.log").exists() and job_lock_held(log_dir), what="the first job to start")
        (repo / "prog.py").write_text('print("v3")\n')  # edited while the launch runs, before the second job starts
        go.touch()
        out, err = launch.communicate(timeout=60)
        assert launch.returncode == 0, out + err
        logs = repo / "runs" / "exp" / "logs"
        assert [(logs / job_id_of(line) / "out.log").read_text() for line in (first, "python3 prog.py --a=2")] == [f"{expected}\n", f"{expected}\n"]
    # The snapshot is a copy of the tracked files, kept in the runs directory under its version.
    version = read_metadata(repo / "runs" / "exp")[job_id_of(first)]["code"]
    copies = [p for p in (repo / "runs" / "exp" / "code").iterdir() if p.is_dir()]
    assert len(copies) == 1 and (copies[0] / "prog.py").read_text() == 'print("v2")\n' and not (copies[0] / "runs").exists()
    # Without --snapshot a launch records the tree as it found it: the edit it ran into is not seen (README says so).
    assert version == copies[0].name


def test_snapshot_outside_a_git_repository_is_refused_in_one_line(workdir: Path) -> None:
    (workdir / "exp.runfile").write_text("true\n")
    answer = run_batchrun("launch", "exp.runfile", "--snapshot", cwd=workdir)
    assert answer.returncode == 2 and answer.stderr.count("\n") == 1
    assert answer.stderr.startswith("batchrun: error: --snapshot needs a git repository: "), answer.stderr
    # Without it, a launch outside git runs and records no version.
    assert run_batchrun("launch", "exp.runfile", cwd=workdir).returncode == 0
    assert read_metadata(workdir / "runs" / "exp")[job_id_of("true")]["code"] is None


def test_the_journal_keeps_each_jobs_code_version_through_compaction(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.record_start("a", 1, 1.0, 0, "h", code="abc123def456")
    journal.record_end("a", 1, 0, 1.0, 2.0)
    journal.record_start("b", 1, 1.0, 0, "h", code="abc123def456-0123456789ab")
    journal.record_unfinished("b", 1, 1.0, 2.0)
    journal.record_start("c", 1, 1.0, 0, "h")
    journal.record_end("c", 1, 0, 1.0, 2.0)
    journal.record_start("d", 1, 1.0, 0, "h", holds="gpu=0,1;cpus=8", code="abc123def456")  # a running job: its S line stays
    journal.close()
    replayed = Journal(tmp_path)
    replayed.load()
    assert (replayed.records["d"].holds, replayed.records["d"].code) == ("gpu=0,1;cpus=8", "abc123def456")
    for _ in range(2):
        again = Journal(tmp_path)
        again.load()
        assert [again.records[j].code for j in "abc"] == ["abc123def456", "abc123def456-0123456789ab", None]
        again._lines = 10_000  # long enough to be compacted
        again.compact()
