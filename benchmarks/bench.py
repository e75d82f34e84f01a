#!/usr/bin/env python3
"""Benchmark batchrun against GNU parallel and xargs, run by hand (not by the tests).

Measures, each several times in one run, and prints medians and ratios to the
best peer measured in the same run:

1. throughput: trivial jobs (`true N`) at -j 2 and at -j 8 from a fresh directory, and at
   -j 2 right after a runs directory was deleted (section `deleted`, run last);
2. no-op resume of a finished runfile;
3. partial resume: the same, all but 100 lines finished;
4. batchrun's peak RSS for the big launch and its resumes;
5. sweep generation of a 1,000,000-point grid, its time and peak RSS;
6. overhead per job beyond the job itself, derived from 1 and 3;
7. the 1,000,000-line runfile of that sweep (section `million`): its launch's peak RSS, a
   no-op relaunch and `batchrun status`.

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
import datetime as dt
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO / "benchmarks" / "RESULTS.md"

# Every runner gets the same number of workers; the targets were set at 2 on a 2-core machine.
WORKERS = 2
# `deleted` runs last: deleting a big runs directory slows file creation for about a minute.
SECTIONS = ("throughput", "resume", "memory", "sweep", "million", "deleted")
# The wider throughput row: more workers than cores, as users do to hide I/O waits.
WIDE_WORKERS = 8
# "Flat" sweep memory: the big grid may peak at most this much above a grid 100x smaller.
FLAT_MEMORY_MB = 20.0
# The job alone is timed over at most this many serial `sh -c` runs: enough for a stable mean.
JOB_ALONE_MAX = 2_000

# Set in main(): whether measured commands run as grandchildren (see run_measured).
SUBREAPER = False

RESULTS_HEADER = """\
# Benchmark results

Written by `benchmarks/bench.py` (see `benchmarks/README.md`); each run appends a dated section,
newest last. Never delete old sections: they are the history. Compare ratios measured in one run,
not absolute numbers across machines or days.
"""


class BenchError(Exception):
    """A measured command failed or produced the wrong result."""


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is."""

    jobs: int  # throughput: trivial jobs per run
    resume_lines: int  # lines of the runfile that is launched once and resumed
    pending: int  # unfinished lines in the partial resume
    sweep_grid: tuple[int, ...]  # points per parameter of the big sweep
    sweep_small_grid: tuple[int, ...]  # a grid 100x smaller, to show memory stays flat
    repeat: int
    million_grid: tuple[int, ...]  # the sweep whose runfile is launched, resumed and queried


FULL = Sizes(10_000, 100_000, 100, (10, 10, 100, 100), (10, 10, 10, 10), 3, (10, 10, 100, 100))
SMOKE = Sizes(200, 2_000, 100, (10, 10, 10, 10), (10, 10, 10, 1), 1, (10, 10, 10, 1))


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    seconds: float
    rss_mb: float  # peak RSS of the child (or of a job it reaped, if larger)
    cpu_seconds: float  # user + system time of the child and the jobs it reaped
    stdout: str


@dataclass
class Samples:
    """Repeated measurements of one thing by one tool."""

    runs: list[Run] = field(default_factory=list)

    def median(self, key: Callable[[Run], float]) -> float:
        return statistics.median(key(run) for run in self.runs)

    def spread(self, key: Callable[[Run], float]) -> tuple[float, float]:
        values = [key(run) for run in self.runs]
        return min(values), max(values)


@dataclass
class Bench:
    """State shared by the measurements of one benchmark run."""

    root: Path
    sizes: Sizes
    batchrun: list[str]
    peers: dict[str, str]  # available peer name -> version
    notes: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Samples]] = field(default_factory=dict)
    # Finished runs directories that `deleted` may remove (each of `sizes.jobs` jobs).
    deletable: list[Path] = field(default_factory=list)
    _dirs: int = 0

    def fresh_dir(self, label: str) -> Path:
        """A new, empty directory under the run's temporary root."""
        self._dirs += 1
        path = self.root / f"{self._dirs:03d}-{label}"
        path.mkdir()
        return path

    def record(self, measure: str, tool: str, run: Run) -> None:
        self.results.setdefault(measure, {}).setdefault(tool, Samples()).runs.append(run)

    def samples(self, measure: str, tool: str) -> Samples | None:
        return self.results.get(measure, {}).get(tool)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# Runs the measured command as sh's child, so that its peak RSS starts from sh's few pages:
