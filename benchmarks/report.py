"""bench.py's results table, the machine description, and RESULTS.md."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import FLAT_MEMORY_MB, WIDE_WORKERS, WORKERS, Bench, Run, Samples, _first_line, _product

REPO = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO / "benchmarks" / "RESULTS.md"

RESULTS_HEADER = """\
# Benchmark results

Written by `benchmarks/bench.py` (see `benchmarks/README.md`); each run appends a dated section,
newest last. Never delete old sections: they are the history. Compare ratios measured in one run,
not absolute numbers across machines or days.
"""


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


def _under_150(mb: float) -> bool:
    return mb < 150


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

    def vs_xargs_and_parallel(measure: str, share: float, times: float) -> Callable[[float], bool] | None:
        """At least `share` of xargs' rate and `times` GNU parallel's (each only where it ran)."""
        xargs, parallel = vs_xargs(measure, share), results.get(measure, {}).get("parallel")
        if xargs is None and parallel is None:
            return None
        peer = None if parallel is None else parallel.median(rate)
        return lambda mine: (xargs is None or xargs(mine)) and (peer is None or mine >= times * peer)

    def vs_parallel(measure: str, times: float) -> Callable[[float], bool]:
        parallel = results.get(measure, {}).get("parallel")
        peer = parallel.median(_seconds) if parallel else float("inf")
        return lambda mine: mine < 0.5 and (parallel is None or peer / mine >= times)

    has_xargs = "xargs" in results.get("throughput", {})
    add("throughput", f"1. throughput, {s.jobs:,} trivial jobs at -j {WORKERS}, fresh directory (jobs/s)", rate,
        ",.0f", _higher_faster, "≥ 0.7x xargs and ≥ 3x parallel", vs_xargs_and_parallel("throughput", 0.7, 3.0))
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
    add("million_plan", f"7. `batchrun plan` of the {million}-line runfile of a sweep, nothing run yet (s)",
        _seconds, ".2f", None, "< 2 s", lambda t: t < 2.0)
    add("million_plan", "   its peak RSS (MB)", _rss, ".0f", None, "< 150 MB", _under_150)
    add("million_launch", f"7. launch of the {million}-line runfile of a sweep: peak RSS (MB)", _rss, ".0f",
        None, "< 150 MB (flat)", _under_150)
    add("million_launch", "   that launch's throughput, one run (jobs/s)",
        lambda run: _product(s.million_grid) / run.seconds, ",.0f")
    add("million_noop", f"7. no-op relaunch of the {million} lines (s)", _seconds, ".2f", None, "< 5 s",
        lambda t: t < 5.0)
    add("million_noop", "   its peak RSS (MB)", _rss, ".0f", None, "< 150 MB", _under_150)
    add("million_status", f"7. `batchrun status` of the {million} lines (s)", _seconds, ".2f", None, "< 5 s",
        lambda t: t < 5.0)
    add("million_status", "   its peak RSS (MB)", _rss, ".0f", None, "< 150 MB", _under_150)
    jobs = f"{(s.results_jobs // 10) * 10:,}"
    add("results_cached", f"8. `batchrun results` of {jobs} jobs with metrics, the launch's cache (s)", _seconds, ".2f",
        None, "about 2 s", lambda t: t < 2.5)
    add("results_cached", "   its CPU time (s)", lambda run: run.cpu_seconds, ".2f")
    add("results_uncached", "8. the same without the cache: every metrics file read (s)", _seconds, ".2f")
    add("results_baseline", "8. the same by --results-baseline's batchrun (s)", _seconds, ".2f")
    add("results_baseline", "   its CPU time (s)", lambda run: run.cpu_seconds, ".2f")
    add("results_status", f"8. `batchrun status` of the {jobs} jobs (s)", _seconds, ".2f")
    add("hook_none", "8. the runner's metrics hook per job end, no metrics file (µs)", lambda run: run.seconds * 1e6, ".0f")
    add("hook_metrics", "   the same, an 11-line metrics file (µs)", lambda run: run.seconds * 1e6, ".0f")
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
    files = bench.samples("log_dirs", "python")
    if files is not None:
        bench.notes.append(
            f"Item 6: a log directory with two files in it, as batchrun makes for each job, cost this file system "
            f"{files.median(lambda run: run.seconds) * 1e3:.3f} ms wall and {files.median(lambda run: run.cpu_seconds) * 1e3:.3f} ms CPU "
            "(median, 1,000 of them in a fresh directory before each repetition, left in place): part of batchrun's overhead above, none of xargs'.")
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
        # No interpreter path: RESULTS.md is committed, and paths are this machine's own.
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("doit", doit_version),
        ("batchrun", f"{_first_line([*bench.batchrun, '--version']) or '?'}, git {git_commit()}"),
        ("batchrun command", shlex.join(["python" if arg == sys.executable else arg for arg in bench.batchrun])),
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
