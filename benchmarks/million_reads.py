"""The read commands on a 1,000,000-line runfile: seconds and peak RSS, before and after (issue 28, item 1).

Builds, without running a million processes, two runs directories of one
runfile of `true N` lines (every 7th line `false N`), and one of a gridspec:

* `pending/`: a launch stopped before any job started (an empty journal,
  metadata.json of pending entries, the fingerprint of an interrupted launch);
* `finished/`: every job ended (succeeded, or failed for the `false` lines),
  a few with a metrics file, as a launch leaves it (with the fingerprint's
  summary and its snapshot, `.fingerprint.jobs`);
* `killed/`: the same records as a launch killed by kill -9 leaves them: the
  journal's every line (not compacted) and no fingerprint, so no summary and
  no snapshot: each read replays the whole journal; and the relaunch that
  follows a kill (`relaunch`, in a copy: it leaves a fingerprint);
* `grid/`: `grid.yml`, lr x wd x seed (10 seeds), its runfile written by
  `sweeps.gridspec.write_runfile` and every job ended (every 7th failed), as
  `finished/`; its reads name `grid.yml` (`GRID_READS`: `results --over seed`).

Both are written with batchrun's own store writers (`Journal.record_*`,
`MetadataView.rebuild` of `build_entry`s, `write_fingerprint`): the lines and
entries a launch writes. `--check` builds a small one the same way beside a
real launch of the same runfile and compares `batchrun status` of the two
(times left out). Then each read command runs under `wait4` (`harness.run_measured`):
`status` (its table, `--state failed`, `--json`, `--csv`, `--resources`,
`--other-code`), `failed`, `plan`, `results` (plain, `--json`, `--csv`,
`--sort` by a number and by a text, `--top`, `--best`), and of the gridspec
(`status`, `failed`, `plan`, `results`, `--over`), for each `--batchrun` given. `--runs-dir`
names each runs directory by path instead (`RUNS_DIR_READS`: `status runs/jobs`, ...).

    python benchmarks/million_reads.py --lines 1000000 \\
        --batchrun 'env PYTHONPATH=/work/main python -m batchrun' --batchrun 'python -m batchrun'
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import BenchError, run_measured

from batchrun.runfile.file import load_runfile
from batchrun.store.fingerprint import Fingerprint, SnapshotRef, journal_digest, summary_of, write_fingerprint
from batchrun.store.journal import Journal
from batchrun.store.ledger import Ledger
from batchrun.store.metadata import MetadataView, build_entry, render_entry
from batchrun.store.resume import snapshot_of
from batchrun.store.rundir import RunsDir

# Commands timed on each runs directory: (label, command, arguments after the target).
READS = (
    ("status", "status", []),
    ("status --state failed", "status", ["--state", "failed"]),
    ("status --json", "status", ["--json"]),
    ("status --csv", "status", ["--csv"]),
    ("status --resources", "status", ["--resources"]),
    ("status --other-code", "status", ["--other-code"]),
    ("failed", "failed", []),
    ("plan", "plan", []),
    ("results", "results", []),
    ("results --json", "results", ["--json"]),
    ("results --csv", "results", ["--csv"]),
    ("results --sort -runtime", "results", ["--sort", "-runtime"]),
    ("results --sort loss --top 5", "results", ["--sort", "loss", "--top", "5"]),
    ("results --best loss", "results", ["--best", "loss"]),
    ("results --sort command", "results", ["--sort", "command"]),
    ("results --sort -state --top 5", "results", ["--sort", "-state", "--top", "5"]),
)
# Commands timed on a gridspec's runs directory (`grid`: lr x wd x seed, 10 seeds, every job ended), its target grid.yml.
GRID_READS = (
    ("status", "status", []),
    ("failed", "failed", []),
    ("plan", "plan", []),
    ("results", "results", []),
    ("results --csv", "results", ["--csv"]),
    ("results --over seed", "results", ["--over", "seed"]),
    ("results --over seed --sort loss", "results", ["--over", "seed", "--sort", "loss"]),
    ("results --over seed --over wd --json", "results", ["--over", "seed", "--over", "wd", "--json"]),
)
# Commands timed on a runs directory given by path (`--runs-dir`): the forms that held every job until the runfile beside it was read.
RUNS_DIR_READS = (
    ("status", "status", []),
    ("status --json", "status", ["--json"]),
    ("status --csv", "status", ["--csv"]),
    ("failed", "failed", []),
    ("results", "results", []),
    ("results --csv", "results", ["--csv"]),
    ("results --json", "results", ["--json"]),
    ("results --sort -runtime", "results", ["--sort", "-runtime"]),
    ("results --over seed", "results", ["--over", "seed"]),
)
# The seeds of the gridspec, and its values of wd: lr has as many as make the lines.
SEEDS, WDS = 10, 100
# Every how many jobs one writes a metrics file.
METRICS_EVERY = 10_000


def runfile_lines(count: int) -> list[str]:
    return [f"false {i}" if i % 7 == 0 else f"true {i}" for i in range(1, count + 1)]


def build_grid(work: Path, lines: int) -> Path:
    """A gridspec `grid.yml` of about `lines` points (lr x wd x seed), its runfile `grid.runfile` and its runs directory, every job ended."""
    from batchrun.sweeps.gridspec import load_gridspec, write_runfile

    work.mkdir(parents=True, exist_ok=True)
    lrs = max(1, lines // (SEEDS * WDS))
    spec = work / "grid.yml"
    spec.write_text(
        "program: train.py\nmetric: {name: loss, goal: minimize}\nparameters:\n"
        f"  lr: {{values: [{', '.join(str(round(0.0001 * (i + 1), 6)) for i in range(lrs))}]}}\n"
        f"  wd: {{values: [{', '.join(str(i / 1000) for i in range(WDS))}]}}\n"
        f"  seed: {{values: [{', '.join(str(i) for i in range(SEEDS))}]}}\n"
    )
    write_runfile(load_gridspec(spec), work / "grid.runfile")
    return build(work, lines, finished=True, name="grid")


def build(work: Path, lines: int, finished: bool, name: str = "jobs", fingerprint: bool = True) -> Path:
    """A runfile `name`.runfile in `work` (`jobs.runfile`: written here) and its runs directory `runs/name`, every job pending or every job ended;
    without `fingerprint`, as a launch killed by kill -9 leaves it (nothing vouches for the records: no summary, no snapshot)."""
    work.mkdir(parents=True, exist_ok=True)
    runfile_path = work / f"{name}.runfile"
    if not runfile_path.exists():
        runfile_path.write_text("".join(f"{line}\n" for line in runfile_lines(lines)))
    runfile = load_runfile(runfile_path)
    runs = RunsDir(work / "runs" / name)
    runs.create()
    journal = Journal(runs.path)
    journal.load()
    journal.open()
    start = time.time() - 3 * 86400 - 600.0
    if finished:
        for n, job in enumerate(runfile.jobs):
            t = start + n * 0.001
            journal.record_start(job.job_id, 1, t, n % 2, "node1")
            journal.record_ref(job.job_id, 1, str(100000 + n % 30000))
            journal.record_usage(job.job_id, 1, (1800 + n % 300, 0.001, 0.002))
            journal.record_end(job.job_id, 1, 1 if job.command.startswith("false") or (name == "grid" and n % 7 == 0) else 0, t, t + 0.005 + (n % 50) * 0.01)
            if n % METRICS_EVERY == 0:
                log_dir = runs.log_dir(job.job_id)
                log_dir.mkdir(parents=True, exist_ok=True)
                (log_dir / "metrics.jsonl").write_text(json.dumps({"loss": 1.0 / (n + 1), "_step": 0}) + "\n")
    journal.sync()
    journal.close()
    records = journal.records
    logs = runs.logs
    MetadataView(runs.metadata).rebuild(
        (job.job_id, render_entry(job.job_id, build_entry(job, records.get(job.job_id), f"{logs}/{job.job_id}"))) for job in runfile.jobs
    )
    if not fingerprint:
        return runfile_path
    # As `launch.afterwards.leave_fingerprint` leaves it: the summary and the snapshot, when the journal is whole lines.
    ledger = Ledger(runfile.jobs, records)
    digest = journal_digest(journal.path)
    summary = snapshot = ref = None
    if digest is not None and digest[0] == journal.size:
        summary = summary_of(runfile, records, ledger.counts(), ledger.failed(), journal.path, journal.size, ledger, digest)
        snapshot = snapshot_of(runfile, records, ledger.rows, None, str(runs.logs))
        ref = SnapshotRef(token="", runfile_size=len(runfile.jobs.blob), journal_sha256=digest[1], journal_lines=digest[2])
    taken = Fingerprint.take(
        runs.path, journal.path, runs.metadata_name, runfile.digest, interrupted=not finished, summary=summary, snapshot=ref
    )
    assert taken is not None
    write_fingerprint(runs.path, taken, snapshot)
    return runfile_path


def _columns_without_times(text: str) -> list[str]:
    """A status table with its RUNTIME and START columns, its runs directory line and the launch's words left out."""
    kept = []
    for line in text.splitlines():
        if line.startswith("runs directory:"):
            continue
        words = line.split()
        kept.append(" ".join(words[:4]) if len(words) >= 4 else line)
    return kept


