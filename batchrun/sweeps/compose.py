"""Grids that compose: `zip` (parameters that vary together), `exclude` (points to skip), `when`
(a parameter only where a condition holds), in both gridspec formats.

`read_composition` takes these keys out of a spec before the format's own
parser reads it (so every spec without them is read exactly as before);
`lay_out` checks them against the parameters and orders the axes: one per
parameter or zip group, a conditional parameter's axis after the parameters
its condition names. `Composed` walks a grid's points (`walk_grid`), the last
axis varying fastest, a point skipped when an `exclude` condition holds; a
random or bayes spec draws its points along the same axes (`drawn`). A point
where a conditional parameter does not apply has no value for it, and its
command no flag for it: each set of present parameters gets its own command
template, made by the format (`Lines`, from the format's `render`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.errors import GridspecError
from batchrun.sweeps._common import Fail, Map, Param, kind
from batchrun.sweeps.condition import Condition, compile_condition

__all__ = ["Composed", "Composition", "Layout", "Lines", "grid_specs", "kept_draws", "lay_out", "read_composition", "union_points", "walk_grid"]

# Draws in a row that `exclude` may refuse before a random sweep is judged to exclude everything.
_MAX_EXCLUDED_DRAWS = 10_000

# template, renderers of the present parameters, strip the line's leading space
Rendering = tuple[str, Sequence[Callable[[Any], Any]], bool]


@dataclass
class Composition:
    """What a spec asked for beyond a product: read before the parameters are parsed."""

    zip_groups: list[list[str]] = field(default_factory=list)
    zip_line: int | None = None
    exclude: list[tuple[Any, int | None]] = field(default_factory=list)
    when: dict[str, tuple[Any, int | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.zip_groups or self.exclude or self.when)


def read_composition(spec: Map, fail: Fail) -> Composition:
    """Take `zip`, `exclude` and each parameter's `when` out of the spec (it is changed in place)."""
    found = Composition()
    line = spec.key_lines.get
    if "zip" in spec:
        raw = spec.pop("zip")
        groups = raw if isinstance(raw, list) and raw and all(isinstance(g, list) for g in raw) else [raw]
        for group in groups:
            if not isinstance(group, list) or len(group) < 2 or not all(isinstance(n, str) for n in group):
                fail(f"'zip' takes lists of two or more parameter names, such as [[lr, warmup]], not {kind(raw)}", line("zip"))
        found.zip_groups, found.zip_line = groups, line("zip")
    if "exclude" in spec:
        raw = spec.pop("exclude")
        items = raw if isinstance(raw, list) else [raw]
        found.exclude = [(item, line("exclude")) for item in items]
    _take_when(spec.get("parameters"), "", found.when)
    return found


def _take_when(section: Any, prefix: str, out: dict[str, tuple[Any, int | None]]) -> None:
    if not isinstance(section, Map):
        return
    for name, body in section.items():
        if isinstance(body, Map):
            if "when" in body:
                out[f"{prefix}{name}"] = (body.pop("when"), body.key_lines.get("when"))
            _take_when(body.get("parameters"), f"{prefix}{name}.", out)


@dataclass(frozen=True)
class Layout:
    """How a composed spec's points are walked: an axis per parameter or zip group, in walk order, and the conditions."""

    axes: tuple[tuple[int, ...], ...]
    when: dict[int, Condition]  # by the index of the parameter it is on
    exclude: tuple[Condition, ...]


