"""What a sweep's runs ask for: a gridspec's `resources:` block and per-value requests, written into its runfile as directives.

```yaml
program: python train.py
resources: {gpus: 1, cpus: 4, mem: 16G, time: 2h}     # every run
parameters:
  model:
    values: [small, large]
    resources: {large: {gpus: 2, mem: 64G}}          # runs with model=large, on top of the block
```

A value's request replaces the block's keys it names (here: large runs ask
gpus=2 mem=64G cpus=4 time=2h). When several parameters' values ask for
the same key, the run asks for the most of them. The runfile gets a
directive line (`# batchrun: gpus=2 cpus=4 mem=64G time=2h`) before each run
of lines whose request changes, so its commands, and with them the jobs'
ids, are exactly those of the same spec without requests: adding or
changing a request reruns nothing.

The keys are taken out of the spec before the dialects read it (as
`compose` takes `when`), so the original format and W&B's both take them.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from batchrun.resources import KEYS, NO_REQUEST, Request, merge_requests, parse_request
from batchrun.sweeps._common import Fail, Map, kind, show, unknown

_Spec = TypeVar("_Spec")

__all__ = ["SweepResources", "attach", "check_values", "directive_lines", "take_resources"]


@dataclass(frozen=True)
class SweepResources:
    """The spec's block, and for each parameter with per-value requests: (value, request) pairs."""

    base: Request
    by_value: tuple[tuple[str, tuple[tuple[Any, Request], ...]], ...] = ()
    lines: tuple[tuple[str, int | None], ...] = ()  # (parameter, YAML line) of each per-value table, for messages

    def request_of(self, point: dict[str, Any]) -> Request:
        """What the run at `point` ({parameter: value}) asks for."""
        asked = [request for name, table in self.by_value if name in point for value, request in table if _same(value, point[name])]
        if not asked:
            return self.base
        most = asked[0]
        for other in asked[1:]:
            most = Request(*(_most(getattr(most, key), getattr(other, key)) for key in KEYS))
        return merge_requests(self.base, most)


def take_resources(spec: Map, fail: Fail) -> SweepResources | None:
    """Take the `resources` block and every parameter's `resources` out of the spec (changed in place); None when it has none."""
    base = NO_REQUEST
    if "resources" in spec:
        base = _request(spec.pop("resources"), "'resources'", spec.key_lines.get("resources"), fail)
    tables: list[tuple[str, tuple[tuple[Any, Request], ...]]] = []
    lines: list[tuple[str, int | None]] = []
    sections = [spec.get("parameters")]
    grids = spec.get("grids")
    if isinstance(grids, list):
        sections += [grid.get("parameters") for grid in grids if isinstance(grid, Map)]
    for section in sections:
        _take_tables(section, "", tables, lines, fail)
    if not base and not tables:
        return None
    return SweepResources(base, tuple(tables), tuple(lines))


def check_values(resources: SweepResources, params: Iterable[Any], fail: Fail) -> None:
    """Each per-value request names a value its parameter has (when the parameter lists its values)."""
    values = {param.name: param.values for param in params if isinstance(param.values, list)}
    known = {param.name for param in params}
    for (name, table), (_, line) in zip(resources.by_value, resources.lines, strict=True):
        if name not in known:
            continue  # a parameter of another grid of the union: checked there
        listed = values.get(name)
        for value, _request in table:
            if listed is not None and not any(_same(value, v) for v in listed):
                fail(f"parameter {name!r}: 'resources' names the value {show(value)}, which is not one of its values", line)


def directive_lines(resources: SweepResources | None, points: Iterator[tuple[str, dict[str, Any]]], counted: list[int]) -> Iterator[str]:
    """The runfile's lines: each point's command, after a directive wherever the request changes; `counted[0]` counts the directives."""
    last: Request | None = None
    for command, point in points:
        request = resources.request_of(point) if resources is not None else NO_REQUEST
        if request != last and (last is not None or request):
            counted[0] += 1
            yield request.directive()
        last = request
        yield command


def _take_tables(section: Any, prefix: str, tables: list[tuple[str, tuple[tuple[Any, Request], ...]]], lines: list[tuple[str, int | None]], fail: Fail) -> None:
    if not isinstance(section, Map):
        return
    for name, body in section.items():
        if not isinstance(body, Map):
            continue
        full = f"{prefix}{name}"
        if "resources" in body:
            line = body.key_lines.get("resources")
            raw = body.pop("resources")
            where = f"parameter {full!r}: 'resources'"
            if not isinstance(raw, Map) or not raw:
                fail(f"{where} maps values to requests, such as {{large: {{gpus: 2}}}}, not {kind(raw)}", line)
            table = tuple((value, _request(request, f"{where} of {show(value)}", raw.key_lines.get(value, line), fail)) for value, request in raw.items())
            tables.append((full, table))
            lines.append((full, line))
        _take_tables(body.get("parameters"), f"{full}.", tables, lines, fail)


def _request(raw: Any, where: str, line: int | None, fail: Fail) -> Request:
    if not isinstance(raw, Map):
        fail(f"{where} takes {', '.join(KEYS)}, such as {{gpus: 2, mem: 64G}}, not {kind(raw)}", line)
    words = []
    for key, value in raw.items():
        if key not in KEYS:
            fail(f"{where}: {unknown(key, KEYS)}", raw.key_lines.get(key, line))
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or " " in str(value):
            fail(f"{where}: {key} must be a number or a size/duration word (64G, 2h), not {kind(value)}", raw.key_lines.get(key, line))
        words.append(f"{key}={value}")
    try:
        return parse_request(" ".join(words))
    except ValueError as err:
        fail(f"{where}: {err}", line)


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: `true` is not 1, `1` is `1.0`."""
    return a == b and (isinstance(a, bool) == isinstance(b, bool))


def _most(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a if b is None else max(a, b)


def attach(gridspec: _Spec, resources: SweepResources | None, params: Iterable[Any], fail: Fail) -> _Spec:
    """The gridspec, carrying its resources (their values checked against its parameters)."""
    if resources is None:
        return gridspec
    check_values(resources, params, fail)
    return replace(gridspec, resources=resources)  # type: ignore[type-var]
