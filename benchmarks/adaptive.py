"""Bayes against random search, and hyperband against no early termination.

Run by hand (not a test): `python benchmarks/adaptive.py [--seeds 10] [--no-write]`.
It needs the bayes extra (`pip install -e '.[bayes]'`).

The sweep is `examples/bayes/spec.yml` (3 parameters: a log-uniform learning
rate, a categorical layer count, a uniform dropout; run_cap 60; hyperband at
3, 9, 27 logged values) over the toy `examples/bayes/train.py` (a noisy
Branin of lr and dropout plus a layer penalty, falling towards it over 27
epochs). For each seed, each method runs run_cap runs with 4 in flight and
the same noise for the same point, once without early termination and once
with hyperband.

The runs are simulated in-process, one epoch per tick, through the code the
launch will use: `BayesSpec.command` renders each proposal, `params_of`
parses the line back, `propose` is called whenever a slot frees with the
finished runs and the points in flight, and `HyperbandStopper.runs_to_stop`
judges the histories after every epoch; a stopped run frees its slot at
once and counts as finished with what it logged. Random search draws with
W&B's own samplers from the same seed. Only the process around them (the
launch, the metrics files) is left out.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from batchrun.sweeps.bayes import BayesSpec, FinishedRun, propose  # noqa: E402
from batchrun.sweeps.gridspec import load_gridspec  # noqa: E402
from batchrun.sweeps.hyperband import HyperbandStopper  # noqa: E402

SPEC = REPO / "examples" / "bayes" / "spec.yml"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SLOTS = 4
EPOCHS = 27


def _train() -> Any:
    spec = importlib.util.spec_from_file_location("train", REPO / "examples" / "bayes" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _train()


@dataclass
class Run:
    command: str
    params: dict[str, Any]
    curve: list[float]
    logged: list[float] = field(default_factory=list)


@dataclass
class Outcome:
    best: float  # best val_loss any run logged (the run's value, as W&B ranks runs)
    true_best: float  # noiseless final loss of that run's point
    epochs: int  # compute: epochs trained over all runs
    stopped: int
    seconds: float  # time spent proposing and judging


def simulate(spec: BayesSpec, method: str, hyperband: bool, seed: int) -> Outcome:
    rng = random.Random(seed)
    stopper = None
    if hyperband:
        config = spec.gridspec.early_terminate
        assert config is not None
        stopper = HyperbandStopper(config, spec.metric.name, spec.metric.goal)
    finished: list[tuple[Run, bool]] = []  # (run, stopped)
    running: list[Run] = []
    launched = epochs = 0
    spent = 0.0
    # Bayes proposals depend on the seed through the spec's `seed`.
    seeded = BayesSpec(load_gridspec(SPEC))
    seeded.seed = seed
    while len(finished) < spec.run_cap:
        need = min(SLOTS - len(running), spec.run_cap - launched)
        if need > 0:
            started = time.perf_counter()
            if method == "bayes":
                done = [FinishedRun(r.params, r.logged, True) for r, _ in finished]
                points = propose(seeded, done, [r.params for r in running], need)
            else:
                points = [dict(zip(spec.names, [d(rng) for d in spec.space.distributions], strict=True)) for _ in range(need)]
            spent += time.perf_counter() - started
            for point in points:
                command = spec.command(point)
                params = spec.params_of(command)
                assert params == point, command
                noise = int.from_bytes(hashlib.sha256(f"{seed} {command}".encode()).digest()[:4], "big")
                running.append(Run(command, params, TRAIN.curve(params["lr"], params["layers"], params["dropout"], EPOCHS, noise)))
                launched += 1
        for run in running:
            run.logged.append(run.curve[len(run.logged)])
            epochs += 1
        ended = {r.command for r in running if len(r.logged) == EPOCHS}
        stop: set[str] = set()
        if stopper is not None:
            started = time.perf_counter()
            histories = {r.command: r.logged for r, _ in finished} | {r.command: r.logged for r in running}
            stop = stopper.runs_to_stop(histories, [r.command for r in running if r.command not in ended])
            spent += time.perf_counter() - started
        finished += [(r, r.command in stop) for r in running if r.command in ended | stop]
        running = [r for r in running if r.command not in ended | stop]
    best_run = min((r for r, _ in finished), key=lambda r: min(r.logged))
    p = best_run.params
    return Outcome(min(best_run.logged), TRAIN.final_loss(p["lr"], p["layers"], p["dropout"]), epochs,
                   sum(stopped for _, stopped in finished), spent)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _range(values: list[float], fmt: str) -> str:
    return f"{format(_median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not append it to RESULTS.md")
    parser.add_argument("--note", default="", help="a note for the section title")
    args = parser.parse_args()
    spec = BayesSpec(load_gridspec(SPEC))
    rows = []
    outcomes: dict[tuple[str, bool], list[Outcome]] = {}
    for method in ("random", "bayes"):
        for hyperband in (False, True):
            results = []
            for seed in range(args.seeds):
                results.append(simulate(spec, method, hyperband, seed))
                print(f"{method} hyperband={hyperband} seed={seed}: best {results[-1].best:.3f} "
                      f"epochs {results[-1].epochs}", file=sys.stderr, flush=True)
            outcomes[method, hyperband] = results
    full = spec.run_cap * EPOCHS
    for (method, hyperband), results in outcomes.items():
        epochs = [float(o.epochs) for o in results]
        rows.append(
            f"| {method} | {'hyperband' if hyperband else 'none'} | {_range([o.best for o in results], '.3f')} "
            f"| {_range([o.true_best for o in results], '.3f')} | {_range(epochs, ',.0f')} "
            f"| {_median(epochs) / full:.0%} | {_median([float(o.stopped) for o in results]):.0f} "
            f"| {_median([o.seconds for o in results]):.1f} |")
    wins = sum(b.best < r.best for b, r in zip(outcomes["bayes", False], outcomes["random", False], strict=True))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    import optuna

    section = "\n".join([
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, adaptive sweeps (benchmarks/adaptive.py){', ' + args.note if args.note else ''}",
        "",
        f"`examples/bayes/spec.yml` (lr log-uniform, layers in 1/2/3, dropout uniform; run_cap {spec.run_cap}; "
        f"hyperband min_iter 3, eta 3) over `examples/bayes/train.py` ({EPOCHS} epochs, noisy Branin plus a layer penalty; "
        "the least noiseless loss is 0.140), "
        f"{args.seeds} seeds, {SLOTS} runs in flight. **Simulated in-process**: the proposer, the command rendering and "
        "parsing and the hyperband judge are batchrun's (`propose`, `BayesSpec.command`/`params_of`, "
        "`HyperbandStopper.runs_to_stop` after every epoch), the launch around them is not. "
        f"Python {platform.python_version()}, Optuna {optuna.__version__}, git {commit}.",
        "",
        "| search | early termination | best val_loss logged, median (min–max) | noiseless loss of that point | "
        "compute, epochs trained | compute vs none | runs stopped | proposer + judge s/seed |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Bayes found a better best than random at {wins} of {args.seeds} seeds (no early termination).",
        f"- Without early termination every run trains {EPOCHS} epochs: {full:,} epochs per seed.",
        "",
    ])
    print(section)
    if not args.no_write:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
