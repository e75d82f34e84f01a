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
imported only here and only when a proposal is needed.

This module never runs, stops or records a job: the launch does.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, cast

from batchrun.errors import BatchrunError, GridspecError
from batchrun.sweeps.objective import Goal, Metric, run_values
from batchrun.sweeps.wandb_space import Distribution, SearchSpace, search_space

if TYPE_CHECKING:
    from batchrun.metrics.file import RunMetrics
    from batchrun.sweeps.gridspec import Gridspec

__all__ = ["INSTALL_HINT", "BayesSpec", "FinishedRun", "SweepState", "finished_run", "next_commands", "observed_values",
           "propose", "sweep_state"]

INSTALL_HINT = "method 'bayes' needs Optuna: pip install 'batchrun[bayes]'"
# Random points before TPE models the results: Optuna's default of 10, fewer
# for small run caps; TPE needs a few results to split into good and bad.
_STARTUP_MAX = 10
# A normal distribution is searched in its probability space, as W&B does;
# these bounds keep the inverse CDF finite (about 4.75 sigma).
_CDF_EPS = 1e-6
# Tries before giving up on a new point: TPE's proposals first, then random
# draws; only a small discrete space that is used up exhausts both.
_TPE_TRIES = 20
_RANDOM_TRIES = 1000
# W&B's impute value when no run logged a valid value (bayes_search.impute).
_FAILED_VALUE = 0.0
# Numbers as str() and json.dumps() write them.
_NUMBER = r"[-+0-9.eE]+"
# A number no context changes, rendered to find what surrounds a number.
_MARKER = 7654321


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


@dataclass(frozen=True)
class _Dim:
    """One searched parameter: the sampler's call that W&B random makes, searched by Optuna."""

    index: int
    call: str  # the random.Random method the W&B sampler calls: uniform, randint, choice, ...
    low: float
    high: float
    dist: Distribution


