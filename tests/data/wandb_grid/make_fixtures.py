"""Regenerate the W&B grid fixtures: the runs W&B's own sweep engine suggests for each *.yml here.

Not run by the tests (they need neither the network nor the `sweeps` package);
run it by hand after adding a spec, in a virtualenv of its own:

    python -m venv /tmp/sweeps-venv && /tmp/sweeps-venv/bin/pip install sweeps
    /tmp/sweeps-venv/bin/python tests/data/wandb_grid/make_fixtures.py

Each spec is read as the wandb CLI reads it (PyYAML's safe_load) and handed to
`sweeps.next_runs` one run at a time, each run then marked finished, as an
agent loop sees them. `<name>.json` holds the engine's version and, per run,
each top-level parameter's value as `${args_json}` gives it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import sweeps
import yaml

HERE = Path(__file__).resolve().parent


def engine_runs(config: dict) -> list[dict]:
    # next_runs' default validate=False: with validate=True, sweeps 0.3.0's
    # SweepConfig drops nested parameters from grid runs (nested.yml gives 2
    # runs of batch_size alone). The schema check below still vets each spec.
    runs: list[sweeps.SweepRun] = []
    while True:
        (run,) = sweeps.next_runs(config, runs, n=1)
        if run is None:
            return [{name: entry["value"] for name, entry in r.config.items()} for r in runs]
        run.state = sweeps.RunState.finished
        runs.append(run)


def main() -> int:
    for spec in sorted(HERE.glob("*.yml")):
        config = yaml.safe_load(spec.read_text())
        violations = sweeps.schema_violations_from_proposed_config(config)
        assert not violations, (spec.name, violations)
        runs = engine_runs(config)
        # One call for all must agree with the agent loop.
        at_once = [r for r in sweeps.next_runs(config, [], n=len(runs) + 1) if r is not None]
        assert [{k: v["value"] for k, v in r.config.items()} for r in at_once] == runs, spec.name
        out = {"engine": f"sweeps {sweeps.__version__}", "runs": runs}
        spec.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"{spec.name}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
