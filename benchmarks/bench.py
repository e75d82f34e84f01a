#!/usr/bin/env python3
"""Benchmark batchrun against GNU parallel and xargs, run by hand (not by the tests).

Measures, each several times in one run, and prints medians and ratios to the
best peer measured in the same run:

1. throughput: trivial jobs (`true N`) at -j 2 and at -j 8 from a fresh directory, and at
   -j 2 right after a runs directory was deleted (section `deleted`, run last); GNU parallel
   with `--joblog --results DIR`, the same work as batchrun's (a journal line, and a directory
   with the job's stdout and stderr, per job), xargs with none of it;
2. no-op resume of a finished runfile;
3. partial resume: the same, all but 100 lines finished;
4. batchrun's peak RSS for the big launch and its resumes;
5. sweep generation of a 1,000,000-point grid, its time and peak RSS;
6. overhead per job beyond the job itself, derived from 1 and 3;
7. the 1,000,000-line runfile of that sweep: `batchrun plan` of it with nothing run yet
   (section `plan`), then (section `million`) its launch's peak RSS, a no-op relaunch and
   `batchrun status`;
8. `batchrun results` on a 100,000-job sweep with metrics, with and without the metrics cache
   (section `results`, see results_bench.py; `--results-baseline SRC` adds another source tree's).

Every tool runs through `subprocess` in a fresh directory per repetition, all
under one temporary directory removed only at the very end: deleting tens of
thousands of directories slows file creation on some machines for about a
minute, so nothing is deleted between measurements. A child's peak RSS and
CPU time come from `os.wait4`, which reports on that child alone (plus the
jobs it reaped), unlike `RUSAGE_CHILDREN`. The script installs nothing; it
checks for GNU parallel and xargs and skips a missing one with a note.

The results table is printed and, unless --no-write or --smoke, appended as a
dated section to benchmarks/RESULTS.md, which keeps every earlier section.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import harness
from harness import (
    FULL,
    JOB_ALONE_MAX,
    SECTIONS,
    SMOKE,
    WIDE_WORKERS,
    WORKERS,
    Bench,
    BenchError,
    Run,
    Sizes,
    _first_line,
    _product,
    become_subreaper,
    check_joblog,
    check_ran,
    count_lines,
    detect_peers,
    log_dirs_cost,
    parallel_env,
    progress,
    run_measured,
    runfile_text,
    synthetic_joblog,
    trivial_jobs,
)
from report import RESULTS_PATH, append_results, build_rows, machine_description, report
from results_bench import bench_results

# --- 1. throughput -----------------------------------------------------------------------------

def bench_throughput(bench: Bench) -> None:
    n = bench.sizes.jobs
    text = runfile_text(trivial_jobs(1, n))
    alone = min(n, JOB_ALONE_MAX)
    for rep in range(1, bench.sizes.repeat + 1):
        # The job itself: the same `sh -c 'true N'`, run one after another by a shell loop.
        work = bench.fresh_dir("job-alone")
        loop = f'i=1; while [ $i -le {alone} ]; do sh -c "true $i"; i=$((i+1)); done'
        run = run_measured(["sh", "-c", loop], work)
        bench.record("job_alone", "sh", Run(run.seconds / alone, run.rss_mb, run.cpu_seconds / alone, ""))
        progress(f"throughput {rep}/{bench.sizes.repeat}: job alone {run.seconds / alone * 1e3:.2f} ms")
        files = log_dirs_cost(bench.fresh_dir("log-dirs"))
        bench.record("log_dirs", "python", files)
        progress(f"throughput {rep}/{bench.sizes.repeat}: a log directory and two files {files.seconds * 1e3:.3f} ms")
        for measure, workers in (("throughput", WORKERS), ("throughput_wide", WIDE_WORKERS)):
            for tool in ("batchrun", "parallel", "xargs"):
                if tool == "batchrun" or tool in bench.peers:
                    work = run_trivial(bench, tool, text, workers, measure, rep)
                    if tool == "batchrun":
                        bench.deletable.append(work / "runs")


def run_trivial(bench: Bench, tool: str, text: str, workers: int, measure: str, rep: int,
                label: str = "") -> Path:
    """One throughput measurement of `tool` on the trivial jobs in `text`; returns its directory."""
    n = text.count("\n")
    work = bench.fresh_dir(f"{label or measure}-{tool}")
    runfile = work / "jobs.runfile"
    runfile.write_text(text)
    if tool == "batchrun":
        run = run_measured([*bench.batchrun, "launch", runfile.name, "-j", str(workers), "-q"], work)
        check_ran(bench, run, n, measure)
    elif tool == "parallel":
        # The same work as batchrun's: a journal line per job (`--joblog`), and a directory with
        # the job's stdout and stderr in files per job (`--results`), as batchrun's logs/ keeps.
        run = run_measured(["parallel", "-j", str(workers), "--joblog", "joblog", "--results", "results"], work,
                           stdin=runfile, env=parallel_env())
        check_joblog(work / "joblog", n, measure)
    else:
        run = run_measured(["xargs", "-P", str(workers), "-I{}", "sh", "-c", "{}"], work, stdin=runfile)
    _record_rate(bench, measure, tool, run, n, rep)
    return work


def bench_deleted(bench: Bench) -> None:
    """Throughput right after a runs directory of as many jobs was deleted (`rm -rf`)."""
    n = bench.sizes.jobs
    text = runfile_text(trivial_jobs(1, n))
    bench.notes.append(f"`deleted`: each runner starts right after `rm -rf` of a runs directory of {n:,} jobs "
                       "(from an earlier batchrun run of the same jobs); it ran after every other section.")
    for rep in range(1, bench.sizes.repeat + 1):
        for tool in ("batchrun", "xargs"):
            if tool != "batchrun" and tool not in bench.peers:
                continue
            if not bench.deletable:
                victim = run_trivial(bench, "batchrun", text, WORKERS, "victim", rep, label="victim")
                bench.results["victim"].clear()
                bench.deletable.append(victim / "runs")
            shutil.rmtree(bench.deletable.pop())
            work = run_trivial(bench, tool, text, WORKERS, "deleted", rep)
            if tool == "batchrun":
                bench.deletable.append(work / "runs")


def _record_rate(bench: Bench, measure: str, tool: str, run: Run, n: int, rep: int) -> None:
    bench.record(measure, tool, run)
    progress(f"{measure} {rep}/{bench.sizes.repeat}: {tool} {n / run.seconds:,.0f} jobs/s, "
             f"{run.rss_mb:.0f} MB")


# --- 2, 3, 4. resume and memory ----------------------------------------------------------------

def bench_resume(bench: Bench) -> None:
    n, pending = bench.sizes.resume_lines, bench.sizes.pending
    lines = trivial_jobs(1, n)
    text = runfile_text(lines)

    # One real launch: its finished runs directory serves every batchrun resume below.
    big = bench.fresh_dir("launch-batchrun")
    (big / "jobs.runfile").write_text(text)
    progress(f"launching {n:,} jobs once with batchrun (~{n / 1000:.0f} s at 1,000 jobs/s)")
    run = run_measured([*bench.batchrun, "launch", "jobs.runfile", "-j", str(WORKERS), "-q"], big)
    check_ran(bench, run, n, "big launch")
    bench.record("big_launch", "batchrun", run)
    progress(f"big launch: {n / run.seconds:,.0f} jobs/s, {run.rss_mb:.0f} MB")
    runs_dir = big / "runs" / "jobs"
    bench.notes.append(
        f"The {n:,}-line batchrun launch ran once; its finished runs directory is reused by every "
        f"batchrun resume (`--accounting_dir`). GNU parallel's finished joblogs for the resumes are "
        f"synthetic ({n:,} rows in its --joblog format, exit value 0), not from a real run.")

    noop_joblog = synthetic_joblog(lines)
    partial_joblog = synthetic_joblog(lines[: n - pending])
    for rep in range(1, bench.sizes.repeat + 1):
        work = bench.fresh_dir("noop-batchrun")
        (work / "jobs.runfile").write_text(text)
        run = run_measured([*bench.batchrun, "launch", "jobs.runfile", "-j", str(WORKERS), "-q",
                            "--accounting_dir", str(runs_dir)], work)
        check_ran(bench, run, 0, "no-op resume")
        _record_seconds(bench, "noop", "batchrun", run, rep)

        if "parallel" in bench.peers:
            work = bench.fresh_dir("noop-parallel")
            (work / "jobs.runfile").write_text(text)
            (work / "joblog").write_text(noop_joblog)
            run = run_measured(["parallel", "-j", str(WORKERS), "--resume", "--joblog", "joblog"],
                               work, stdin=work / "jobs.runfile", env=parallel_env())
            check_joblog(work / "joblog", n, "no-op resume")
            _record_seconds(bench, "noop", "parallel", run, rep)

    for rep in range(1, bench.sizes.repeat + 1):
        # Each repetition replaces the last `pending` lines with lines never run before, so the
        # shared runs directory again holds all but `pending` of the runfile's lines finished.
        fresh = trivial_jobs(n + 1 + (rep - 1) * pending, pending)
        work = bench.fresh_dir("partial-batchrun")
        (work / "jobs.runfile").write_text(runfile_text(lines[: n - pending] + fresh))
        run = run_measured([*bench.batchrun, "launch", "jobs.runfile", "-j", str(WORKERS), "-q",
                            "--accounting_dir", str(runs_dir)], work)
        check_ran(bench, run, pending, "partial resume")
        _record_seconds(bench, "partial", "batchrun", run, rep)

        if "parallel" in bench.peers:
            work = bench.fresh_dir("partial-parallel")
            (work / "jobs.runfile").write_text(text)
            (work / "joblog").write_text(partial_joblog)
            run = run_measured(["parallel", "-j", str(WORKERS), "--resume", "--joblog", "joblog"],
                               work, stdin=work / "jobs.runfile", env=parallel_env())
            check_joblog(work / "joblog", n, "partial resume")
            _record_seconds(bench, "partial", "parallel", run, rep)


def _record_seconds(bench: Bench, measure: str, tool: str, run: Run, rep: int) -> None:
    bench.record(measure, tool, run)
    progress(f"{measure} {rep}/{bench.sizes.repeat}: {tool} {run.seconds:.2f} s, {run.rss_mb:.0f} MB")


# --- 5. sweep ----------------------------------------------------------------------------------

def gridspec_text(grid: Sequence[int], program: str = "python3 train.py") -> str:
    """A gridspec with len(grid) parameters: the first two as value lists, the rest as ranges."""
    out = [f"program: {program}", "parameters:"]
    for index, points in enumerate(grid):
        name = "abcdefgh"[index]
        if index < 2:
            out += [f"  {name}:", f"    values: [{', '.join(str(v) for v in range(points))}]"]
        else:
            out += [f"  {name}:", "    min: 0", f"    max: {points}", "    step: 1"]
    return "\n".join(out) + "\n"


def bench_sweep(bench: Bench) -> None:
    for rep in range(1, bench.sizes.repeat + 1):
        for measure, grid in (("sweep", bench.sizes.sweep_grid), ("sweep_small", bench.sizes.sweep_small_grid)):
            points = _product(grid)
            work = bench.fresh_dir(measure)
            (work / "spec.yml").write_text(gridspec_text(grid))
            run = run_measured([*bench.batchrun, "sweep", "spec.yml", "-o", "points.runfile"], work)
            written = count_lines(work / "points.runfile")
            if written != points:
                raise BenchError(f"sweep of {points:,} points wrote {written:,} lines")
            bench.record(measure, "batchrun", run)
            progress(f"{measure} {rep}/{bench.sizes.repeat}: {points:,} points in {run.seconds:.2f} s, "
                     f"{run.rss_mb:.0f} MB")


# --- 7. a million-line runfile --------------------------------------------------------------

def million_runfile(bench: Bench, label: str) -> tuple[Path, int]:
    """A fresh directory holding `points.runfile`, the runfile of a big sweep of trivial jobs."""
    grid = bench.sizes.million_grid
    points = _product(grid)
    work = bench.fresh_dir(label)
    # `true` ignores its flags: every point is a trivial job, so the launch measures batchrun.
    (work / "points.yml").write_text(gridspec_text(grid, program='"true"'))
    run_measured([*bench.batchrun, "sweep", "points.yml", "-o", "points.runfile"], work)
    if count_lines(work / "points.runfile") != points:
        raise BenchError(f"the sweep of {points:,} points wrote the wrong number of lines")
    return work, points


def bench_plan(bench: Bench) -> None:
    """`batchrun plan` of the big sweep's runfile with nothing run yet: every line pending."""
    work, points = million_runfile(bench, "plan")
    for rep in range(1, bench.sizes.repeat + 1):
        run = run_measured([*bench.batchrun, "plan", "points.runfile"], work)
        if f"new, to run: {points}" not in run.stdout:
            raise BenchError(f"plan of {points:,} pending lines did not list them all as new: {run.stdout[-500:]!r}")
        _record_seconds(bench, "million_plan", "batchrun", run, rep)