def check(batchrun: list[str], work: Path) -> None:
    """A small runs directory built here shows in `status` as a real launch of the same runfile leaves it."""
    real, built = work / "real", work / "built"
    for path in (real, built):
        shutil.rmtree(path, ignore_errors=True)
    built_runfile = build(built, 30, finished=True)
    real.mkdir(parents=True)
    shutil.copy(built_runfile, real / "jobs.runfile")
    subprocess.run([*batchrun, "launch", "jobs.runfile", "-j", "2", "-q"], cwd=real, check=False, capture_output=True)
    shown = []
    for path in (real, built):
        out = subprocess.run([*batchrun, "status", "jobs.runfile"], cwd=path, check=True, capture_output=True, text=True).stdout
        shown.append(_columns_without_times(out))
    if shown[0] != shown[1]:
        raise BenchError("status of the built runs directory differs from a real launch's:\n" + "\n".join(shown[0]) + "\n---\n" + "\n".join(shown[1]))
    print("check: status of a built runs directory reads as a real launch's (30 lines)", flush=True)


def measure(tools: list[list[str]], work: Path, label: str, reads: list[str] | None = None, runs_dir: bool = False) -> list[tuple[str, str, str, float, float]]:
    """Each read command, run by each batchrun in turn (interleaved: the machine's load falls on each alike);
    `runs_dir`: naming the runs directory (`runs/jobs`, `runs/grid`) instead of its runfile or gridspec."""
    rows = []
    if runs_dir:
        target, forms = ("runs/grid" if label == "grid" else "runs/jobs"), RUNS_DIR_READS
        label = f"{label} dir"
    else:
        target, forms = ("grid.yml" if label == "grid" else "jobs.runfile"), GRID_READS if label == "grid" else READS
    if label == "killed" and (reads is None or "relaunch" in reads):
        rows.extend(_relaunch(tools, work))
    for name, command, extra in forms:
        if reads is not None and name not in reads:
            continue
        if name.endswith("--over seed") and not label.startswith("grid"):
            continue  # only the gridspec's jobs have seeds
        for tool in tools:
            argv = [*tool, command, target, *extra]
            who = "after" if tool is tools[-1] else "before"
            try:
                run = run_measured(argv, work)
            except BenchError as err:
                print(f"  {label:<9} {name:<28} {who:<6} failed: {str(err).splitlines()[0]}", flush=True)
                continue
            print(f"  {label:<9} {name:<28} {who:<6} {run.seconds:8.2f} s {run.rss_mb:8.0f} MB", flush=True)
            rows.append((label, name, shlex.join(tool), run.seconds, run.rss_mb))
    return rows