# exec records the exec'ing process's old peak RSS in the new program's ru_maxrss, and a
# child of this script starts as a copy of this script (tens of MB). The child waits on fd 3
# until sh has exited (sh would reap it if it ended first, taking its rusage along); `trap -`
# undoes the SIGINT/SIGQUIT ignore sh gives background jobs; its stdout must not hold the pipe
# that `$!` goes back through, which tells us whom to wait for.
_LAUNCHER = ('in=$1 out=$2 err=$3; shift 3; '
             '( trap - INT QUIT; read _ <&3; exec "$@" <"$in" >"$out" 2>"$err" 3<&- ) >/dev/null & echo $!')
# prctl option making orphaned descendants our children (Linux 3.4+), so we can wait4 sh's child.
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so the launcher's child can be waited for; Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def run_measured(argv: Sequence[str], cwd: Path, stdin: Path | None = None,
                 env: dict[str, str] | None = None) -> Run:
    """Run argv in cwd; return its wall time, peak RSS and CPU time.

    Raises:
        BenchError: the command exited non-zero.
    """
    out_path, err_path = cwd / "_bench.stdout", cwd / "_bench.stderr"
    stdin_path = str(stdin or os.devnull)
    if SUBREAPER:
        gate, release = os.pipe()
        try:
            launcher = subprocess.run(
                ["/bin/sh", "-c", f"exec 3<&{gate}; {_LAUNCHER}", "sh", stdin_path, str(out_path),
                 str(err_path), *argv],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=(gate,),
                check=False)
        finally:
            os.close(gate)
        if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
            os.close(release)
            raise BenchError(f"could not start {shlex.join(argv)} through /bin/sh")
        pid = int(launcher.stdout)
        start = time.perf_counter()
        os.close(release)  # the child now execs the command
    else:
        start = time.perf_counter()
        with open(out_path, "wb") as out, open(err_path, "wb") as err, open(stdin_path, "rb") as inp:
            pid = subprocess.Popen(argv, cwd=cwd, stdin=inp, stdout=out, stderr=err, env=env).pid
    # wait4 rather than waitpid or RUSAGE_CHILDREN: its rusage is this child's alone.
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    _reap_strays()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = err_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"{shlex.join(argv)} (in {cwd}) exited {code}:\n{tail}")
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Run(seconds, rss_bytes / 2**20, usage.ru_utime + usage.ru_stime, _tail(out_path))


def _tail(path: Path, size: int = 1 << 16) -> str:
    """The end of a file: enough for batchrun's summary, never a million-row status table."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode(errors="replace")


def _reap_strays() -> None:
    """Reap descendants orphaned to us (jobs a runner left behind), so no zombies pile up."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def runfile_text(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def trivial_jobs(first: int, count: int) -> list[str]:
    return [f"true {i}" for i in range(first, first + count)]


def synthetic_joblog(commands: Sequence[str]) -> str:
    """GNU parallel's --joblog for commands that all ran and exited 0, in its exact format."""
    start = time.time() - len(commands) * 0.004
    rows = [f"{seq}\t:\t{start + seq * 0.004:.3f}\t{0.003:10.3f}\t0\t0\t0\t0\t{command}\n"
            for seq, command in enumerate(commands, 1)]
    return "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n" + "".join(rows)