class _Probe:
    """Stands in for random.Random in a W&B sampler: records or fixes the one draw it makes.

    Every W&B draw is one call of uniform, randint, choice, choices,
    normalvariate, lognormvariate or betavariate; the rest of the sampler
    (exp, quantization) is left to W&B's own code, so a point renders
    exactly as random search would render the same draw.
    """

    def __init__(self, x: Any = None) -> None:
        self.x = x
        self.calls: list[tuple[Any, ...]] = []

    def draw(self, dist: Distribution) -> Any:
        """Run W&B's sampler with this probe as its random source."""
        return dist(cast(random.Random, self))

    def _draw(self, *call: Any) -> Any:
        self.calls.append(call)
        return self.x if self.x is not None else call[1]

    def uniform(self, a: float, b: float) -> float:
        return float(self._draw("uniform", a, b))

    def randint(self, a: int, b: int) -> int:
        return int(self._draw("randint", a, b))

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self._draw("choice", 0, len(seq) - 1)]

    def choices(self, population: Sequence[Any], weights: Any = None, **_: Any) -> list[Any]:
        return [population[self._draw("choice", 0, len(population) - 1)]]

    def normalvariate(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        return NormalDist(mu, sigma).inv_cdf(self._draw("normal", _CDF_EPS, 1 - _CDF_EPS, mu, sigma))

    def lognormvariate(self, mu: float, sigma: float) -> float:
        return math.exp(self.normalvariate(mu, sigma))

    def betavariate(self, alpha: float, beta: float) -> float:
        return float(self._draw("beta", 0.0, 1.0))


class BayesSpec:
    """A bayes gridspec with its search space: what `propose` needs."""

    def __init__(self, gridspec: Gridspec) -> None:
        if gridspec.method != "bayes" or gridspec.metric is None or gridspec.run_cap is None:
            raise ValueError("BayesSpec needs a gridspec with 'method: bayes', a metric and a run_cap")
        self.gridspec = gridspec
        self.metric: Metric = gridspec.metric
        self.run_cap: int = gridspec.run_cap
        self.seed: int = gridspec.seed or 0
        self.space: SearchSpace = search_space(gridspec)
        self.names = self.space.names
        self.constants: dict[int, Any] = {}
        self.dims: list[_Dim] = []
        for index, dist in enumerate(self.space.distributions):
            probe = _Probe()
            value = probe.draw(dist)
            call = probe.calls[0] if probe.calls else None
            if call is None or call[1] == call[2] or (call[0] == "normal" and call[4] == 0):
                self.constants[index] = value  # constant, one value, or sigma 0: nothing to search
            else:
                self.dims.append(_Dim(index, call[0], call[1], call[2], dist))
        if not self.dims:
            raise GridspecError("method 'bayes' needs at least one parameter that varies", gridspec.path)
        self._pattern, self._slots = self._compile_parser()

    def command(self, params: Mapping[str, Any]) -> str:
        """Render a point exactly as W&B random search renders its draws."""
        return self.space.command([params[name] for name in self.names])

    def params_of(self, command: str) -> dict[str, Any] | None:
        """Return the point a runfile line renders, or None if no point renders it."""
        match = self._pattern.fullmatch(" " + command if self.space.lstrip else command)
        if match is None:
            return None
        values: dict[int, Any] = dict(self.constants)
        for group, (index, choices) in zip(match.groups(), self._slots, strict=True):
            if choices is not None:
                value = choices[group]
            else:
                try:
                    value = int(group) if re.fullmatch(r"[-+]?\d+", group) else float(group)
                except ValueError:
                    return None
            if values.setdefault(index, value) != value:
                return None
        params = {self.names[i]: values[i] for i in range(len(self.names))}
        return params if self.command(params) == command else None

    def _compile_parser(self) -> tuple[re.Pattern[str], list[tuple[int, dict[str, Any] | None]]]:
        """Turn the command template into a regex with a group per parameter slot."""
        choices_of = {d.index: d.dist.values for d in self.dims if d.call == "choice"}
        choices_of.update({i: (v,) for i, v in self.constants.items()})
        pieces: list[str] = []
        slots: list[tuple[int, dict[str, Any] | None]] = []
        for literal, field, _, _ in string.Formatter().parse(self.space.template):
            pieces.append(re.escape(literal))
            if field is None:
                continue
            index, _, rest = field.partition("[")
            i, j = int(index), int(rest[:-1]) if rest else None
            if i in choices_of:
                texts: dict[str, Any] = {}
                for value in choices_of[i]:
                    rendered = self.space.renderers[i](value)
                    texts.setdefault(rendered if j is None else rendered[j], value)
                pieces.append("(" + "|".join(map(re.escape, sorted(texts, key=len, reverse=True))) + ")")
                slots.append((i, texts))
            else:  # the context around a number (" --x=" for ${args_no_boolean_flags}) is its marker's
                rendered = self.space.renderers[i](_MARKER)
                before, _, after = (rendered if j is None else rendered[j]).partition(str(_MARKER))
                pieces.append(f"{re.escape(before)}({_NUMBER}){re.escape(after)}")
                slots.append((i, None))
        return re.compile("".join(pieces), re.DOTALL), slots

    # ------------------------------------------------------------ Optuna's view

    def to_internal(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Map a point's W&B values to the coordinates Optuna searches."""
        return {self.names[d.index]: _inverse(d, params[self.names[d.index]]) for d in self.dims}

    def from_internal(self, internal: Mapping[str, Any]) -> dict[str, Any]:
        """Map Optuna's coordinates to W&B values, through W&B's own sampler."""
        values = dict(self.constants)
        for d in self.dims:
            values[d.index] = _Probe(internal[self.names[d.index]]).draw(d.dist)
        return {self.names[i]: values[i] for i in range(len(self.names))}

    def optuna_distributions(self) -> dict[str, Any]:
        optuna = _optuna()
        dists: dict[str, Any] = {}
        for d in self.dims:
            name = self.names[d.index]
            if d.call == "choice":
                dists[name] = optuna.distributions.CategoricalDistribution(tuple(range(int(d.high) + 1)))
            elif d.call == "randint":
                dists[name] = optuna.distributions.IntDistribution(int(d.low), int(d.high))
            else:
                dists[name] = optuna.distributions.FloatDistribution(min(d.low, d.high), max(d.low, d.high))
        return dists


def _inverse(d: _Dim, value: Any) -> Any:
    """The coordinate of a W&B value: the draw that W&B's sampler turns into it."""
    if d.call == "choice":
        return next((i for i, v in enumerate(d.dist.values) if v == value and type(v) is type(value)),
                    next(i for i, v in enumerate(d.dist.values) if v == value))
    base = d.dist.dist.removeprefix("q_")
    try:
        if base in ("log_uniform", "log_uniform_values"):
            x = math.log(value)
        elif base in ("inv_log_uniform", "inv_log_uniform_values"):
            x = -math.log(value)
        elif base == "normal":
            x = NormalDist(d.dist.nums["mu"], d.dist.nums["sigma"]).cdf(value)
        elif base == "log_normal":
            x = NormalDist(d.dist.nums["mu"], d.dist.nums["sigma"]).cdf(math.log(value))
        else:
            x = value
    except ValueError:  # a quantized value of 0 has no log: the low end
        x = min(d.low, d.high) if base.startswith("log") else max(d.low, d.high)
    low, high = min(d.low, d.high), max(d.low, d.high)
    x = min(max(x, low), high)  # quantizing may step past a bound
    return int(round(x)) if d.call == "randint" else float(x)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise BatchrunError(INSTALL_HINT) from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


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
    optuna = _optuna()
    seed = _derived_seed(spec, finished, running)
    dists = spec.optuna_distributions()
    startup = max(2, min(_STARTUP_MAX, spec.run_cap // 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True,
                                             n_startup_trials=startup)
    direction = "minimize" if spec.metric.goal is Goal.MINIMIZE else "maximize"
    study = optuna.create_study(direction=direction, sampler=sampler)
    known: set[str] = set()
    # Canonical order: the same runs given in another order give the same study.
    runs = sorted(zip((spec.command(r.params) for r in finished), finished, observed_values(spec, finished), strict=True),
                  key=lambda crv: crv[0])
    for command, run, value in runs:
        known.add(command)
        study.add_trial(optuna.trial.create_trial(params=spec.to_internal(run.params), distributions=dists, value=value))
    for command, params in sorted(((spec.command(p), p) for p in running), key=lambda cp: cp[0]):
        known.add(command)
        study.add_trial(optuna.trial.create_trial(params=spec.to_internal(params), distributions=dists,
                                                  state=optuna.trial.TrialState.RUNNING))
    rng = random.Random(seed)
    proposals: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while len(proposals) < n:
            point = _new_point(spec, study, dists, known, rng)
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
        """How many points to propose now: free slots, up to run_cap runs in all."""
        return max(0, min(free_slots, spec.run_cap - len(self.finished) - len(self.in_flight)))


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
    n = state.to_propose(spec, free_slots)
    return [spec.command(p) for p in propose(spec, state.finished, state.in_flight, n)] if n else []


def _new_point(spec: BayesSpec, study: Any, dists: dict[str, Any], known: set[str], rng: random.Random) -> dict[str, Any] | None:
    # An asked trial stays RUNNING: the constant liar steers the next ask away from it.
    for _ in range(_TPE_TRIES):
        point = spec.from_internal(study.ask(dists).params)
        if spec.command(point) not in known and not spec.gridspec.excluded(point):
            return point
    for _ in range(_RANDOM_TRIES):
        values = [dist(rng) for dist in spec.space.distributions]
        point = dict(zip(spec.names, values, strict=True))
        if spec.command(point) not in known and not spec.gridspec.excluded(point):
            return point
    return None