def lay_out(composition: Composition, params: Sequence[Param], zip_length: Callable[[Param], int], path: Path, fail: Fail,
            placed: frozenset[int] = frozenset()) -> Layout:
    """Check a composition against the parameters and order its axes; grids and drawn spaces share this.

    `zip_length`: how many values a zipped parameter has (it refuses one that cannot be zipped).
    `placed`: the parameters placed with `${name}`, which cannot be conditional.
    """
    names = [p.name for p in params]
    index = {name: i for i, name in enumerate(names)}
    when: dict[int, Condition] = {}
    for name, (text, line) in composition.when.items():
        if name not in index:
            fail(f"'when' on {name!r}, which is not a parameter", line)
        if index[name] in placed:
            fail(f"parameter {name!r}: a conditional parameter cannot be placed with ${{{name}}}: it has no value where it does not apply", line)
        when[index[name]] = compile_condition(text, names, path, line, f"parameter {name!r}: when")
    exclude = tuple(compile_condition(text, names, path, line, "exclude") for text, line in composition.exclude)
    zipped: dict[int, list[int]] = {}
    for group in composition.zip_groups:
        members = []
        for name in group:
            if name not in index:
                fail(f"'zip' names {name!r}, which is not a parameter", composition.zip_line)
            if index[name] in zipped or index[name] in members:
                fail(f"'zip': parameter {name!r} is in two zip groups", composition.zip_line)
            if index[name] in when:
                fail(f"'zip': parameter {name!r} has a 'when'; a zip group varies as one", composition.zip_line)
            members.append(index[name])
        lengths = {names[i]: zip_length(params[i]) for i in members}
        if len(set(lengths.values())) > 1:
            fail("'zip': the parameters of a group need as many values each, not " + ", ".join(f"{n}: {c}" for n, c in lengths.items()),
                 composition.zip_line)
        for i in members:
            zipped[i] = members
    axes: list[tuple[int, ...]] = []
    for i in range(len(params)):
        if i in zipped:
            if zipped[i][0] == i:
                axes.append(tuple(zipped[i]))
        else:
            axes.append((i,))
    return Layout(_after_their_conditions(axes, when, names, fail), when, exclude)


class Lines:
    """A point's command: a template per set of present parameters, made by the format once each."""

    def __init__(self, render: Callable[[tuple[int, ...]], Rendering]) -> None:
        self.render = render
        self._renderings: dict[tuple[int, ...], Rendering] = {}

    def rendering(self, present: tuple[int, ...]) -> Rendering:
        """The template, renderers and strip flag of the parameters present (their indices, in order)."""
        if present not in self._renderings:
            self._renderings[present] = self.render(present)
        return self._renderings[present]

    def line(self, point: Mapping[int, Any]) -> str:
        """The command of a point ({parameter index: value}, present parameters only)."""
        present = tuple(sorted(point))
        template, renderers, lstrip = self.rendering(present)
        line = template.format(*(render(point[i]) for render, i in zip(renderers, present, strict=True)))
        return line.lstrip() if lstrip else line


class Composed:
    """The points of a composed grid, and their commands (a random or bayes spec's are `drawn.Drawn`'s)."""

    def __init__(self, composition: Composition, params: Sequence[Param], render: Callable[[tuple[int, ...]], Rendering],
                 path: Path, fail: Fail, placed: frozenset[int] = frozenset()) -> None:
        if any(p.values is None for p in params):
            raise ValueError("Composed walks grids: every parameter needs its values")
        self.params = tuple(params)
        self.lines = Lines(render)
        self.layout = lay_out(composition, params, lambda p: len(p.values), path, fail, placed)  # type: ignore[arg-type]

    def points(self) -> Iterator[dict[int, Any]]:
        """Each point as {parameter index: value}, present parameters only."""
        return walk_grid(self.layout, [p.name for p in self.params], [p.values for p in self.params])  # type: ignore[misc]

    def commands(self) -> Iterator[tuple[str, dict[int, Any]]]:
        for point in self.points():
            yield self.lines.line(point), point


def walk_grid(layout: Layout, names: Sequence[str], columns: Sequence[Sequence[Any]]) -> Iterator[dict[int, Any]]:
    """Each point of a grid ({parameter index: value}, present parameters only): the axes in their order, the last
    varying fastest; a zip group's columns row by row; a conditional axis only where its condition holds; a point
    where an `exclude` condition holds skipped."""
    named: dict[str, Any] = {}
    values: dict[int, Any] = {}
    axes = layout.axes

    def walk(k: int) -> Iterator[dict[int, Any]]:
        if k == len(axes):
            if not any(c.holds(named) for c in layout.exclude):
                yield dict(values)
            return
        axis = axes[k]
        condition = layout.when.get(axis[0])
        if condition is not None and not condition.holds(named):
            yield from walk(k + 1)
            return
        for element in zip(*(columns[i] for i in axis), strict=True) if len(axis) > 1 else ((v,) for v in columns[axis[0]]):
            for i, v in zip(axis, element, strict=True):
                values[i] = v
                named[names[i]] = v
            yield from walk(k + 1)
        for i in axis:
            values.pop(i, None)
            named.pop(names[i], None)

    return walk(0)


