"""Section `results` of bench.py: `batchrun results` on a sweep of 100,000 jobs that each logged 11 metrics lines.

One real launch of a gridspec whose jobs append 10 history lines and a
summary to `$BATCHRUN_METRICS` (shell builtins only, so the launch is as
fast as a launch of `true`); then, each repetition, in one run:

* `batchrun results grid.yml` with the metrics cache the launch's runner
  wrote (the normal case);
* the same with the cache removed (jobs that ran before the cache existed:
  every file read, the cache written again);
* `batchrun status grid.yml` (the part of `results` that is status's);
* with `--results-baseline SRC`, the results of another batchrun source tree
  (e.g. `git archive main batchrun | tar -x -C /tmp/main`), on the same
  directory, for a before/after in one run.

And, in-process, the cost of the runner's hook per job end
(`metrics_cache.record_job_metrics`) for a job with no metrics file and for
one with 11 lines. Every output of `results` is checked to be the same
table.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from harness import Bench, BenchError, Run, check_ran, progress, run_measured

# The jobs' program: 10 history lines and a summary, values varying with the job's pid.
JOB_SCRIPT = """\
i=0
while [ $i -lt 10 ]; do
  printf '{"loss": 0.%s, "acc": 0.%s, "_step": %s}\\n' "$(( ($$ + i) % 97 + 3))" "$i" "$i" >> "$BATCHRUN_METRICS"
  i=$((i + 1))
done
printf '{"_summary": {"best": 0.%s}}\\n' "$(( $$ % 89 + 10 ))" >> "$BATCHRUN_METRICS"
"""
CACHE_NAME = ".metrics-cache.v1.jsonl"
# Calls of the runner's hook timed per case.
_HOOK_CALLS = 2000


def gridspec(jobs: int) -> str:
    seeds = max(1, jobs // 10)
    return ("program: . ./job.sh\nmetric:\n  name: loss\n  goal: minimize\nparameters:\n"
            f"  lr:\n    values: [{', '.join(f'0.00{i}' for i in range(1, 10))}, 0.01]\n"
            f"  seed:\n    max: {seeds}\n")


def bench_results(bench: Bench, baseline: Path | None) -> None:
    jobs = bench.sizes.results_jobs
    work = bench.fresh_dir("results")
    (work / "job.sh").write_text(JOB_SCRIPT)
    (work / "grid.yml").write_text(gridspec(jobs))
    jobs = (jobs // 10) * 10
    progress(f"launching {jobs:,} jobs that log metrics (~{jobs / 400 / 60:.0f} min at 400 jobs/s)")
    run = run_measured([*bench.batchrun, "launch", "grid.yml", "-j", "4", "-q"], work)
    check_ran(bench, run, jobs, "results launch")
    bench.record("results_launch", "batchrun", run)
    cache = work / "runs" / "grid" / CACHE_NAME
    if not cache.exists():
        raise BenchError(f"the launch wrote no metrics cache {cache}")
    saved = cache.with_name("cache.saved")
    shutil.copyfile(cache, saved)
    results = [*bench.batchrun, "results", "grid.yml"]
    table: bytes | None = None

    def measure(name: str, argv: list[str], env: dict[str, str] | None = None) -> Run:
        nonlocal table
        run = run_measured(argv, work, env=env)
        out = (work / "_bench.stdout").read_bytes()  # run.stdout is only its end
        if table is None:
            table = out
        elif out != table:
            raise BenchError(f"{name}: a different table than the first measure's")
        rows = out.count(b"\n") - 1
        if rows != jobs:
            raise BenchError(f"{name}: {rows} rows, not {jobs}")
        bench.record(name, "batchrun", run)
        return run

    for rep in range(1, bench.sizes.repeat + 1):
        cached = measure("results_cached", results)
        cache.unlink()
        uncached = measure("results_uncached", results)
        shutil.copyfile(saved, cache)  # the launch's cache, not the one results filled
        line = f"results {rep}/{bench.sizes.repeat}: cached {cached.seconds:.2f} s ({cached.cpu_seconds:.2f} s CPU), " \
               f"no cache {uncached.seconds:.2f} s"
        if baseline is not None:
            env = {**os.environ, "PYTHONPATH": str(baseline)}
            before = measure("results_baseline", results, env)
            line += f", baseline {before.seconds:.2f} s ({before.cpu_seconds:.2f} s CPU)"
        status = run_measured([*bench.batchrun, "status", "grid.yml"], work)
        bench.record("results_status", "batchrun", status)
        progress(f"{line}, status {status.seconds:.2f} s")
    _bench_hook(bench, work)


def _bench_hook(bench: Bench, work: Path) -> None:
    """The runner's hook per job end, in-process: a job without metrics, and one with the 11 lines."""
    from batchrun.metrics.cache import record_job_metrics

    runs = work / "hook"
    log_dir = runs / "logs" / "0123456789abcdef"
    log_dir.mkdir(parents=True)
    sample = next((work / "runs" / "grid" / "logs").iterdir()) / "metrics.jsonl"
    for case, path in (("hook_none", log_dir / "metrics.jsonl"), ("hook_metrics", sample)):
        start = time.perf_counter()
        for _ in range(_HOOK_CALLS):
            record_job_metrics(str(runs), "0123456789abcdef", str(path))
        per_call = (time.perf_counter() - start) / _HOOK_CALLS
        bench.record(case, "batchrun", Run(per_call, 0.0, per_call, ""))
        progress(f"{case}: {per_call * 1e6:.0f} µs per job end")
