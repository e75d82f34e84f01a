"""Hyperband early termination against W&B's own engine, and its invariants."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.sweeps.hyperband import HyperbandConfig, HyperbandStopper, bands_from, parse_early_terminate
from batchrun.sweeps.objective import Goal, metric_values

DECISIONS = Path(__file__).parent / "data" / "hyperband" / "decisions.json"


class Failed(Exception):
    pass


def fail(message: str, line: int | None = None) -> NoReturn:
    raise Failed(message)


def stopper(raw: dict[str, Any], goal: str = "minimize") -> HyperbandStopper:
    return HyperbandStopper(parse_early_terminate(raw, None, fail), "loss", Goal(goal))


def test_decisions_match_wandb_sweeps_engine() -> None:
    # Recorded from sweeps.stop_runs by tests/data/hyperband/generate.py.
    cases = json.loads(DECISIONS.read_text())["cases"]
    assert len(cases) == 96 and sum(len(c["stopped"]) for c in cases) > 50
    for case in cases:
        histories = {run["name"]: metric_values(run["history"], "loss") for run in case["runs"]}
        running = [run["name"] for run in case["runs"] if run["state"] == "running"]
        got = stopper(case["early_terminate"], case["goal"]).runs_to_stop(histories, running)
        assert got == set(case["stopped"]), case["early_terminate"]


def test_wandb_docstring_example() -> None:
    # hyperband_stopping.py's doctest: max_iter 5, eta 2, s 2 -> bands [1, 2].
    # Its comment says 'c' fails band 2, but c's 8 ties the threshold (the
    # value at int(0.5 * 5) of [6, 7, 8, 9, 10]) and ties pass: the engine
    # itself stops only 'b'.
    histories = {"a": [10, 9], "b": [10, 10], "c": [10, 8, 8], "d": [10, 7, 7], "e": [10, 6, 6]}
    hb = stopper({"type": "hyperband", "max_iter": 5, "eta": 2, "s": 2})
    assert hb.config.bands == (1, 2)
    assert hb.thresholds(histories.values()) == [10, 8]
    assert hb.runs_to_stop(histories, ["b", "c", "d"]) == {"b"}


def test_bands() -> None:
    assert bands_from(min_iter=3)[:4] == (3, 9, 27, 81)
    assert bands_from(min_iter=2, eta=2.5)[:4] == (2, 5, 12, 31)
    assert bands_from(max_iter=27, s=3) == (1, 3, 9)
    assert bands_from(max_iter=81, s=2) == (9, 27)
    assert bands_from(min_iter=1, eta=1e300) == (1,)  # bands no run reaches end before a float overflows


@pytest.mark.parametrize(("raw", "message"), [
    ([1], "'early_terminate' must be a mapping such as {type: hyperband, min_iter: 3}, not list"),
    ({"type": "median"}, "'early_terminate' needs 'type: hyperband' (the only type W&B has), not 'median'"),
    ({"type": "hyperband"}, "'early_terminate': hyperband needs 'min_iter', or 'max_iter' with 's'"),
    ({"type": "hyperband", "max_iter": 9}, "'early_terminate': hyperband needs 'min_iter', or 'max_iter' with 's'"),
    ({"type": "hyperband", "min_iter": 0}, "'early_terminate': 'min_iter' must be an integer of at least 1, not 0"),
    ({"type": "hyperband", "min_iter": 2, "eta": 1}, "'early_terminate': 'eta' must be a number greater than 1, not 1"),
    ({"type": "hyperband", "min_iter": 2, "strict": "yes"}, "'early_terminate': 'strict' must be true or false, not 'yes'"),
    ({"type": "hyperband", "min_iter": 2, "miniter": 2}, "'early_terminate': unknown key 'miniter'; hyperband takes type, min_iter, max_iter, s, eta, strict"),
    ({"type": "hyperband", "max_iter": 2, "s": 1, "eta": 3},
     "'early_terminate': max_iter 2 with eta 3 gives no band; increase max_iter or s, or decrease eta"),
])
def test_bad_sections_fail_in_one_line(raw: Any, message: str) -> None:
    with pytest.raises(Failed) as err:
        parse_early_terminate(raw, None, fail)
    assert str(err.value) == message


def test_defaults_are_wandbs() -> None:
    assert parse_early_terminate({"type": "hyperband", "min_iter": 3}, None, fail) == HyperbandConfig(
        bands_from(min_iter=3), 3.0, True)


def test_only_running_runs_are_stopped() -> None:
    hb = stopper({"type": "hyperband", "min_iter": 1})
    histories = {"good": [1.0], "good_done": [2.0], "bad": [9.0], "bad_done": [9.0]}  # threshold 2.0
    assert hb.runs_to_stop(histories, ["good", "bad"]) == {"bad"}
    assert hb.runs_to_stop(histories, []) == set()


def test_strict_judges_the_band_value_lenient_the_best() -> None:
    # 'late' was good at step 1 but is worse than the threshold at band 3.
    histories = {"x": [3, 3, 1.0], "y": [3, 3, 1.1], "z": [3, 3, 1.2], "late": [0.5, 3, 3]}
    strict = stopper({"type": "hyperband", "min_iter": 3})
    lenient = stopper({"type": "hyperband", "min_iter": 3, "strict": False})
    assert strict.runs_to_stop(histories, ["late"]) == {"late"}
    assert lenient.runs_to_stop(histories, ["late"]) == set()


def test_maximize_mirrors_minimize() -> None:
    histories = {"a": [1.0], "b": [2.0], "c": [3.0]}
    negated = {k: [-v for v in h] for k, h in histories.items()}
    hb_min = stopper({"type": "hyperband", "min_iter": 1}, "minimize")
    hb_max = stopper({"type": "hyperband", "min_iter": 1}, "maximize")
    assert hb_min.runs_to_stop(histories, histories) == {"c"}  # threshold: [1, 2, 3][int(3 / 3)]
    assert hb_max.runs_to_stop(negated, negated) == {"c"}


_histories = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=2),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=30),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(histories=_histories, min_iter=st.integers(1, 5), eta=st.sampled_from([2, 3, 2.5, 4]),
       strict=st.booleans(), goal=st.sampled_from(["minimize", "maximize"]), seed=st.integers(0, 1000))
def test_never_stops_a_run_better_than_its_bands_threshold(
    histories: dict[str, list[float]], min_iter: int, eta: float, strict: bool, goal: str, seed: int
) -> None:
    hb = stopper({"type": "hyperband", "min_iter": min_iter, "eta": eta, "strict": strict}, goal)
    running = [k for k in sorted(histories) if random.Random(seed + len(k)).random() < 0.6]
    stopped = hb.runs_to_stop(histories, running)
    assert stopped <= set(running)
    thresholds = dict(zip(hb.config.bands, hb.thresholds(histories.values()), strict=True))
    sign = -1 if goal == "maximize" else 1
    for job_id in running:
        history = [sign * v for v in histories[job_id]]
        reached = [b for b in hb.config.bands if b <= len(history)]
        if not reached:
            assert job_id not in stopped  # no band reached yet: never judged
            continue
        value = history[reached[-1] - 1] if strict else min(history)
        # Stopped exactly when worse than the threshold: never one at or better than it.
        assert (job_id in stopped) == (value > thresholds[reached[-1]])
    # At least the best 1/eta of the runs at each band pass it.
    for band, threshold in thresholds.items():
        at_band = sorted(sign * h[band - 1] for h in histories.values() if len(h) >= band)
        if at_band:
            assert sum(v <= threshold for v in at_band) >= int(1.0 / eta * len(at_band)) + 1