def bench_million(bench: Bench) -> None:
    """Launch the runfile of a big sweep once, then time no-op relaunches and `status` of it."""
    work, points = million_runfile(bench, "million")
    progress(f"launching {points:,} jobs once with batchrun (~{points / 1000 / 60:.0f} min at 1,000 jobs/s)")
    launch = [*bench.batchrun, "launch", "points.runfile", "-j", str(WORKERS), "-q"]
    run = run_measured(launch, work)
    check_ran(bench, run, points, "million launch")
    bench.record("million_launch", "batchrun", run)
    progress(f"million launch: {points / run.seconds:,.0f} jobs/s, {run.rss_mb:.0f} MB")
    for rep in range(1, bench.sizes.repeat + 1):
        run = run_measured(launch, work)
        check_ran(bench, run, 0, "million no-op relaunch")
        _record_seconds(bench, "million_noop", "batchrun", run, rep)
        run = run_measured([*bench.batchrun, "status", "points.runfile"], work)
        _record_seconds(bench, "million_status", "batchrun", run, rep)


# --- main --------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark batchrun against GNU parallel and xargs (see benchmarks/README.md). "
                    "Example: python benchmarks/bench.py --smoke")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and 1 repetition, a quick check; implies --no-write")
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions of each measurement (default 3)")
    parser.add_argument("--jobs", type=int, metavar="N", help="trivial jobs per throughput run (default 10,000)")
    parser.add_argument("--only", metavar="LIST", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (memory and resume share "
                             "one big launch)")
    parser.add_argument("--batchrun", metavar="CMD", help="how to run batchrun (default: this Python -m batchrun)")
    parser.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="remark for the RESULTS.md heading, e.g. 'noisy: shared machine'")
    parser.add_argument("--results-baseline", type=Path, metavar="SRC", default=None,
                        help="section results: also time the batchrun package under SRC (put on PYTHONPATH), "
                             "e.g. from `git archive main batchrun | tar -x -C SRC`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    if unknown := only - set(SECTIONS):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    args.only = only
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def warm_up(batchrun: Sequence[str]) -> None:
    """Let Python write the package's bytecode, as on a user's machine, and write it now: a tiny launch and each read command.

    With PYTHONDONTWRITEBYTECODE set (some sandboxes and CI images set it),
    every batchrun start compiles its modules again: about 0.25 s, which is
    half of a small relaunch. pip writes the bytecode as it installs.
    """
    import os  # noqa: PLC0415

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="batchrun-warm-") as tmp:
        Path(tmp, "warm.runfile").write_text("true 1\ntrue 2\n")
        for command in (["launch", "-q"], ["launch", "-q"], ["status"], ["plan"], ["results"]):
            subprocess.run([*batchrun, command[0], "warm.runfile", *command[1:]], cwd=tmp, capture_output=True, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.repeat is not None:
        sizes = Sizes(**{**sizes.__dict__, "repeat": args.repeat})
    if args.jobs is not None:
        sizes = Sizes(**{**sizes.__dict__, "jobs": args.jobs})
    batchrun = shlex.split(args.batchrun) if args.batchrun else [sys.executable, "-m", "batchrun"]
    notes: list[str] = []
    peers = detect_peers(notes)
    for n in notes:
        progress(n)
    if not _first_line([*batchrun, "--version"]):
        progress(f"cannot run batchrun as `{shlex.join(batchrun)}`; pass --batchrun CMD")
        return 2

    warm_up(batchrun)
    harness.SUBREAPER = become_subreaper()
    if not harness.SUBREAPER:
        notes.append("Peak RSS figures include this script's own peak (a child starts as its copy): "
                     "only Linux lets the script measure children started from a small process.")
    root = Path(tempfile.mkdtemp(prefix="batchrun-bench-"))
    bench = Bench(root, sizes, batchrun, peers, notes)
    progress(f"working in {root}")
    try:
        if "throughput" in args.only:
            bench_throughput(bench)
        if args.only & {"resume", "memory"}:
            bench_resume(bench)
        if "sweep" in args.only:
            bench_sweep(bench)
        if "plan" in args.only:
            bench_plan(bench)
        if "million" in args.only:
            bench_million(bench)
        if "results" in args.only:
            bench_results(bench, args.results_baseline)
        if "deleted" in args.only:
            bench_deleted(bench)
    except BenchError as err:
        progress(f"error: {err}")
        return 1
    finally:
        if args.keep:
            progress(f"kept {root}")
        else:
            progress(f"removing {root}")
            shutil.rmtree(root, ignore_errors=True)

    rows = build_rows(bench, full_size=not args.smoke)
    machine = machine_description(bench)
    section = report(bench, rows, machine, argv, args.note, args.smoke)
    print(section)
    if args.no_write or args.smoke:
        progress("not written to benchmarks/RESULTS.md (--no-write or --smoke)")
    else:
        append_results(section)
        progress(f"appended to {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
