"""A bayes gridspec's search space as Optuna searches it: a coordinate per varying parameter.

`BayesSpec` holds the W&B distributions of a `method: bayes` gridspec and maps
each to the coordinate Optuna searches: the one draw W&B's random sampler
makes (uniform, randint, choice, a normal's probability, ...), found by
running W&B's own sampler with a probe for its random source. A coordinate
becomes its W&B value through that same sampler, so a proposed point renders
exactly as `method: random` would render the same draw; `bayes_lines` reads
the rendered lines back. The optimizer itself is in `bayes`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, cast

from batchrun.errors import BatchrunError, GridspecError
from batchrun.sweeps.bayes_lines import LineParser
from batchrun.sweeps.drawn import Drawn
from batchrun.sweeps.objective import Metric
from batchrun.sweeps.wandb_space import Distribution, SearchSpace, search_space

if TYPE_CHECKING:
    from batchrun.sweeps.gridspec import Gridspec

__all__ = ["INSTALL_HINT", "BayesSpec", "import_optuna"]

INSTALL_HINT = "method 'bayes' needs Optuna: pip install 'batchrun[bayes]'"
# A normal distribution is searched in its probability space, as W&B does;
# these bounds keep the inverse CDF finite (about 4.75 sigma).
_CDF_EPS = 1e-6


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
    """A bayes gridspec with its search space: what `propose` needs.

    Each parameter that varies is a coordinate (`dims`); each zip group one
    categorical coordinate, its row, named "zip" and its members' names (a
    space, which no parameter's name holds, keeps it apart). A conditional
    parameter is suggested only where its condition holds on the values
    suggested before it (Optuna's define-by-run space), so a trial has the
    coordinates of the parameters its point has.
    """

    def __init__(self, gridspec: Gridspec) -> None:
        if gridspec.method != "bayes" or gridspec.metric is None or gridspec.run_cap is None:
            raise ValueError("BayesSpec needs a gridspec with 'method: bayes', a metric and a run_cap")
        self.gridspec = gridspec
        self.metric: Metric = gridspec.metric
        self.run_cap: int = gridspec.run_cap
        self.seed: int = gridspec.seed or 0
        self.space: SearchSpace = search_space(gridspec)
        self.names = self.space.names
        self.drawn: Drawn = gridspec.drawn()
        self.zips = {axis: "zip " + " ".join(self.names[i] for i in axis) for axis in self.drawn.axes if len(axis) > 1}
        zipped = {i for axis in self.zips for i in axis}
        self.constants: dict[int, Any] = {}
        self.dims: dict[int, _Dim] = {}
        for index, dist in enumerate(self.space.distributions):
            if index in zipped:
                continue
            probe = _Probe()
            value = probe.draw(dist)
            call = probe.calls[0] if probe.calls else None
            if call is None or call[1] == call[2] or (call[0] == "normal" and call[4] == 0):
                self.constants[index] = value  # constant, one value, or sigma 0: nothing to search
            else:
                self.dims[index] = _Dim(index, call[0], call[1], call[2], dist)
        if not self.dims and not any(self.drawn.zip_rows(axis) > 1 for axis in self.zips):
            raise GridspecError("method 'bayes' needs at least one parameter that varies", gridspec.path)
        # Slots that hold one of a few values: categorical, zipped and constant parameters.
        self._choices = {i: d.dist.values for i, d in self.dims.items() if d.call == "choice"}
        self._choices.update({i: self.space.distributions[i].values for i in zipped})
        self._choices.update({i: (v,) for i, v in self.constants.items()})
        self._parsers: dict[tuple[int, ...], LineParser] = {}
        self._parsed: dict[str, dict[str, Any] | None] = {}  # a runfile's lines are read again at every proposal
        self._distributions: dict[str, Any] | None = None

    def command(self, params: Mapping[str, Any]) -> str:
        """Render a point exactly as W&B random search renders its draws (a parameter that does not apply: absent)."""
        return self.drawn.command(params)

    def params_of(self, command: str) -> dict[str, Any] | None:
        """Return the point a runfile line renders, or None if no point of the search renders it.

        A line is read by each shape a point may have (which conditional
        parameters it holds), and kept only as a point the search could
        propose: conditions and zip rows as the walk gives them, not excluded.
        """
        if command not in self._parsed:
            found = None
            for shape in self.drawn.shapes():
                params = self._parser(shape).params_of(command)
                if params is not None and self.drawn.fits(params):
                    found = params
                    break
            self._parsed[command] = found
        found = self._parsed[command]
        return None if found is None else dict(found)

    def _parser(self, shape: tuple[int, ...]) -> LineParser:
        if shape not in self._parsers:
            template, renderers, lstrip = self.drawn.lines.rendering(shape)
            space = SearchSpace(tuple(self.names[i] for i in shape), tuple(self.space.distributions[i] for i in shape),
                                template, tuple(renderers), lstrip)
            choices = {k: self._choices[i] for k, i in enumerate(shape) if i in self._choices}
            constants = {k: self.constants[i] for k, i in enumerate(shape) if i in self.constants}
            self._parsers[shape] = LineParser(space, choices, constants, self.command)
        return self._parsers[shape]

    @cached_property
    def space_size(self) -> int | None:
        """How many points the space has, when that is fewer than run_cap (a small discrete space); else None."""
        return self.drawn.count_points(self.run_cap)

    # ------------------------------------------------------------ Optuna's view

    def to_internal(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Map a point's W&B values to the coordinates Optuna searches (those of the parameters it has)."""
        internal = {self.names[i]: _inverse(d, params[self.names[i]]) for i, d in self.dims.items() if self.names[i] in params}
        for axis, name in self.zips.items():
            if self.names[axis[0]] in params:
                internal[name] = self.drawn.zip_index(axis, [params[self.names[i]] for i in axis])
        return internal

    def optuna_distributions(self) -> dict[str, Any]:
        """Each coordinate's Optuna distribution, by name."""
        if self._distributions is None:
            optuna = import_optuna()
            dists: dict[str, Any] = {}
            for i, d in self.dims.items():
                if d.call == "choice":
                    dists[self.names[i]] = optuna.distributions.CategoricalDistribution(tuple(range(int(d.high) + 1)))
                elif d.call == "randint":
                    dists[self.names[i]] = optuna.distributions.IntDistribution(int(d.low), int(d.high))
                else:
                    dists[self.names[i]] = optuna.distributions.FloatDistribution(min(d.low, d.high), max(d.low, d.high))
            for axis, name in self.zips.items():
                dists[name] = optuna.distributions.CategoricalDistribution(tuple(range(self.drawn.zip_rows(axis))))
            self._distributions = dists
        return self._distributions

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask an Optuna trial for a point, define-by-run: a conditional parameter only where its condition holds."""
        dists = self.optuna_distributions()

        def choose(axis: tuple[int, ...], named: Mapping[str, Any]) -> Sequence[Any]:
            if axis in self.zips:
                return self.drawn.zip_row(axis, _suggest(trial, self.zips[axis], dists[self.zips[axis]]))
            i = axis[0]
            if i in self.constants:
                return (self.constants[i],)
            return (_Probe(_suggest(trial, self.names[i], dists[self.names[i]])).draw(self.dims[i].dist),)

        return self.drawn.named(self.drawn.walk(choose))


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    """Optuna's suggest call for a distribution: the same distribution the finished runs' trials were made with."""
    distributions = import_optuna().distributions
    if isinstance(dist, distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high)
    return trial.suggest_float(name, dist.low, dist.high)


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


def import_optuna() -> Any:
    """Optuna, quiet; its absence is the one-line install hint."""
    try:
        import optuna
    except ImportError as err:
        raise BatchrunError(INSTALL_HINT) from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