def _relaunch(tools: list[list[str]], work: Path) -> list[tuple[str, str, str, float, float]]:
    """A relaunch after the kill -9 (`launch -q`: nothing left to run, every 7th job failed: exit 1), in a copy of the
    runs directory for each batchrun: it leaves a fingerprint and a compacted journal, which the reads must not find."""
    rows = []
    for tool in tools:
        who = "after" if tool is tools[-1] else "before"
        copy = work.with_name(work.name + "-relaunched")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(work, copy, symlinks=True)
        try:
            run = run_measured([*tool, "launch", "jobs.runfile", "-q"], copy, ok=(0, 1))
        except BenchError as err:
            print(f"  {'killed':<9} {'relaunch':<28} {who:<6} failed: {str(err).splitlines()[0]}", flush=True)
            continue
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        print(f"  {'killed':<9} {'relaunch':<28} {who:<6} {run.seconds:8.2f} s {run.rss_mb:8.0f} MB", flush=True)
        rows.append(("killed", "relaunch", shlex.join(tool), run.seconds, run.rss_mb))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/million-reads"))
    parser.add_argument("--batchrun", action="append", default=[], help="a batchrun command line (repeatable; default: this tree's)")
    parser.add_argument("--only", default="pending,finished,killed,grid", help="which runs directories: pending, finished, killed (finished, no fingerprint), grid (a gridspec's)")
    parser.add_argument("--reads", default=None, help="which commands, comma separated (default: all of READS)")
    parser.add_argument("--runs-dir", action="store_true", help="name each runs directory by path (RUNS_DIR_READS) instead of its runfile or gridspec")
    parser.add_argument("--check", action="store_true", help="first compare a small built runs directory with a real launch's")
    args = parser.parse_args()
    # The last one is "after"; any before it "before".
    tools = [shlex.split(text) for text in args.batchrun] or [[sys.executable, "-m", "batchrun"]]
    for tool in tools:
        print(f"{'after' if tool is tools[-1] else 'before'}: {shlex.join(tool)}", flush=True)
    if args.check:
        check(tools[-1], args.work / "check")
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results: list[tuple[str, str, str, float, float]] = []
    for label in args.only.split(","):
        where = args.work / f"{label}-{args.lines}"
        if not (where / "runs" / ("grid" if label == "grid" else "jobs") / "metadata.json").exists():
            began = time.perf_counter()
            if label == "grid":
                build_grid(where, args.lines)
            else:
                build(where, args.lines, finished=label != "pending", fingerprint=label != "killed")
            print(f"built {where} in {time.perf_counter() - began:.0f} s", flush=True)
        results.extend(measure(tools, where, label, args.reads.split(",") if args.reads else None, args.runs_dir))
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
