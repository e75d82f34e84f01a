"""Record the decisions of W&B's own hyperband engine, for tests/test_hyperband.py.

Run by hand, never by the tests, in a separate environment holding W&B's
`sweeps` package (never a batchrun dependency):

    python3 -m venv /tmp/sweepsenv && /tmp/sweepsenv/bin/pip install sweeps
    /tmp/sweepsenv/bin/python tests/data/hyperband/generate.py

It writes `decisions.json`: for each case, the config, every run's state and
raw history rows (some without the metric or with invalid values), and the
names of the runs `sweeps.stop_runs` stops.
"""

import json
import random
from importlib.metadata import version
from pathlib import Path

from sweeps import RunState, SweepRun, stop_runs

CONFIGS = [
    {"type": "hyperband", "min_iter": 3},
    {"type": "hyperband", "min_iter": 3, "eta": 3, "strict": False},
    {"type": "hyperband", "min_iter": 1, "eta": 2},
    {"type": "hyperband", "min_iter": 2, "eta": 2, "strict": False},
    {"type": "hyperband", "min_iter": 2, "eta": 2.5},
    {"type": "hyperband", "max_iter": 27, "s": 3},
    {"type": "hyperband", "max_iter": 20, "s": 2, "eta": 2, "strict": False},
    {"type": "hyperband", "max_iter": 9, "s": 5, "eta": 1.5},
]
STATES = [RunState.running] * 4 + [RunState.finished, RunState.failed, RunState.crashed, RunState.killed]


def history(rng: random.Random, length: int) -> list[dict]:
    level, slope = rng.uniform(1, 3), rng.uniform(0.0, 0.3)
    rows = []
    for step in range(length):
        roll = rng.random()
        if roll < 0.05:
            rows.append({"other": step, "_step": step})  # no value of the metric
        elif roll < 0.08:
            rows.append({"loss": rng.choice([None, "nan", True, float("inf")]), "_step": step})
        else:
            value = level - slope * step + rng.gauss(0, 0.1)
            rows.append({"loss": round(value, 3) if rng.random() < 0.5 else round(value, 1), "_step": step})
    return rows


def main() -> None:
    rng = random.Random(15)
    cases = []
    for config in CONFIGS:
        for goal in ("minimize", "maximize"):
            for _ in range(6):
                runs = [
                    SweepRun(name=f"r{i}", state=rng.choice(STATES), history=history(rng, rng.randint(0, 30)))
                    for i in range(rng.randint(1, 14))
                ]
                sweep = {"method": "random", "metric": {"name": "loss", "goal": goal},
                         "early_terminate": config, "parameters": {"a": {"values": [1]}}}
                stopped = sorted(run.name for run in stop_runs(sweep, runs))
                cases.append({
                    "early_terminate": config, "goal": goal, "stopped": stopped,
                    "runs": [{"name": r.name, "state": r.state if isinstance(r.state, str) else r.state.value,
                              "history": r.history} for r in runs],
                })
    out = Path(__file__).with_name("decisions.json")
    lines = ",\n".join(json.dumps(case, separators=(",", ":")) for case in cases)
    out.write_text(f'{{"sweeps_version": "{version("sweeps")}", "cases": [\n{lines}\n]}}\n')
    print(f"{out}: {len(cases)} cases, {sum(len(c['stopped']) for c in cases)} runs stopped")


if __name__ == "__main__":
    main()