def check_ran(bench: Bench, run: Run, expected: int, what: str) -> None:
    """Warn when batchrun's summary does not say that `expected` jobs ran."""
    match = re.search(r"\((\d+) ran now\)", run.stdout)
    if match is None or int(match.group(1)) != expected:
        note = f"{what}: expected batchrun to run {expected} jobs; its summary says: {run.stdout.strip()!r}"
        progress("WARNING " + note)
        bench.notes.append("WARNING " + note)


def check_joblog(path: Path, expected_rows: int, what: str) -> None:
    rows = count_lines(path) - 1
    if rows != expected_rows:
        raise BenchError(f"{what}: GNU parallel's joblog has {rows} rows, expected {expected_rows}")


# --- peers -------------------------------------------------------------------------------------

def detect_peers(notes: list[str]) -> dict[str, str]:
    """Find GNU parallel and xargs; return name -> version of those usable, noting the rest."""
    peers: dict[str, str] = {}
    if shutil.which("parallel") is None:
        notes.append("GNU parallel not found: its columns are skipped "
                     "(Debian/Ubuntu: `apt-get install parallel`).")
    else:
        first = _first_line(["parallel", "--version"])
        if first.startswith("GNU parallel"):
            peers["parallel"] = first
        else:
            notes.append("`parallel` on PATH is not GNU parallel (moreutils' perhaps): skipped; "
                         "install the Debian package `parallel`.")
    if shutil.which("xargs") is None:
        notes.append("xargs not found: its columns are skipped (Debian/Ubuntu: package `findutils`).")
    else:
        peers["xargs"] = _first_line(["xargs", "--version"]) or "xargs (version unknown)"
    return peers


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""


def parallel_env() -> dict[str, str]:
    # GNU parallel otherwise picks the shell of an ancestor process (bash here); batchrun and
    # xargs run every job with /bin/sh, so parallel does too.
    return {**os.environ, "PARALLEL_SHELL": "/bin/sh"}


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
        run = run_measured(["parallel", "-j", str(workers), "--joblog", "joblog"], work, stdin=runfile,
                           env=parallel_env())
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

def bench_million(bench: Bench) -> None:
    """Launch the runfile of a big sweep once, then time no-op relaunches and `status` of it."""
    grid = bench.sizes.million_grid
    points = _product(grid)
    work = bench.fresh_dir("million")
    # `true` ignores its flags: every point is a trivial job, so the launch measures batchrun.
    (work / "points.yml").write_text(gridspec_text(grid, program='"true"'))
    run_measured([*bench.batchrun, "sweep", "points.yml", "-o", "points.runfile"], work)
    if count_lines(work / "points.runfile") != points:
        raise BenchError(f"the sweep of {points:,} points wrote the wrong number of lines")
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


def _product(grid: Sequence[int]) -> int:
    total = 1
    for points in grid:
        total *= points
    return total


# --- the table ---------------------------------------------------------------------------------

TOOLS = ("batchrun", "parallel", "xargs")
TOOL_HEADERS = ("batchrun", "GNU parallel", "xargs -P")


@dataclass
class Row:
    """One line of the results table."""

    measure: str
    cells: dict[str, str]  # tool -> formatted value
    best_peer: str = ""
    speed: str = ""  # batchrun's speed relative to the best peer (>1: batchrun faster)
    target: str = ""
    met: str = ""


def _cell(samples: Samples | None, key: Callable[[Run], float], fmt: str) -> str:
    if samples is None:
        return "—"
    value = samples.median(key)
    if len(samples.runs) == 1:
        return format(value, fmt)
    low, high = samples.spread(key)
    return f"{format(value, fmt)} ({format(low, fmt)}-{format(high, fmt)})"


def _verdict(ok: bool, full_size: bool) -> str:
    if not full_size:
        return "n/a (smoke sizes)"
    return "yes" if ok else "**no**"


def _seconds(run: Run) -> float:
    return run.seconds


def _rss(run: Run) -> float:
    return run.rss_mb


# How many times faster a measurement `a` is than `b`, for rates and for durations.
def _higher_faster(a: float, b: float) -> float:
    return a / b


