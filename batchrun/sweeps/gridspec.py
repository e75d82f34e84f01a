"""Gridspec YAML -> the commands of a sweep, one per grid point, streamed.

`load_gridspec` reads and validates a gridspec; every problem is a one-line
`GridspecError` naming the file, the parameter and, where known, the line.
The `Gridspec` it returns counts its points without generating them and
streams its commands, so a million-point grid never sits in memory;
`write_runfile` writes them atomically. Two dialects share the file:

* the original batchrun format (`program`, `parameters` with `values`,
  `value`, `min`/`max`/`step`), written byte for byte as batchrun 0.0.14
  wrote every spec it handled correctly;
* W&B sweep configurations (`method`, `command`, `run_cap`, nested
  `parameters`, `distribution`), expanded offline by `batchrun.sweeps.wandb`.

In both, `${name}` places a value inside `program` or `command`, and values
are shell-quoted when they need it. Commands compile to one `str.format`
template, so streaming costs a format call per line. This module never runs
a command and never prints; `cli/app.py` does both.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from batchrun.errors import GridspecError, RunfileError
from batchrun.sweeps._common import (
    LINE_BREAKS,
    UNWRITABLE,
    Fail,
    Map,
    Param,
    Part,
    Render,
    Token,
    kind,
    lazy_product,
    one_line,
    paired,
    render_arg,
    same,
    unknown,
)
from batchrun.sweeps._yaml import read_yaml
from batchrun.sweeps.compose import Composed, grid_specs, read_composition, union_points
from batchrun.sweeps.lines import write_lines
from batchrun.sweeps.original import original_params, scan_program
from batchrun.sweeps.resources import SweepResources, attach, directive_lines, take_resources

if TYPE_CHECKING:
    from batchrun.sweeps.drawn import Drawn
    from batchrun.sweeps.hyperband import HyperbandConfig
    from batchrun.sweeps.objective import Metric

__all__ = ["Gridspec", "default_runfile_path", "load_gridspec", "write_runfile"]

# Longer value lists are rendered while streaming instead of up front, so a
# huge range costs time, not memory.
_MATERIALIZE_LIMIT = 100_000

# Top-level keys: the original's, W&B's schema keys, and our `seed`. Only W&B
# keys that change what runs switch a spec to W&B rules; the others are notes.
_WANDB_SWITCH_KEYS = ("method", "command", "run_cap", "seed")
_TOP_KEYS = ("program", "parameters", *_WANDB_SWITCH_KEYS, "zip", "exclude", "grids", "name", "description", "project",
             "entity", "metric", "metrics", "early_terminate", "controller", "apiVersion",
             "kind", "job", "image_uri", "scheduler")


def _compile(tokens: list[Token], params: list[Param]) -> tuple[str, list[Callable[[Any], Any]], bool]:
    """Turn tokens into one str.format template and a renderer per parameter.

    A parameter used in one context fills `{i}`; one used in several fills
    `{i[j]}` from a tuple, so each value is rendered once per context. The
    flag says lines need their leading space stripped: an optional token
    (which brings its own space) came first.
    """
    contexts: list[list[Render]] = [[] for _ in params]
    for _, parts in tokens:
        for part in parts:
            if not isinstance(part, str) and part[1] not in contexts[part[0]]:
                contexts[part[0]].append(part[1])
    pieces: list[str] = []
    for position, (optional, parts) in enumerate(tokens):
        pieces.append(" " if position and not optional else "")
        for part in parts:
            if isinstance(part, str):
                pieces.append(part.replace("{", "{{").replace("}", "}}"))
            else:
                ctxs = contexts[part[0]]
                pieces.append(f"{{{part[0]}}}" if len(ctxs) == 1 else f"{{{part[0]}[{ctxs.index(part[1])}]}}")
    renderers = [_renderer(p, ctxs) for p, ctxs in zip(params, contexts, strict=True)]
    return "".join(pieces), renderers, bool(tokens) and tokens[0][0]


def _renderer(param: Param, fns: list[Render]) -> Callable[[Any], Any]:
    if len(fns) == 1:
        return lambda value: fns[0](param, value)
    return lambda value: tuple(fn(param, value) for fn in fns)


@dataclass(frozen=True, eq=False)
class Gridspec:
    """A validated gridspec: where it came from, what it runs, and its points.

    `program` is the program text (whitespace and line continuations
    normalised in the original format); `command` is a W&B command list, or
    None. `method` is "grid", "random" or "bayes"; `run_cap` caps a grid and
    sizes a random sweep, whose draws are reproducible from `seed`, or a bayes
    one, which has no commands up front (`batchrun.sweeps.bayes` proposes them).
    """

    path: Path
    program: str | None
    command: tuple[str, ...] | None
    is_wandb: bool
    method: str
    run_cap: int | None
    seed: int | None
    _params: tuple[Param, ...] = field(repr=False)
    _template: str = field(repr=False)
    _renderers: tuple[Callable[[Any], Any], ...] = field(repr=False)
    _lstrip: bool = field(repr=False, default=False)
    metric: Metric | None = None  # what bayes optimizes and hyperband judges
    early_terminate: HyperbandConfig | None = None
    # zip, exclude or when (`compose.Composed`), or the grids of a union: points are walked, not multiplied.
    _composed: Composed | None = field(repr=False, default=None)
    _union: tuple[Gridspec, ...] = field(repr=False, default=())
    # zip, exclude or when of a random or bayes spec (`drawn.Drawn`): how a point is drawn or proposed.
    _drawn: Drawn | None = field(repr=False, default=None)
    resources: SweepResources | None = None  # what its runs ask for (`sweeps.resources`)

    def drawn(self) -> Drawn:
        """A random or bayes spec's parameters as drawn, with their zip, when and exclude (if any)."""
        if self._drawn is not None:
            return self._drawn
        if self.method not in ("random", "bayes"):
            raise ValueError("drawn() needs a W&B random or bayes gridspec")
        from batchrun.sweeps.drawn import Drawn

        return Drawn.plain(self._params, (self._template, self._renderers, self._lstrip), self.path)

    def parameter_names(self) -> list[str]:
        """Return the dotted parameter names, in output order."""
        return [p.name for p in self._params]

    def count(self) -> int:
        """Return the number of commands, without generating them."""
        try:
            return self._count()
        except _HOSTILE as err:
            raise GridspecError(one_line(f"cannot count this gridspec's points: {type(err).__name__}: {err}"), self.path) from err

    def _count(self) -> int:
        if self._composed is not None or self._union:
            return sum(1 for _ in self.iter_commands())
        if self.method in ("random", "bayes"):
            return self.run_cap or 0
        total = math.prod(len(p.values) for p in self._params if p.values is not None)
        return total if self.run_cap is None else min(total, self.run_cap)

    def iter_commands(self) -> Iterator[str]:
        """Yield each command without a newline, streaming; the last parameter varies fastest.

        Raises:
            GridspecError: a value cannot be rendered (a range or draw out of bounds).
        """
        try:
            yield from self._iter_commands()
        except _HOSTILE as err:
            raise GridspecError(one_line(f"cannot expand this gridspec: {type(err).__name__}: {err}"), self.path) from err

    def _iter_commands(self) -> Iterator[str]:
        if self.method == "bayes":
            raise GridspecError("method 'bayes' picks each run from the results of finished runs, so it needs "
                                f"results and a launch: run 'batchrun launch {self.path}', not 'batchrun sweep'", self.path)
        if self._composed is not None or self._union or self._drawn is not None:
            yield from (command for command, _ in self._iter_points())
            return
        points: Iterator[Sequence[Any]]
        if self.method == "random":
            from batchrun.sweeps.wandb_space import random_points

            points = random_points(self._params, self._renderers, self.seed)
        else:
            columns = [  # long ones stay (values, render), rendered as walked, to keep memory flat
                [r(v) for v in p.values] if len(p.values) <= _MATERIALIZE_LIMIT else (p.values, r)
                for p, r in zip(self._params, self._renderers, strict=True) if p.values is not None
            ]
            lazy = not all(isinstance(c, list) for c in columns)
            points = lazy_product(columns) if lazy else itertools.product(*columns)
        lines: Iterator[str] = itertools.starmap(self._template.format, itertools.islice(points, self.run_cap))
        if self._lstrip:
            lines = map(str.lstrip, lines)
        yield from lines

    def iter_lines(self, counted: list[int] | None = None) -> Iterator[str]:
        """The runfile's lines: `iter_commands`, with a directive wherever what the runs ask for changes; `counted[0]` counts those."""
        resources = self.resources
        if resources is None:
            return self.iter_commands()
        points = self.iter_points() if resources.by_value else ((command, {}) for command in self.iter_commands())
        return directive_lines(resources, points, counted if counted is not None else [0])

    def iter_points(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (command, {name: value}) per point, in `iter_commands` order, streaming.

        The commands are `iter_commands`'s, byte for byte; the values are the
        gridspec's own, with their YAML types (`0.1`, `1e-3`, `"007"`, `true`),
        even where the command shows them only as text or inside `${name}`.
        Results read parameters from here: a command's flags cannot tell
        `"007"` from 7, and a placed value has no flag at all. A bayes spec
        has no points up front (its runfile's lines are its points): none.

        Raises:
            GridspecError: a value cannot be rendered (a range or draw out of bounds).
        """
        try:
            yield from self._iter_points()
        except _HOSTILE as err:
            raise GridspecError(one_line(f"cannot expand this gridspec: {type(err).__name__}: {err}"), self.path) from err

    def _iter_points(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.method == "bayes":
            return
        if self._union:
            yield from union_points(self._union)
            return
        if self._composed is not None:
            names = [p.name for p in self._params]
            for command, by_index in itertools.islice(self._composed.commands(), self.run_cap):
                yield command, {names[i]: v for i, v in sorted(by_index.items())}
            return
        if self.method == "random" and self._drawn is not None:
            yield from itertools.islice(self._drawn.random_points(self.seed), self.run_cap)
            return
        if self.method == "random":
            from batchrun.sweeps.wandb_space import random_points

            used = [(p, r) for p, r in zip(self._params, self._renderers, strict=True) if p.draw is not None]
            names = [p.name for p, _ in used]
            template, lstrip = self._template.format, self._lstrip
            # The same draws, in the same order, as `iter_commands`; each value travels with its text.
            draws = random_points([p for p, _ in used], [paired(r) for _, r in used], self.seed)
            for pair_point in itertools.islice(draws, self.run_cap):
                line = template(*[text for _, text in pair_point])
                yield (line.lstrip() if lstrip else line), dict(zip(names, [value for value, _ in pair_point], strict=True))
            return
        # The grid's values walked in the order `_iter_commands` walks their texts, beside it.
        swept = [p for p in self._params if p.values is not None]
        columns = [list(p.values) if len(p.values) <= _MATERIALIZE_LIMIT else (p.values, same) for p in swept if p.values is not None]
        lazy = not all(isinstance(c, list) for c in columns)
        points: Iterator[Sequence[Any]] = lazy_product(columns) if lazy else itertools.product(*columns)
        names = [p.name for p in swept]
        # strict=False: the commands stop at run_cap, the values run on.
        for command, point in zip(self._iter_commands(), points, strict=False):
            yield command, dict(zip(names, point, strict=True))


# What PyYAML's constructors and numeric conversions raise on hostile input
# (`!!int ''`, `!!timestamp abc`, 5,000-digit integers, ranges longer than
# sys.maxsize): reported as the gridspec's fault, never as a traceback.
_HOSTILE = (ValueError, IndexError, AttributeError, KeyError, TypeError, OverflowError, RecursionError)


def load_gridspec(path: Path) -> Gridspec:
    """Read and validate a gridspec.

    Raises:
        GridspecError: the file is missing or unreadable, is not UTF-8 YAML,
            or is not a valid sweep; one line naming the file, the parameter
            and, where known, the line.
    """
    try:
        return _load_gridspec(Path(path))
    except GridspecError:
        raise
    except _HOSTILE as err:
        raise GridspecError(one_line(f"cannot use this gridspec: {type(err).__name__}: {err}"), Path(path)) from err


def _load_gridspec(path: Path) -> Gridspec:
    spec = read_yaml(path)

    def fail(message: str, line: int | None = None) -> NoReturn:
        raise GridspecError(one_line(message), path, line)

    if spec is None:
        fail("the gridspec is empty; it needs 'program' and 'parameters'")
    if not isinstance(spec, Map):
        fail(f"expected a mapping with 'program' and 'parameters' at the top level, not {kind(spec)}", 1)
    resources = take_resources(spec, fail)
    for key in spec:
        if key not in _TOP_KEYS:
            fail(unknown(key, (*_TOP_KEYS, "resources")), spec.key_lines.get(key))
    if "grids" in spec:
        grids = tuple(_spec_gridspec(path, part, fail) for part in grid_specs(spec, fail))
        first = grids[0]
        if first.method != "grid":
            fail(f"'grids' makes a union of grids (method grid, or the original format); method {first.method} takes zip, exclude and when",
                 spec.key_lines.get("grids"))
        union = Gridspec(path, first.program, first.command, first.is_wandb, first.method, None, first.seed, (), "", (), _union=grids)
        return attach(union, resources, [p for grid in grids for p in grid._params], fail)
    gridspec = _spec_gridspec(path, spec, fail)
    return attach(gridspec, resources, gridspec._params, fail)


def _spec_gridspec(path: Path, spec: Map, fail: Fail) -> Gridspec:
    line = spec.key_lines.get
    composition = read_composition(spec, fail)
    if "parameters" not in spec:
        fail("missing 'parameters': the mapping of parameter names to their values")
    if not isinstance(spec["parameters"], Map):
        fail(f"'parameters' must be a mapping of names to values, not {kind(spec['parameters'])}", line("parameters"))
    if any(key in spec for key in _WANDB_SWITCH_KEYS) or any(
        isinstance(body, Map) and ("distribution" in body or "parameters" in body)
        for body in spec["parameters"].values()
    ):
        from batchrun.sweeps import wandb as _wandb  # W&B rules load only for W&B specs
        from batchrun.sweeps.wandb_command import command_tokens, placed_params

        sweep = _wandb.parse(spec, fail)
        template, renderers, lstrip = _compile(sweep.tokens, sweep.params)
        composed = drawn = None

        def render_wandb(present: tuple[int, ...]) -> tuple[str, list[Callable[[Any], Any]], bool]:
            chosen = [sweep.params[i] for i in present]
            return _compile(command_tokens(sweep.command, sweep.program, chosen, spec, fail), chosen)

        if composition:
            in_command = placed_params(sweep.command, sweep.program, sweep.params, spec, fail)
            if sweep.method == "grid":
                composed = Composed(composition, sweep.params, render_wandb, path, fail, in_command)
            else:
                from batchrun.sweeps.drawn import Drawn

                drawn = Drawn.composed(composition, sweep.params, render_wandb, path, fail, in_command)
        return Gridspec(path, sweep.program, sweep.command, True, sweep.method, sweep.run_cap,
                        sweep.seed, tuple(sweep.params), template, tuple(renderers), lstrip,
                        metric=sweep.metric, early_terminate=sweep.early_terminate, _composed=composed, _drawn=drawn)
    program = spec.get("program")
    if program is None:
        fail("missing 'program' (or a W&B 'command' list): the command to run, e.g. 'program: python3 train.py'")
    if not isinstance(program, str):
        fail(f"'program' must be text, not {kind(program)}", line("program"))
    if UNWRITABLE.search(program.translate(dict.fromkeys(map(ord, LINE_BREAKS), " "))):
        fail("'program' contains a character a runfile line cannot hold", line("program"))
    params = original_params(spec["parameters"], fail)
    parts = scan_program(program, {p.name: i for i, p in enumerate(params)}, line("program"), fail)
    if not parts:
        fail("'program' is empty", line("program"))
    placed = {part[0] for part in parts if not isinstance(part, str)}
    tokens: list[Token] = [(False, parts)]
    tokens += [(False, [f"--{p.name}=", (i, render_arg)]) for i, p in enumerate(params) if i not in placed]
    template, renderers, _ = _compile(tokens, params)
    normalised = "".join(p if isinstance(p, str) else f"${{{params[p[0]].name}}}" for p in parts)
    composed = None
    if composition:

        def render_original(present: tuple[int, ...]) -> tuple[str, list[Callable[[Any], Any]], bool]:
            position = {i: k for k, i in enumerate(present)}
            program_parts: list[Part] = [p if isinstance(p, str) else (position[p[0]], p[1]) for p in parts]
            chosen = [params[i] for i in present]
            flags: list[Token] = [(False, [f"--{params[i].name}=", (position[i], render_arg)]) for i in present if i not in placed]
            return _compile([(False, program_parts), *flags], chosen)

        composed = Composed(composition, params, render_original, path, fail, frozenset(placed))
    return Gridspec(path, normalised, None, False, "grid", None, None, tuple(params), template, tuple(renderers), _composed=composed)


def write_runfile(gridspec: Gridspec, out: Path) -> int:
    """Write the gridspec's commands to `out`, one per line; return how many.

    The lines stream into a temporary file in the same directory, which
    replaces `out` only once complete: `out` is never left half-written.

    Raises:
        RunfileError: `out` is a directory, is the gridspec itself, or
            cannot be written.
    """
    out = Path(out)
    if out.is_dir():
        raise RunfileError("is a directory; give a file name for the runfile", out)
    with suppress(OSError):
        if out.samefile(gridspec.path):
            raise RunfileError("is the gridspec itself; give another name for the runfile", out)
    counted = [0]
    return write_lines(out, gridspec.iter_lines(counted)) - counted[0]


def default_runfile_path(spec_path: Path) -> Path:
    """Return `<spec stem>.runfile` in the current directory, as the original did."""
    return Path(f"{Path(spec_path).stem}.runfile")
