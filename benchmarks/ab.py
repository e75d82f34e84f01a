#!/usr/bin/env python3
"""Throughput of two batchrun source trees, interleaved, with xargs in the same rounds (run by hand).

On a shared, loaded machine two runs of `bench.py` minutes apart differ by
more than most changes do. This script alternates the trees within each
round (old, new, xargs; the order rotates from round to round) on the same
trivial jobs (`true N`, a fresh directory per run, as `bench.py`'s section 1),
so both see the same load, and prints per tree the median jobs/s, its ratio
to xargs in the same rounds, the median CPU time per job (user + system of
the launch and the jobs it reaped: far less sensitive to the load than wall
time), and the medians of the per-round new/old ratios of both.

    git archive main batchrun | tar -x -C /tmp/old-src     # the tree to compare against
    python benchmarks/ab.py --old /tmp/old-src --rounds 9
    python benchmarks/ab.py --old /tmp/old-src --new-args "--cpus 2" --jobs 5000

`--old SRC` runs `python -m batchrun` with SRC first on PYTHONPATH (the same
Python and dependencies); the new tree is the batchrun this Python imports.
Nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from harness import WORKERS, progress, run_measured, runfile_text, trivial_jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, metavar="SRC", help="a directory holding the old tree's batchrun package")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of old, new, xargs (default 7)")
    parser.add_argument("--jobs", type=int, default=10_000, help="trivial jobs per run (default 10,000)")
    parser.add_argument("-j", type=int, default=WORKERS, help=f"workers (default {WORKERS})")
    parser.add_argument("--new-args", default="", help="extra launch options for the new tree only")
    args = parser.parse_args()
    if not (args.old / "batchrun" / "__init__.py").is_file():
        parser.error(f"--old {args.old}: no batchrun package there")
    text = runfile_text(trivial_jobs(1, args.jobs))
    old_env = dict(os.environ, PYTHONPATH=str(args.old.resolve()))
    tools = {
        "old": ([sys.executable, "-m", "batchrun", "launch", "jobs.runfile", "-j", str(args.j), "-q"], old_env),
        "new": ([sys.executable, "-m", "batchrun", "launch", "jobs.runfile", "-j", str(args.j), "-q", *shlex.split(args.new_args)], None),
        "xargs": (["xargs", "-P", str(args.j), "-I{}", "sh", "-c", "{}"], None),
    }
    rates: dict[str, list[float]] = {name: [] for name in tools}
    cpu: dict[str, list[float]] = {name: [] for name in tools}  # ms per job
    root = Path(tempfile.mkdtemp(prefix="batchrun-ab-"))
    try:
        names = list(tools)
        for round_ in range(args.rounds):
            order = names[round_ % 3 :] + names[: round_ % 3]
            for name in order:
                work = root / f"{round_}-{name}"
                work.mkdir()
                (work / "jobs.runfile").write_text(text)
                argv, env = tools[name]
                run = run_measured(argv, work, stdin=work / "jobs.runfile" if name == "xargs" else None, env=env)
                rates[name].append(args.jobs / run.seconds)
                cpu[name].append(run.cpu_seconds / args.jobs * 1e3)
            progress(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{n} {rates[n][-1]:,.0f}/s" for n in names))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.jobs:,} trivial jobs at -j {args.j}, {args.rounds} interleaved rounds (load average at the end: {os.getloadavg()[0]:.1f})\n")
    print("| tree | median jobs/s (min-max) | median ratio to xargs, same round | median CPU ms per job (min-max) |")
    print("|---|---|---|---|")
    for name in ("old", "new", "xargs"):
        ratio = statistics.median(a / b for a, b in zip(rates[name], rates["xargs"], strict=True))
        print(f"| {name} | {statistics.median(rates[name]):,.0f} ({min(rates[name]):,.0f}-{max(rates[name]):,.0f}) | {ratio:.2f}x "
              f"| {statistics.median(cpu[name]):.3f} ({min(cpu[name]):.3f}-{max(cpu[name]):.3f}) |")
    per_round = statistics.median(a / b for a, b in zip(rates["new"], rates["old"], strict=True))
    per_round_cpu = statistics.median(a / b for a, b in zip(cpu["new"], cpu["old"], strict=True))
    print(f"\nnew / old, medians of the per-round ratios: jobs/s {per_round:.3f}, CPU per job {per_round_cpu:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
