"""Bayesian search (W&B's `method: bayes`) offline: the next points from the runs so far.

`propose(spec, finished, running, n)` rebuilds the optimizer from scratch on
every call, from the finished runs' results and the points still running,
and returns n new points; nothing else is kept, so a launch killed at any
moment resumes the same search from its runfile and metrics files alone.
A point becomes its command exactly as `method: random` renders one
(`BayesSpec.command`), and a runfile line becomes its point again
(`BayesSpec.params_of`), so the runfile is the record of what was tried.

Semantics follow `wandb/sweeps` `bayes_search.py`: a run's value is its best
logged value of the metric (history and summary); failed runs, and finished
ones that logged no value, are imputed with the worst value any finished or
failed run logged (0.0 when there is none); running runs are taken into
account so that parallel slots do not pick the same point. The optimizer is
Optuna's TPE sampler with the constant liar (running points count as bad
results until they finish) instead of W&B's Gaussian process; README's
"Bayesian search" section says how the two differ. With the same `seed` and
the same results, the proposals are the same. Optuna is the `bayes` extra,
imported (`bayes_space.import_optuna`) only when a proposal is needed. The
space Optuna searches is `bayes_space`'s; reading lines back, `bayes_lines`'.

This module never runs, stops or records a job: the launch does.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchrun.sweeps.bayes_space import INSTALL_HINT, BayesSpec, import_optuna
from batchrun.sweeps.objective import Goal, Metric, run_values

if TYPE_CHECKING:
    from batchrun.metrics.file import RunMetrics

__all__ = ["INSTALL_HINT", "BayesSpec", "FinishedRun", "SweepState", "finished_run", "next_commands", "next_points", "observed_values",
           "propose", "sweep_state"]

# Random points before TPE models the results: Optuna's default of 10, fewer
# for small run caps; TPE needs a few results to split into good and bad.
_STARTUP_MAX = 10
# Tries before giving up on a new point: TPE's proposals first, then random
# draws; only a small discrete space that is used up exhausts both.
_TPE_TRIES = 20
_RANDOM_TRIES = 1000
# W&B's impute value when no run logged a valid value (bayes_search.impute).
_FAILED_VALUE = 0.0


@dataclass(frozen=True)
class FinishedRun:
    """A run that ended: its point, its valid values of the metric, and whether it succeeded.

    A stopped run (hyperband) succeeded: it is judged by what it logged.
    Failed, crashed, timed-out and killed runs did not: they get the worst value.
    """

    params: Mapping[str, Any]
    values: Sequence[float]
    succeeded: bool


def finished_run(params: Mapping[str, Any], metrics: RunMetrics | None, metric: Metric, succeeded: bool) -> FinishedRun:
    """Build a FinishedRun from what the job logged (None: no metrics file)."""
    return FinishedRun(params, run_values(metrics, metric.name), succeeded)


def observed_values(spec: BayesSpec, finished: Sequence[FinishedRun]) -> list[float]:
    """Each finished run's value for the optimizer, in order, imputed as W&B imputes.

    A run's value is its best logged value; a failed run, or one that logged
    no valid value, gets the worst value any of the runs logged (W&B's
    `impute: worst`, its default), or 0.0 when none logged one.
    """
    logged = [v for r in finished for v in r.values]
    worst = spec.metric.worst(logged) if logged else _FAILED_VALUE
    return [spec.metric.best(r.values) if r.succeeded and r.values else worst for r in finished]


def _derived_seed(spec: BayesSpec, finished: Sequence[FinishedRun], running: Sequence[Mapping[str, Any]]) -> int:
    """A seed from the spec's seed and everything known, so equal inputs give equal proposals
    while each new state draws afresh (one seed for every call would repeat its random points)."""
    state = [spec.seed, sorted(spec.command(r.params) + f" {list(r.values)} {r.succeeded}" for r in finished),
             sorted(spec.command(p) for p in running)]
    return int.from_bytes(hashlib.sha256(json.dumps(state).encode()).digest()[:4], "big")


def propose(spec: BayesSpec, finished: Sequence[FinishedRun], running: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """Return up to n new points (W&B values by parameter name), none equal to a known one.

    Args:
        finished: every run of the sweep that ended (succeeded, failed or stopped).
        running: the points of runs running or waiting to run.
        n: how many free slots to fill.

    Returns:
        Fewer than n points only when the space has no new point left.

    Raises:
        BatchrunError: Optuna is not installed (the one-line install hint).
    """
    optuna = import_optuna()
    seed = _derived_seed(spec, finished, running)
    dists = spec.optuna_distributions()
    startup = max(2, min(_STARTUP_MAX, spec.run_cap // 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group: TPE models each set of parameters that occur together, so a conditional parameter
        # is modelled from the trials that have it (Optuna's answer to define-by-run spaces).
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True,
                                             n_startup_trials=startup)
    direction = "minimize" if spec.metric.goal is Goal.MINIMIZE else "maximize"
    study = optuna.create_study(direction=direction, sampler=sampler)
    known: set[str] = set()
    # Canonical order: the same runs given in another order give the same study.
    runs = sorted(zip((spec.command(r.params) for r in finished), finished, observed_values(spec, finished), strict=True),
                  key=lambda crv: crv[0])
    for command, run, value in runs:
        known.add(command)
        internal = spec.to_internal(run.params)
        study.add_trial(optuna.trial.create_trial(params=internal, distributions={k: dists[k] for k in internal}, value=value))
    for command, params in sorted(((spec.command(p), p) for p in running), key=lambda cp: cp[0]):
        known.add(command)
        internal = spec.to_internal(params)
        study.add_trial(optuna.trial.create_trial(params=internal, distributions={k: dists[k] for k in internal},
                                                  state=optuna.trial.TrialState.RUNNING))
    rng = random.Random(seed)
    proposals: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while len(proposals) < n:
            point = _new_point(spec, study, known, rng)
            if point is None:
                break
            known.add(spec.command(point))
            proposals.append(point)
    return proposals


# Job states (journal's lower-case names) whose runs ended, and how they count.
_SUCCEEDED = frozenset({"succeeded", "stopped"})
_FAILED = frozenset({"failed", "timeout", "killed"})


@dataclass(frozen=True)
class SweepState:
    """A bayes sweep's runfile seen as the optimizer sees it."""

    finished: list[FinishedRun]
    in_flight: list[dict[str, Any]]  # points running, waiting or interrupted: they will run
    foreign: int  # lines that are no point of the spec (written by hand): not counted

    def to_propose(self, spec: BayesSpec, free_slots: int) -> int:
        """How many points to propose now: free slots, up to run_cap runs in all (or every point of a smaller space)."""
        total = spec.run_cap if spec.space_size is None else spec.space_size
        return max(0, min(free_slots, total - len(self.finished) - len(self.in_flight)))