def _lower_faster(a: float, b: float) -> float:
    return b / a


def _under_200(mb: float) -> bool:
    return mb < 200


def build_rows(bench: Bench, full_size: bool) -> list[Row]:
    """The results table: one row per measure, batchrun against the fastest peer where there is one."""
    s, results, rows = bench.sizes, bench.results, []

    def add(measure: str, label: str, key: Callable[[Run], float], fmt: str,
            faster: Callable[[float, float], float] | None = None, target: str = "",
            passes: Callable[[float], bool] | None = None) -> None:
        per = results.get(measure)
        if not per:
            return
        row = Row(label, {t: _cell(per.get(t), key, fmt) for t in TOOLS}, target=target)
        peers = {t: sm.median(key) for t, sm in per.items() if t != "batchrun"}
        if "batchrun" in per:
            mine = per["batchrun"].median(key)
            if faster is not None and peers:
                row.best_peer = max(peers, key=lambda t: faster(peers[t], mine))
                row.speed = f"{faster(mine, peers[row.best_peer]):.2f}x"
            if passes is not None:
                row.met = _verdict(passes(mine), full_size)
        rows.append(row)

    def rate(run: Run) -> float:
        return s.jobs / run.seconds

    def vs_xargs(measure: str, share: float) -> Callable[[float], bool] | None:
        xargs = results.get(measure, {}).get("xargs")
        return None if xargs is None else (lambda mine: mine >= share * xargs.median(rate))

    def vs_parallel(measure: str, times: float) -> Callable[[float], bool]:
        parallel = results.get(measure, {}).get("parallel")
        peer = parallel.median(_seconds) if parallel else float("inf")
        return lambda mine: mine < 0.5 and (parallel is None or peer / mine >= times)

    has_xargs = "xargs" in results.get("throughput", {})
    add("throughput", f"1. throughput, {s.jobs:,} trivial jobs at -j {WORKERS}, fresh directory (jobs/s)", rate,
        ",.0f", _higher_faster, "≥ 1.0x xargs", vs_xargs("throughput", 1.0))
    add("throughput", "   peak RSS of that run (MB)", _rss, ".0f")
    add("deleted", f"1. throughput, {s.jobs:,} trivial jobs at -j {WORKERS}, right after a runs directory "
        "was deleted (jobs/s)", rate, ",.0f", _higher_faster, "≥ 0.8x xargs", vs_xargs("deleted", 0.8))
    add("throughput_wide", f"1. throughput, {s.jobs:,} trivial jobs at -j {WIDE_WORKERS} (jobs/s)", rate,
        ",.0f", _higher_faster)
    add("noop", f"2. no-op resume, {s.resume_lines:,} finished lines (s)", _seconds, ".2f", _lower_faster,
        "< 0.5 s", lambda t: t < 0.5)
    add("partial", f"3. partial resume, {s.resume_lines:,} lines, {s.pending} new (s)", _seconds,
        ".2f", _lower_faster, "< 0.5 s and ≥ 4x parallel --resume", vs_parallel("partial", 4.0))
    add("big_launch", f"4. peak RSS, {s.resume_lines:,}-line launch (MB)", _rss, ".0f", None, "< 100 MB",
        lambda mb: mb < 100)
    add("big_launch", "   that launch's throughput, one run (jobs/s)",
        lambda run: s.resume_lines / run.seconds, ",.0f")
    add("noop", "4. peak RSS, no-op resume (MB)", _rss, ".0f", None, "< 200 MB", _under_200)
    add("partial", "4. peak RSS, partial resume (MB)", _rss, ".0f", None, "< 200 MB", _under_200)
    if "sweep" in results:
        points, small_points = _product(s.sweep_grid), _product(s.sweep_small_grid)
        small_rss = results["sweep_small"]["batchrun"].median(_rss)
        grid = "x".join(str(p) for p in s.sweep_grid)
        add("sweep", f"5. sweep, {points:,} points ({grid}) (s)", _seconds, ".2f", None, "< 5 s",
            lambda t: t < 5.0)
        add("sweep", f"5. sweep peak RSS, {points:,} points (MB)", _rss, ".0f", None,
            f"flat: ≤ {small_points:,} points' + {FLAT_MEMORY_MB:.0f} MB",
            lambda mb: mb - small_rss <= FLAT_MEMORY_MB)
        add("sweep_small", f"   sweep peak RSS, {small_points:,} points (MB)", _rss, ".0f")
    million = f"{_product(s.million_grid):,}"
    add("million_launch", f"7. launch of the {million}-line runfile of a sweep: peak RSS (MB)", _rss, ".0f",
        None, "< 200 MB (flat)", _under_200)
    add("million_launch", "   that launch's throughput, one run (jobs/s)",
        lambda run: _product(s.million_grid) / run.seconds, ",.0f")
    add("million_noop", f"7. no-op relaunch of the {million} lines (s)", _seconds, ".2f", None, "< 5 s",
        lambda t: t < 5.0)
    add("million_noop", "   its peak RSS (MB)", _rss, ".0f")
    add("million_status", f"7. `batchrun status` of the {million} lines (s)", _seconds, ".2f", None, "< 5 s",
        lambda t: t < 5.0)
    add("million_status", "   its peak RSS (MB)", _rss, ".0f")
    if not has_xargs and rows and rows[0].measure.startswith("1."):
        rows[0].met = "n/a (no xargs)"
    return rows + overhead_rows(bench)


