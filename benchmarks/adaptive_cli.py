"""Bayes against random, hyperband against none: through the real CLI, real processes.

Run by hand (not a test): `python benchmarks/adaptive_cli.py [--seeds 5] [--run-cap 60] [--no-write]`.
It needs the bayes extra. `benchmarks/adaptive.py` simulates the same
comparison in-process (fast, 10 seeds); this one runs what a user runs:
for each seed and each of (random, bayes) x (no early termination,
hyperband) it copies `examples/bayes/` to a scratch directory, sets the
spec's `method` and `seed` (and `run_cap` if asked), drops
`early_terminate` for the runs without it, and runs
`batchrun launch spec.yml -j 4`. Every epoch sleeps `--sleep` seconds, so
that the hyperband monitor sees the runs' values arrive as a user's would.
Compute is counted in epochs logged (lines of the metrics files), plus the
wall time of the launch.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "bayes"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SLOTS = 4


@dataclass
class Outcome:
    best: float  # best val_loss any run logged
    epochs: int  # epochs logged over all runs
    runs: int
    stopped: int
    seconds: float  # the launch's wall time


def _spec(method: str, hyperband: bool, seed: int, run_cap: int | None, sleep: float) -> str:
    text = (EXAMPLE / "spec.yml").read_text()
    text = re.sub(r"(?m)^method: .*$", f"method: {method}\nseed: {seed}", text)
    if run_cap is not None:
        text = re.sub(r"(?m)^run_cap: .*$", f"run_cap: {run_cap}", text)
    if not hyperband:
        text = re.sub(r"(?m)^early_terminate: .*\n?", "", text)
    return text.replace("parameters:\n", f"parameters:\n  sleep: {{value: {sleep}}}\n", 1)


def run_one(method: str, hyperband: bool, seed: int, run_cap: int | None, sleep: float) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="batchrun-adaptive-") as tmp:
        work = Path(tmp)
        shutil.copy(EXAMPLE / "train.py", work / "train.py")
        (work / "spec.yml").write_text(_spec(method, hyperband, seed, run_cap, sleep))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "batchrun", "launch", "spec.yml", "-j", str(SLOTS), "--quiet"],
                              cwd=work, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{method} hyperband={hyperband} seed={seed}: exit {done.returncode}: {done.stderr.strip()}")
        metadata = json.loads((work / "runs" / "spec" / "metadata.json").read_text())
        values: list[float] = []
        epochs = 0
        for path in (work / "runs" / "spec" / "logs").glob("*/metrics.jsonl"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            epochs += len(rows)
            values += [row["val_loss"] for row in rows if "val_loss" in row]
        stopped = sum(1 for entry in metadata.values() if entry.get("state") == "stopped")
        ended = sum(1 for entry in metadata.values() if entry.get("state") in ("succeeded", "stopped"))
        cap = run_cap or 60
        if ended != cap:
            raise SystemExit(f"{method} hyperband={hyperband} seed={seed}: {ended} runs ended, not run_cap {cap}: {done.stderr.strip()}")
        return Outcome(min(values), epochs, len(metadata), stopped, seconds)


def _range(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--run-cap", type=int, default=None, help="override the spec's run_cap (60)")
    parser.add_argument("--sleep", type=float, default=0.04, help="seconds per epoch")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not append it to RESULTS.md")
    args = parser.parse_args()
    outcomes: dict[tuple[str, bool], list[Outcome]] = {}
    for seed in range(args.seeds):
        for method in ("random", "bayes"):
            for hyperband in (False, True):
                outcome = run_one(method, hyperband, seed, args.run_cap, args.sleep)
                outcomes.setdefault((method, hyperband), []).append(outcome)
                print(f"{method} hyperband={hyperband} seed={seed}: best {outcome.best:.3f} epochs {outcome.epochs} "
                      f"stopped {outcome.stopped} {outcome.seconds:.1f}s", file=sys.stderr, flush=True)
    rows = []
    for (method, hyperband), results in sorted(outcomes.items(), key=lambda kv: (kv[0][0] != "random", kv[0][1])):
        full = statistics.median(float(o.epochs) for o in outcomes[method, False])
        epochs = [float(o.epochs) for o in results]
        rows.append(f"| {method} | {'hyperband' if hyperband else 'none'} | {_range([o.best for o in results], '.3f')} "
                    f"| {_range(epochs, ',.0f')} | {statistics.median(epochs) / full:.0%} "
                    f"| {statistics.median(float(o.stopped) for o in results):.0f} "
                    f"| {_range([o.seconds for o in results], '.0f')} |")
    wins = sum(b.best < r.best for b, r in zip(outcomes["bayes", False], outcomes["random", False], strict=True))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    import optuna

    run_cap = args.run_cap or 60
    section = "\n".join([
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, adaptive sweeps through the CLI (benchmarks/adaptive_cli.py)",
        "",
        f"`batchrun launch spec.yml -j {SLOTS}` on `examples/bayes/` (run_cap {run_cap}; 27 epochs of {args.sleep:g} s; "
        f"hyperband min_iter 3, eta 3, judged by the launch's monitor as the metrics files grow), {args.seeds} seeds, "
        "real processes on a shared 2-core machine (wall times are noisy). "
        f"Python {platform.python_version()}, Optuna {optuna.__version__}, git {commit}.",
        "",
        "| search | early termination | best val_loss logged, median (min–max) | compute, epochs logged | "
        "compute vs none | runs stopped | launch wall s |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Bayes found a better best than random at {wins} of {args.seeds} seeds (no early termination).",
        "",
    ])
    print(section)
    if not args.no_write:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
