"""`zip`, `when` and `exclude` over the W&B distributions of a random or bayes spec: how a point is drawn, and what a point may be.

A point is drawn by walking the spec's axes (`compose.lay_out`: a parameter or
a zip group each, a conditional parameter after the parameters its condition
reads): a parameter is drawn from its distribution; a zip group as one index
into its lists (a categorical over the rows, uniform), so its parameters vary
together; a conditional parameter only where its condition holds on the values
drawn before it, and where it does not, the point has no value for it and its
command no flag (a template per set of present parameters, `compose.Lines`).
A random sweep draws again where an `exclude` condition holds; the bayes search
walks the same axes, asking Optuna instead of `random` (`bayes_space`), and
reads its runfile's lines back by the shapes (`shapes`) a point may have,
keeping a parse only if it is a point this walk could give (`fits`).
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from batchrun.sweeps._common import Fail, Param
from batchrun.sweeps.compose import Composition, Layout, Lines, Rendering, kept_draws, lay_out, walk_grid
from batchrun.sweeps.wandb_space import Distribution

__all__ = ["Choose", "Drawn"]

# A discrete space with more combinations than this is not counted: its size is taken not to bind run_cap.
_COUNT_LIMIT = 100_000

# How an axis gets its values: (the axis, the values walked so far by name) -> a value per parameter of the axis.
Choose = Callable[[tuple[int, ...], Mapping[str, Any]], Sequence[Any]]


class Drawn:
    """A random or bayes spec's parameters with their composition (none: every parameter, in order, always present)."""

    def __init__(self, params: Sequence[Param], layout: Layout, render: Callable[[tuple[int, ...]], Rendering], path: Path) -> None:
        self.params = tuple(params)
        self.names = tuple(p.name for p in params)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.layout = layout
        self.axes, self.when, self.exclude = layout.axes, layout.when, layout.exclude
        self.lines = Lines(render)
        self.path = path

    @classmethod
    def plain(cls, params: Sequence[Param], rendering: Rendering, path: Path) -> Drawn:
        """A spec without zip, when or exclude: one shape, the spec's own template."""
        return cls(params, Layout(tuple((i,) for i in range(len(params))), {}, ()), lambda present: rendering, path)

    @classmethod
    def composed(cls, composition: Composition, params: Sequence[Param], render: Callable[[tuple[int, ...]], Rendering],
                 path: Path, fail: Fail, placed: frozenset[int]) -> Drawn:
        """Check the composition against the W&B parameters (a zipped one must be a plain `values` list)."""

        def zip_length(param: Param) -> int:
            dist = param.draw
            assert isinstance(dist, Distribution)
            if dist.dist != "categorical" or dist.weights is not None:
                what = "'values' with 'probabilities'" if dist.dist == "categorical" else f"distribution {dist.dist!r}"
                fail(f"'zip': parameter {param.name!r} has {what}; a zip group draws a row of its 'values' lists, each row alike",
                     composition.zip_line)
            return len(dist.values)

        return cls(params, lay_out(composition, params, zip_length, path, fail, placed), render, path)

    # ------------------------------------------------------------ walking

    def walk(self, choose: Choose) -> dict[int, Any]:
        """One point ({parameter index: value}, present parameters only), each axis's values from `choose`."""
        point: dict[int, Any] = {}
        named: dict[str, Any] = {}
        for axis in self.axes:
            condition = self.when.get(axis[0])
            if condition is not None and not condition.holds(named):
                continue
            for i, value in zip(axis, choose(axis, named), strict=True):
                point[i] = value
                named[self.names[i]] = value
        return point

    def draw(self, rng: random.Random) -> dict[int, Any]:
        """A point as random search draws it: each parameter from its distribution, a zip group a row at a time."""

        def choose(axis: tuple[int, ...], named: Mapping[str, Any]) -> Sequence[Any]:
            if len(axis) == 1:
                return (self.params[axis[0]].draw(rng),)  # type: ignore[misc]
            return self.zip_row(axis, rng.randrange(self.zip_rows(axis)))

        return self.walk(choose)

    def random_points(self, seed: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """A random sweep's (command, {name: value}) without end, reproducibly from `seed`; excluded draws drawn again."""
        rng = random.Random(seed)
        draws = ((point, self.named(point)) for point in iter(lambda: self.draw(rng), None))
        for point, named in kept_draws(draws, self.excluded, self.path):
            yield self.lines.line(point), named

    # ------------------------------------------------------------ zip groups

    def zip_rows(self, axis: tuple[int, ...]) -> int:
        return len(self.params[axis[0]].draw.values)  # type: ignore[union-attr]

    def zip_row(self, axis: tuple[int, ...], row: int) -> tuple[Any, ...]:
        return tuple(self.params[i].draw.values[row] for i in axis)  # type: ignore[union-attr]

    def zip_index(self, axis: tuple[int, ...], values: Sequence[Any]) -> int | None:
        """The row of a zip group that holds these values (of the same types), or None."""
        for row in range(self.zip_rows(axis)):
            if all(type(a) is type(b) and a == b for a, b in zip(self.zip_row(axis, row), values, strict=True)):
                return row
        return None

    # ------------------------------------------------------------ points

    def named(self, point: Mapping[int, Any]) -> dict[str, Any]:
        return {self.names[i]: value for i, value in sorted(point.items())}

    def command(self, params: Mapping[str, Any]) -> str:
        """A point's command ({name: value}, present parameters only)."""
        return self.lines.line({self.index[name]: value for name, value in params.items()})

    def excluded(self, params: Mapping[str, Any]) -> bool:
        """Whether an `exclude` condition holds at the point ({name: value})."""
        return any(c.holds(params) for c in self.exclude)

    def fits(self, params: Mapping[str, Any]) -> bool:
        """Whether a walk can give this point: each conditional parameter present exactly where its condition
        holds, each zip group a row of its lists, and no `exclude` condition holding."""
        walked: dict[str, Any] = {}
        for axis in self.axes:
            condition = self.when.get(axis[0])
            applies = condition is None or condition.holds(walked)
            present = [self.names[i] in params for i in axis]
            if any(present) != applies or not all(present) == any(present):
                return False
            if not applies:
                continue
            values = [params[self.names[i]] for i in axis]
            if len(axis) > 1 and self.zip_index(axis, values) is None:
                return False
            walked.update(zip((self.names[i] for i in axis), values, strict=True))
        return len(walked) == len(params) and not self.excluded(walked)

    def count_points(self, limit: int) -> int | None:
        """How many distinct points (commands) a discrete space has, when fewer than `limit`; None otherwise."""
        found = [_finite_values(p.draw) for p in self.params]
        columns = [c for c in found if c is not None]
        if len(columns) < len(found) or math.prod(len(columns[axis[0]]) for axis in self.axes) > _COUNT_LIMIT:
            return None
        seen = set()
        for point in walk_grid(self.layout, self.names, columns):
            seen.add(self.lines.line(point))
            if len(seen) >= limit:
                return None
        return len(seen)

    def shapes(self) -> Iterator[tuple[int, ...]]:
        """The sets of present parameters (indices, in order) a point may have, the fullest first.

        Parameters with the same condition are present together (it reads the
        same values, walked before either); a parameter whose condition names a
        conditional parameter is present only with it (a condition naming a
        parameter the point lacks is false). 2 ** (distinct conditions) sets at most.
        """
        together: dict[str, set[int]] = {}
        for i, condition in self.when.items():
            together.setdefault(ast.dump(condition.tree), set()).add(i)
        groups = [frozenset(members) for members in together.values()]
        needs = {group: {self.index[n] for i in group for n in self.when[i].names} & self.when.keys() for group in groups}
        always = [i for i in range(len(self.params)) if i not in self.when]
        subsets: list[frozenset[int]] = [frozenset()]
        for group in groups:
            subsets += [s | group for s in subsets]
        for subset in sorted(subsets, key=len, reverse=True):
            if all(needs[group] <= subset for group in groups if group <= subset):
                yield tuple(sorted((*always, *subset)))


def _finite_values(dist: Any) -> Sequence[Any] | None:
    """Every value a distribution can draw, when they are few (categorical, constant, int_uniform); else None."""
    if isinstance(dist, Distribution):
        if dist.dist in ("categorical", "constant"):
            return dist.values
        if dist.dist == "int_uniform":
            return range(dist.nums["min"], dist.nums["max"] + 1)
    return None