def _after_their_conditions(axes: list[tuple[int, ...]], when: dict[int, Condition], names: list[str], fail: Fail) -> tuple[tuple[int, ...], ...]:
    """Keep the declared order, but move a conditional parameter after the parameters its condition reads."""
    placed: set[str] = set()
    ordered: list[tuple[int, ...]] = []
    waiting = list(axes)
    while waiting:
        for k, axis in enumerate(waiting):
            condition = when.get(axis[0])
            if condition is None or condition.names - {names[axis[0]]} <= placed:
                ordered.append(axis)
                placed.update(names[i] for i in axis)
                del waiting[k]
                break
        else:
            stuck = names[waiting[0][0]]
            fail(f"parameter {stuck!r}: its 'when' depends, through other conditions, on itself", when[waiting[0][0]].line)
    return tuple(ordered)


_GRID_KEYS = ("parameters", "zip", "exclude")


def grid_specs(spec: Map, fail: Fail) -> list[Map]:
    """`grids:`: one spec per grid, each the top level's keys with the grid's parameters added (the grid's win),
    its `zip`, and the top level's `exclude` and its own."""
    grids = spec["grids"]
    where = spec.key_lines.get("grids")
    if not isinstance(grids, list) or not grids:
        fail(f"'grids' must be a non-empty list of grids (each with 'parameters'), not {kind(grids)}", where)
    out = []
    for grid in grids:
        if not isinstance(grid, Map):
            fail(f"each grid of 'grids' must be a mapping with 'parameters', not {kind(grid)}", where)
        for key in grid:
            if key not in _GRID_KEYS:
                fail(f"a grid of 'grids' takes {', '.join(_GRID_KEYS)}, not {key!r}", grid.key_lines.get(key))
        merged = Map()
        for key, value in spec.items():
            if key != "grids":
                merged[key] = value
                merged.key_lines[key] = spec.key_lines[key]
        parameters = Map()
        for section in (spec.get("parameters"), grid.get("parameters")):
            if isinstance(section, Map):
                for name, body in section.items():
                    parameters[name] = body
                    parameters.key_lines[name] = section.key_lines[name]
            elif section is not None:
                fail(f"'parameters' must be a mapping of names to values, not {kind(section)}", where)
        merged["parameters"] = parameters
        merged.key_lines["parameters"] = grid.key_lines.get("parameters") or spec.key_lines.get("parameters") or where or 1
        if "zip" in grid:
            merged["zip"], merged.key_lines["zip"] = grid["zip"], grid.key_lines["zip"]
        exclude = [*_listed(spec.get("exclude")), *_listed(grid.get("exclude"))]
        if exclude:
            merged["exclude"] = exclude
            merged.key_lines["exclude"] = grid.key_lines.get("exclude") or spec.key_lines.get("exclude") or 1
        out.append(merged)
    return out


def _listed(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def union_points(grids: Sequence[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The points of each grid in turn, a command already given by an earlier grid left out.

    Remembers a 128-bit hash per command (a union of grids holds its commands'
    hashes in memory; a single grid streams with flat memory).
    """
    seen: set[bytes] = set()
    for grid in grids:
        for command, point in grid.iter_points():
            digest = hashlib.blake2b(command.encode("utf-8", "surrogateescape"), digest_size=16).digest()
            if digest not in seen:
                seen.add(digest)
                yield command, point


def kept_draws(points: Iterator[tuple[Any, dict[str, Any]]], excluded: Callable[[dict[str, Any]], bool], path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A random sweep's draws that no `exclude` condition holds at; one excluding (nearly) every draw is an error."""
    refused = 0
    for item in points:
        if not excluded(item[1]):
            refused = 0
            yield item
            continue
        refused += 1
        if refused >= _MAX_EXCLUDED_DRAWS:
            raise GridspecError(f"'exclude' holds at {_MAX_EXCLUDED_DRAWS:,} draws in a row: it excludes (almost) every point", path)