def overhead_rows(bench: Bench) -> list[Row]:
    """Item 6: each runner's cost per job beyond the job itself (a serial `sh -c 'true N'`)."""
    alone = bench.samples("job_alone", "sh")
    if alone is None:
        return []
    job_wall = alone.median(lambda run: run.seconds)
    job_cpu = alone.median(lambda run: run.cpu_seconds)
    s = bench.sizes
    bench.notes.append(f"Item 6: the job alone, `sh -c 'true N'` run one after another by a shell loop, "
                       f"took {job_wall * 1e3:.2f} ms wall and {job_cpu * 1e3:.2f} ms CPU per job (median); "
                       "each runner's overhead per job is what it spends beyond that.")
    rows: list[Row] = []
    per = bench.results.get("throughput", {})
    # Each of the W workers spends W/rate seconds per job; what the job alone does not explain is overhead.
    wall = {t: f"{(WORKERS * sm.median(lambda run: run.seconds) / s.jobs - job_wall) * 1e3:.2f}"
            for t, sm in per.items()}
    cpu = {t: f"{(sm.median(lambda run: run.cpu_seconds) / s.jobs - job_cpu) * 1e3:.2f}"
           for t, sm in per.items()}
    rows.append(Row(f"6. overhead per job from 1: {WORKERS} x wall/job - job alone (ms)", wall))
    rows.append(Row("6. CPU per job from 1, runner and job - job alone (ms)", cpu))
    noop, partial = bench.results.get("noop", {}), bench.results.get("partial", {})
    marginal = {}
    for tool in TOOLS:
        if tool in noop and tool in partial:
            extra = partial[tool].median(lambda run: run.seconds) - noop[tool].median(lambda run: run.seconds)
            marginal[tool] = f"{(WORKERS * extra / s.pending - job_wall) * 1e3:.2f}"
    if marginal:
        rows.append(Row(f"6. overhead per job from 3: {WORKERS} x (partial - no-op)/{s.pending} - job alone (ms)",
                        marginal))
    return rows


def markdown_table(rows: Sequence[Row], peers: dict[str, str]) -> str:
    headers = ["measure", *TOOL_HEADERS, "best peer", "batchrun speed vs best peer", "target", "met"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row.cells.get(t, "—") if t == "batchrun" or t in peers else "skipped" for t in TOOLS]
        peer = dict(zip(TOOLS, TOOL_HEADERS, strict=True)).get(row.best_peer, "")
        lines.append("| " + " | ".join([row.measure, *cells, peer, row.speed, row.target, row.met]) + " |")
    return "\n".join(lines)


