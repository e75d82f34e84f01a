"""A W&B random or bayes sweep's search space: each parameter's distribution and how it is drawn.

W&B's distributions (`wandb/sweeps` `src/sweeps/config/schema.json`), drawn with
Python's `random` seeded by the spec's `seed`, so a runfile regenerates identically.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from batchrun.sweeps._common import Param

__all__ = ["Distribution", "SearchSpace", "random_points", "sampler", "search_space"]


class _Gridspec(Protocol):
    """The parts of a `gridspec.Gridspec` a search space is made from (gridspec imports this module)."""

    @property
    def method(self) -> str: ...
    @property
    def _params(self) -> tuple[Param, ...]: ...
    @property
    def _template(self) -> str: ...
    @property
    def _renderers(self) -> tuple[Callable[[Any], Any], ...]: ...
    @property
    def _lstrip(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class Distribution:
    """A validated W&B distribution: what random draws from and bayes searches."""

    dist: str  # a key of _DISTRIBUTIONS; categorical_w_probabilities reads as categorical
    values: tuple[Any, ...]  # categorical values, or the constant's one value
    weights: tuple[float, ...] | None  # categorical probabilities, if given
    nums: dict[str, Any]  # min, max, q, mu, sigma, a, b as they apply, defaults filled in
    sample: Callable[[random.Random], Any]

    def __call__(self, rng: random.Random) -> Any:
        return self.sample(rng)


class SearchSpace(NamedTuple):
    """A random or bayes gridspec's parameters and how a point becomes its command."""

    names: tuple[str, ...]
    distributions: tuple[Distribution, ...]
    template: str
    renderers: tuple[Callable[[Any], Any], ...]
    lstrip: bool

    def command(self, values: Sequence[Any]) -> str:
        """Render one point (a value per parameter, in order) exactly as random search renders it."""
        line = self.template.format(*(render(v) for render, v in zip(self.renderers, values, strict=True)))
        return line.lstrip() if self.lstrip else line


def search_space(gridspec: _Gridspec) -> SearchSpace:
    """Return the distributions and command template of a W&B random or bayes gridspec."""
    params = gridspec._params
    if gridspec.method == "grid" or not all(isinstance(p.draw, Distribution) for p in params):
        raise ValueError("search_space needs a W&B random or bayes gridspec")
    return SearchSpace(tuple(p.name for p in params), tuple(p.draw for p in params),  # type: ignore[misc]
                       gridspec._template, gridspec._renderers, gridspec._lstrip)


def random_points(
    params: Sequence[Param], renderers: Sequence[Callable[[Any], Any]], seed: int | None
) -> Iterator[list[Any]]:
    """Draw points without end, reproducibly from `seed`, each value rendered."""
    rng = random.Random(seed)
    draws = [(p.draw, render) for p, render in zip(params, renderers, strict=True) if p.draw is not None]
    while True:
        yield [render(draw(rng)) for draw, render in draws]


def _quantize(x: float, q: float) -> float:
    """round(x / q) * q, half to even like numpy.round, but exact for a decimal q."""
    n = round(x / q)
    return n * q if isinstance(q, int) else float(Decimal(n) * Decimal(repr(q)))


def sampler(
    dist: str, values: list[Any], weights: list[float] | None, nums: dict[str, Any]
) -> Callable[[random.Random], Any]:
    if dist == "constant":
        return lambda rng: values[0]
    if dist == "categorical":
        if weights is None:
            return lambda rng: rng.choice(values)
        return lambda rng: rng.choices(values, weights)[0]
    if dist == "int_uniform":
        return lambda rng: rng.randint(nums["min"], nums["max"])
    lo, hi = nums.get("min", 0.0), nums.get("max", 1.0)
    mu, sigma = nums.get("mu", 0.0), nums.get("sigma", 1.0)
    draws: dict[str, Callable[[random.Random], float]] = {
        "uniform": lambda rng: rng.uniform(lo, hi),
        "log_uniform": lambda rng: math.exp(rng.uniform(lo, hi)),  # min, max: exponents of e
        "log_uniform_values": lambda rng: math.exp(rng.uniform(math.log(lo), math.log(hi))),
        "inv_log_uniform": lambda rng: math.exp(-rng.uniform(lo, hi)),  # log(1/X) in [min, max]
        "inv_log_uniform_values": lambda rng: math.exp(-rng.uniform(-math.log(hi), -math.log(lo))),
        "normal": lambda rng: rng.normalvariate(mu, sigma),
        "log_normal": lambda rng: rng.lognormvariate(mu, sigma),
        "beta": lambda rng: rng.betavariate(nums["a"], nums["b"]),
    }
    if not dist.startswith("q_"):
        return draws[dist]
    draw, q = draws[dist[2:]], nums["q"]
    return lambda rng: _quantize(draw(rng), q)