def sweep_state(spec: BayesSpec, jobs: Iterable[tuple[str, str | None, RunMetrics | None]]) -> SweepState:
    """Read (command, state or None if never run, metrics) of every runfile line.

    succeeded and stopped runs are finished with their values; failed,
    timed-out and killed ones are finished and imputed; the rest (pending,
    running, interrupted) are in flight.
    """
    finished: list[FinishedRun] = []
    in_flight: list[dict[str, Any]] = []
    foreign = 0
    for command, state, metrics in jobs:
        params = spec.params_of(command)
        if params is None:
            foreign += 1
        elif state in _SUCCEEDED or state in _FAILED:
            finished.append(finished_run(params, metrics, spec.metric, state in _SUCCEEDED))
        else:
            in_flight.append(params)
    return SweepState(finished, in_flight, foreign)


def next_commands(spec: BayesSpec, state: SweepState, free_slots: int) -> list[str]:
    """The runfile lines to append now: one proposal per free slot, up to run_cap in all."""
    return [command for command, _point in next_points(spec, state, free_slots)]


def next_points(spec: BayesSpec, state: SweepState, free_slots: int) -> list[tuple[str, dict[str, Any]]]:
    """`next_commands`, each with its point (what its run asks for may depend on it: `sweeps.resources`)."""
    n = state.to_propose(spec, free_slots)
    return [(spec.command(p), p) for p in propose(spec, state.finished, state.in_flight, n)] if n else []


def _new_point(spec: BayesSpec, study: Any, known: set[str], rng: random.Random) -> dict[str, Any] | None:
    # An asked trial stays RUNNING: the constant liar steers the next ask away from it.
    for _ in range(_TPE_TRIES):
        point = spec.suggest(study.ask())
        if spec.command(point) not in known and not spec.drawn.excluded(point):
            return point
    for _ in range(_RANDOM_TRIES):
        point = spec.drawn.named(spec.drawn.draw(rng))
        if spec.command(point) not in known and not spec.drawn.excluded(point):
            return point
    return None