# --- machine description and RESULTS.md --------------------------------------------------------

def machine_description(bench: Bench) -> list[tuple[str, str]]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    os_name = platform.system()
    try:
        release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        os_name = release.get("PRETTY_NAME", os_name).strip('"')
    except OSError:
        pass
    try:
        doit_version = importlib.metadata.version("doit")
    except importlib.metadata.PackageNotFoundError:
        doit_version = "not installed in the benchmark's interpreter"
    return [
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{os.cpu_count()} cores ({usable} usable), {cpu_model}"),
        ("memory", memory),
        ("OS", f"{os_name}, {platform.system()} {platform.release()} {platform.machine()}"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("doit", doit_version),
        ("batchrun", f"{_first_line([*bench.batchrun, '--version']) or '?'}, git {git_commit()}"),
        ("batchrun command", shlex.join(bench.batchrun)),
        ("GNU parallel", bench.peers.get("parallel", "not available")),
        ("xargs", bench.peers.get("xargs", "not available")),
    ]


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "batchrun", "pyproject.toml"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in batchrun/" if dirty else "")


def report(bench: Bench, rows: Sequence[Row], machine: list[tuple[str, str]], argv: Sequence[str],
           note: str, smoke: bool) -> str:
    kind = "smoke run" if smoke else "full run"
    title = f"## {machine[0][1]}, {kind}" + (f" ({note})" if note else "")
    out = [title, "", "| machine | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in machine[1:]]
    out += [f"| command | `{shlex.join(['python', 'benchmarks/bench.py', *argv])}` |", ""]
    out += [markdown_table(rows, bench.peers), ""]
    reps = f"{bench.sizes.repeat} repetition" + ("s, (min-max)" if bench.sizes.repeat > 1 else "")
    out += [f"- Medians of {reps}; "
            f"every runner at {WORKERS} workers, each repetition in a fresh directory. "
            "Speed vs best peer > 1 means batchrun is faster.",
            "- Peak RSS (MiB) is the runner's own, with the jobs it reaped, from `os.wait4`; each runner is "
            "started from a small `/bin/sh`, so the script's own memory does not count."]
    out += [f"- {n}" for n in bench.notes]
    return "\n".join(out) + "\n"


def append_results(section: str) -> None:
    if not RESULTS_PATH.exists():
        RESULTS_PATH.write_text(RESULTS_HEADER)
    with open(RESULTS_PATH, "a") as f:
        f.write("\n" + section)


# --- main --------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark batchrun against GNU parallel and xargs (see benchmarks/README.md). "
                    "Example: python benchmarks/bench.py --smoke")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and 1 repetition, a quick check; implies --no-write")
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions of each measurement (default 3)")
    parser.add_argument("--only", metavar="LIST", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (memory and resume share "
                             "one big launch)")
    parser.add_argument("--batchrun", metavar="CMD", help="how to run batchrun (default: this Python -m batchrun)")
    parser.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="remark for the RESULTS.md heading, e.g. 'noisy: shared machine'")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    if unknown := only - set(SECTIONS):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    args.only = only
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.repeat is not None:
        sizes = Sizes(**{**sizes.__dict__, "repeat": args.repeat})
    batchrun = shlex.split(args.batchrun) if args.batchrun else [sys.executable, "-m", "batchrun"]
    notes: list[str] = []
    peers = detect_peers(notes)
    for n in notes:
        progress(n)
    if not _first_line([*batchrun, "--version"]):
        progress(f"cannot run batchrun as `{shlex.join(batchrun)}`; pass --batchrun CMD")
        return 2

    global SUBREAPER  # noqa: PLW0603
    SUBREAPER = become_subreaper()
    if not SUBREAPER:
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
        if "million" in args.only:
            bench_million(bench)
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
