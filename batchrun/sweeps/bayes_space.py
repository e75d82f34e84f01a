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
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, cast

from batchrun.errors import BatchrunError, GridspecError
from batchrun.sweeps.bayes_lines import LineParser
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
        choices: dict[int, tuple[Any, ...]] = {d.index: d.dist.values for d in self.dims if d.call == "choice"}
        choices.update({i: (v,) for i, v in self.constants.items()})
        self._parser = LineParser(self.space, choices, self.constants, self.command)

    def command(self, params: Mapping[str, Any]) -> str:
        """Render a point exactly as W&B random search renders its draws."""
        return self.space.command([params[name] for name in self.names])

    def params_of(self, command: str) -> dict[str, Any] | None:
        """Return the point a runfile line renders, or None if no point renders it."""
        return self._parser.params_of(command)

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
        optuna = import_optuna()
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


def import_optuna() -> Any:
    """Optuna, quiet; its absence is the one-line install hint."""
    try:
        import optuna
    except ImportError as err:
        raise BatchrunError(INSTALL_HINT) from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
