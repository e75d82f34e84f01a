"""W&B grid sweeps against W&B's own engine: the runs `sweeps.next_runs` suggests, stored as fixtures.

tests/data/wandb_grid/<name>.yml is a spec; <name>.json holds the runs that
W&B's sweep engine (the `sweeps` package) gave for it, written by
make_fixtures.py beside them. The tests need neither the package nor the
network. W&B keeps one run per distinct YAML dump of a value (an integer
float counts as its int), in the order of first appearance, with the value
of the last appearance.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchrun.sweeps.gridspec import load_gridspec
from batchrun.sweeps.wandb import grid_key, unique_grid_values

DATA = Path(__file__).parent / "data" / "wandb_grid"
SPECS = sorted(DATA.glob("*.yml"))


def typed(value: Any) -> str:
    """Compare values with their types: 2.0 is not 2, True is not 1."""
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_grid_runs_are_the_ones_the_wandb_engine_suggests(spec: Path) -> None:
    expected = json.loads(spec.with_suffix(".json").read_text())
    assert expected["engine"].startswith("sweeps ")
    gridspec = load_gridspec(spec)
    # The spec's command is ["${args_json}"]: each line is one run's config as W&B's agent passes it.
    runs = [json.loads(shlex.split(line)[0]) for line in gridspec.iter_commands()]
    assert gridspec.count() == len(expected["runs"])
    assert [typed(run) for run in runs] == [typed(run) for run in expected["runs"]]


def test_the_issue_12_grid_gives_what_wandb_gives(tmp_path: Path) -> None:
    spec = tmp_path / "s.yml"
    spec.write_text('method: grid\nprogram: t.py\nparameters:\n  d: {values: [1, 1, 2, 2.0, "2", true, 1.0, a, a]}\n')
    assert list(load_gridspec(spec).iter_commands()) == [
        "/usr/bin/env python t.py --d=1.0",
        "/usr/bin/env python t.py --d=2.0",
        "/usr/bin/env python t.py --d=2",
        "/usr/bin/env python t.py --d=True",
        "/usr/bin/env python t.py --d=a",
    ]


def wandb_yaml_hash(value: Any) -> str:
    """sweeps 0.3.0 grid_search.yaml_hash, the engine's definition of "the same value"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return hashlib.md5(yaml.dump(value, default_flow_style=True, sort_keys=True).encode("ascii")).hexdigest()  # noqa: S324


SCALARS: list[Any] = [
    None, True, False, 0, 1, -1, 2, 0.0, -0.0, 1.0, 2.0, 2.5, 1e-3, 1e20, 1e300, float("inf"), float("-inf"), float("nan"),
    float("nan"), 10**30, "", "0", "1", "2", "2.0", "true", "True", "yes", "null", "~", "a", "A", "é", "x y", "1e-3",
]
STRUCTURED: list[Any] = [[], {}, [1, 2], [1.0, 2], [2, 1], {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1.0}, {1: "a"}, {"1": "a"}, [None], [[1]]]


@pytest.mark.parametrize("left", SCALARS + STRUCTURED, ids=repr)
def test_grid_key_agrees_with_the_wandb_engine(left: Any) -> None:
    for right in SCALARS + STRUCTURED:
        assert (grid_key(left) == grid_key(right)) == (wandb_yaml_hash(left) == wandb_yaml_hash(right)), (left, right)


def test_unique_grid_values_keeps_the_first_place_and_the_last_value() -> None:
    assert unique_grid_values([1, 2, 1.0, "1", 2.0, True]) == [1.0, 2.0, "1", True]
    values = list(range(200_000))
    assert unique_grid_values(values + values) == values
