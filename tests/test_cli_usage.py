"""What each run used, through the real CLI: peak memory and CPU seconds from the supervisor's wait4, everywhere a job is shown.

The supervisor writes `usage` (one line, no sampling) before the exit
record; the launch journals it (`U` line), and metadata.json, `status
--json`/`--csv`, `results` and `status --resources` show the same figures.
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
from pathlib import Path

from conftest import batchrun_cmd, exit_text, read_metadata, run_batchrun, wait_for

from batchrun.executors.jobfiles import read_usage
from batchrun.runfile.file import job_id_of
from batchrun.store.journal import Journal

ALLOC_200MB = 'python3 -c "b = b\\"x\\" * (200 << 20)"'
BUSY = 'python3 -c "import time; t = time.process_time(); [0 for _ in iter(lambda: time.process_time() - t < 0.3, False)]"'


def _write(workdir: Path, *commands: str) -> None:
    (workdir / "exp.runfile").write_text("".join(c + "\n" for c in commands))


def test_peak_memory_of_a_200_mb_job_is_recorded_within_10_percent_and_shown_alike(workdir: Path) -> None:
    _write(workdir, ALLOC_200MB, "true")
    assert run_batchrun("launch", "exp.runfile", "-j", "2", cwd=workdir).returncode == 0
    meta = read_metadata(workdir / "runs" / "exp")
    big, small = meta[job_id_of(ALLOC_200MB)], meta[job_id_of("true")]
    assert 0.9 * 200 * 1024 <= big["max_rss_kb"] <= 1.1 * 200 * 1024, big  # type: ignore[operator]
    assert small["max_rss_kb"] < 50 * 1024, small  # type: ignore[operator]
    assert isinstance(big["user_cpu_s"], float) and isinstance(big["sys_cpu_s"], float)
    # status --json, --csv and results show the figures metadata.json holds.
    status = json.loads(run_batchrun("status", "exp.runfile", "--json", cwd=workdir).stdout)["jobs"][job_id_of(ALLOC_200MB)]
    assert (status["max_rss_kb"], status["user_cpu_s"], status["sys_cpu_s"]) == (big["max_rss_kb"], big["user_cpu_s"], big["sys_cpu_s"])
    rows = {row["job_id"]: row for row in csv.DictReader(io.StringIO(run_batchrun("status", "exp.runfile", "--csv", cwd=workdir).stdout))}
    assert rows[job_id_of(ALLOC_200MB)]["max_rss_kb"] == str(big["max_rss_kb"])
    results = {row["job_id"]: row for row in json.loads(run_batchrun("results", "exp.runfile", "--json", cwd=workdir).stdout)}
    assert results[job_id_of(ALLOC_200MB)]["max_rss_kb"] == big["max_rss_kb"]
    assert results[job_id_of(ALLOC_200MB)]["sys_cpu_s"] == big["sys_cpu_s"]
    table = list(csv.DictReader(io.StringIO(run_batchrun("results", "exp.runfile", "--csv", cwd=workdir).stdout)))
    assert [row["max_rss_kb"] for row in table] == [str(big["max_rss_kb"]), str(small["max_rss_kb"])]


def test_cpu_seconds_of_a_busy_job_are_its_own(workdir: Path) -> None:
    _write(workdir, BUSY)
    assert run_batchrun("launch", "exp.runfile", cwd=workdir).returncode == 0
    entry = read_metadata(workdir / "runs" / "exp")[job_id_of(BUSY)]
    assert entry["user_cpu_s"] + entry["sys_cpu_s"] >= 0.3, entry  # type: ignore[operator]


def test_status_resources_gives_percentiles_and_a_request_that_fits(workdir: Path) -> None:
    _write(workdir, ALLOC_200MB, "true", "exit 3")
    assert run_batchrun("launch", "exp.runfile", cwd=workdir).returncode == 1
    answer = run_batchrun("status", "exp.runfile", "--resources", cwd=workdir)
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    assert lines[0] == "exp.runfile: 3 jobs ran to an end, 3 with their usage recorded"
    assert lines[1].split() == ["p50", "p95", "max"]
    assert [line.split()[0] for line in lines[2:5]] == ["peak", "runtime", "cpu"]
    doc = json.loads(run_batchrun("status", "exp.runfile", "--resources", "--json", cwd=workdir).stdout)
    top = max(entry["max_rss_kb"] for entry in read_metadata(workdir / "runs" / "exp").values()) / 1024  # type: ignore[type-var]
    assert doc["jobs"] == 3 and doc["memory_mb"]["max"] == top  # type: ignore[operator]
    # The 95th percentile with 25% headroom, rounded up to 64 MB: what to ask SLURM for next time.
    mem = int(doc["sbatch_args"].split()[0].removeprefix("--mem=").removesuffix("M"))
    assert mem % 64 == 0 and doc["memory_mb"]["p95"] * 1.25 <= mem < doc["memory_mb"]["p95"] * 1.25 + 64
    assert lines[-1] == f'hint (p95 + 25%): --sbatch-args "{doc["sbatch_args"]}"'
    # --state narrows it, as it narrows the table.
    failed = json.loads(run_batchrun("status", "exp.runfile", "--resources", "--json", "--state", "failed", cwd=workdir).stdout)
    assert failed["jobs"] == 1


def test_the_usage_of_a_job_that_ended_after_its_launch_was_killed_is_collected(workdir: Path) -> None:
    cmd = "while [ ! -f go ]; do sleep 0.05; done; " + ALLOC_200MB
    _write(workdir, cmd)
    launch = subprocess.Popen(batchrun_cmd("launch", "exp.runfile"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(cmd)
    wait_for(lambda: (log_dir / "out.log").exists(), what="the job to start")
    launch.send_signal(signal.SIGKILL)
    launch.wait(timeout=30)
    (workdir / "go").touch()
    wait_for(lambda: exit_text(log_dir) is not None, what="the job's exit record")
    usage = read_usage(log_dir, 1)
    assert usage is not None and usage[0] > 150 * 1024
    # Read-only: status settles it as the next launch will, usage included.
    status = json.loads(run_batchrun("status", "exp.runfile", "--json", cwd=workdir).stdout)["jobs"][job_id_of(cmd)]
    assert status["state"] == "succeeded" and status["max_rss_kb"] == usage[0]
    assert run_batchrun("launch", "exp.runfile", cwd=workdir).returncode == 0
    assert read_metadata(workdir / "runs" / "exp")[job_id_of(cmd)]["max_rss_kb"] == usage[0]


def test_the_journal_keeps_the_usage_of_the_last_attempt_through_replay_and_compaction(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.record_start("a", 1, 1.0, 0, "h")
    journal.record_usage("a", 1, (1000, 0.5, 0.25))
    journal.record_end("a", 1, 0, 1.0, 2.0)
    journal.record_start("b", 1, 1.0, 0, "h")
    journal.record_usage("b", 1, None)  # unknown: no line
    journal.record_end("b", 1, 0, 1.0, 2.0)
    for _ in range(1100):  # enough lines to be due a compaction
        journal.record_ignore(["c"])
    journal.close()
    again = Journal(tmp_path)
    again.load()
    assert (again.records["a"].max_rss_kb, again.records["a"].user_cpu_s, again.records["a"].sys_cpu_s) == (1000, 0.5, 0.25)
    assert again.records["b"].max_rss_kb is None
    again.compact()
    assert "U a 1 1000 0.500 0.250\n" in (tmp_path / "jobs.journal").read_text()
    third = Journal(tmp_path)
    third.load()
    assert third.records["a"].max_rss_kb == 1000 and third.records["a"].state == "succeeded"
    # A new attempt's start clears the last one's usage.
    third.open()
    third.record_start("a", 2, 3.0, 0, "h")
    third.close()
    assert third.records["a"].max_rss_kb is None


def test_the_report_shows_what_the_runs_used_by_parameter(workdir: Path) -> None:
    (workdir / "alloc.py").write_text('import sys\nmb = int(sys.argv[1].split("=")[1])\nb = b"x" * (mb << 20)\n')
    _write(workdir, "python3 alloc.py --mb=150", "python3 alloc.py --mb=1")
    assert run_batchrun("launch", "exp.runfile", cwd=workdir).returncode == 0
    answer = run_batchrun("report", "exp.runfile", "-o", "r.html", cwd=workdir)
    assert answer.returncode == 0, answer.stderr
    page = (workdir / "r.html").read_text()
    assert "<h2>What the runs used, by parameter</h2>" in page
    rows = re.findall(r"<tr><td>mb</td><td>(\d+)</td><td>1</td><td>(\d+) MB</td>", page)
    assert [value for value, _ in rows] == ["1", "150"]  # in value order
    memory = {value: int(mb) for value, mb in rows}
    assert memory["150"] - memory["1"] >= 120
