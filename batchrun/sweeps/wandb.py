"""W&B sweep configurations, expanded offline, without a W&B server.

`parse` turns a W&B sweep config into batchrun parameters and command
tokens. It follows W&B's documentation ("Sweep configuration options") and,
where the docs are silent, W&B's code: the grid in `wandb/sweeps`
(`src/sweeps/search/grid.py`: names sorted at every level, the first varying
slowest, repeated values dropped, int_uniform inclusive, q_uniform by
`numpy.arange`), its parameter schema (`src/sweeps/config/schema.json` and
`schema.py`: inferred distributions, defaults, min < max), and the agent's
command macros (`wandb/sdk/launch/sweeps/utils.py`, `wandb/wandb_agent.py`).

Offline differences, by design: nested parameters become dotted flags
(`--optimizer.lr=0.01`) where W&B passes a dict; random draws use Python's
`random` seeded by our `seed` key (default 0), so a runfile regenerates
identically; ${envvar:NAME} and ${args_json_file} are resolved by the shell
when the line runs, as the agent resolves them when it starts a run. Only
`batchrun.sweeps.gridspec` imports this module, and only for W&B specs.
"""

from __future__ import annotations

import json
import math
import random
import shlex
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import yaml

from batchrun.sweeps._common import (
    PLACEHOLDER,
    UNWRITABLE,
    Fail,
    Map,
    Param,
    Part,
    Token,
    Values,
    arange,
    as_number,
    check_name,
    check_writable,
    kind,
    quote_arg,
    render_arg,
    render_word,
    show,
    unknown,
    values_list,
)
from batchrun.sweeps.hyperband import HyperbandConfig, parse_early_terminate
from batchrun.sweeps.objective import Metric, parse_metric


class _Gridspec(Protocol):
    """The parts of a `sweep.Gridspec` a search space is made from (sweep imports this module)."""

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

# What the W&B agent puts for ${env} (on Unix) and ${interpreter}.
ENV = "/usr/bin/env"
INTERPRETER = "python"
# The agent's command when the config gives none.
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
_ARG_MACROS = ("args", "args_no_hyphens", "args_no_boolean_flags", "args_no_equals", "args_json",
               "args_json_file", "args_append_hydra", "args_override_hydra")
MACROS = ("env", "interpreter", "program", *_ARG_MACROS)
# W&B's ${envvar:NAME} pattern takes upper case, digits and _ only.
_ENVVAR_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

_MIN_MAX = ("min", "max")
# The keys each distribution takes besides `distribution` (schema.json).
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values", "probabilities"),
    "categorical_w_probabilities": ("values", "probabilities"),
    "int_uniform": _MIN_MAX,
    "uniform": _MIN_MAX,
    "q_uniform": (*_MIN_MAX, "q"),
    "log_uniform": _MIN_MAX,
    "log_uniform_values": _MIN_MAX,
    "q_log_uniform": (*_MIN_MAX, "q"),
    "q_log_uniform_values": (*_MIN_MAX, "q"),
    "inv_log_uniform": _MIN_MAX,
    "inv_log_uniform_values": _MIN_MAX,
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
_PARAM_KEYS = ("distribution", "parameters", *sorted({k for keys in _DISTRIBUTIONS.values() for k in keys}))
# Schema defaults; q's is the float 1.0, so an unset q gives floats, as in W&B.
_DEFAULTS: dict[str, float] = {"q": 1.0, "mu": 0.0, "sigma": 1.0, "a": 1, "b": 1}
# What W&B's grid search accepts (categorical without probabilities).
_GRIDDABLE = ("constant", "categorical", "int_uniform", "q_uniform")


class WandbSweep(NamedTuple):
    """What `parse` found: the plan of runs and the command tokens."""

    method: str
    run_cap: int | None
    seed: int | None
    program: str | None
    command: tuple[str, ...] | None
    params: list[Param]
    tokens: list[Token]
    metric: Metric | None = None
    early_terminate: HyperbandConfig | None = None


def parse(spec: Map, fail: Fail) -> WandbSweep:
    """Validate a W&B sweep config and plan its runs."""
    line = spec.key_lines.get
    method = spec.get("method")
    if method is None:
        fail("a W&B sweep needs 'method: grid', 'method: random' or 'method: bayes'")
    if method == "custom":
        fail("method 'custom' needs W&B's server to propose runs: use grid, random or bayes", line("method"))
    if method not in ("grid", "random", "bayes"):
        fail(f"method {show(method)} is not one of grid, random, bayes", line("method"))
    run_cap = spec.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap <= 0):
        fail(f"'run_cap' must be a positive integer, not {kind(run_cap)}", line("run_cap"))
    if method == "random" and run_cap is None:
        fail("method 'random' needs 'run_cap', the number of runs to draw", line("method"))
    metric = early_terminate = None
    if method == "bayes":
        metric = parse_metric(spec.get("metric"), line("metric") or line("method"), "method 'bayes'", fail)
        if run_cap is None:
            fail("method 'bayes' needs 'run_cap', the number of runs to finish", line("method"))
    if "early_terminate" in spec:
        early_terminate = parse_early_terminate(spec["early_terminate"], line("early_terminate"), fail)
        metric = parse_metric(spec.get("metric"), line("metric") or line("early_terminate"), "'early_terminate'", fail)
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        fail(f"'seed' must be an integer, not {kind(seed)}", line("seed"))
    if method != "grid" and seed is None:
        seed = 0  # regenerating a runfile must not change its jobs
    program = spec.get("program")
    if program is not None and not isinstance(program, str):
        fail(f"'program' must be text, not {kind(program)}", line("program"))
    command = None
    if "command" in spec:
        raw = spec["command"]
        if not isinstance(raw, list) or not raw:
            fail(f"'command' must be a non-empty list of words, not {kind(raw)}", line("command"))
        for element in raw:
            if element is None or isinstance(element, (list, dict)):
                fail(f"'command' elements must be words, not {kind(element)}", line("command"))
        command = tuple(str(element) for element in raw)  # the agent runs str() of each

    params: list[Param] = []
    _collect(spec["parameters"], (), method, params, fail)
    first: dict[str, int | None] = {}
    for param in params:
        if param.name in first:
            fail(f"parameter {param.name!r} is defined twice (first on line {first[param.name]})", param.lineno)
        first[param.name] = param.lineno
    return WandbSweep(method, run_cap, seed, program, command, params,
                      _tokens(command, program, params, spec, fail), metric, early_terminate)


# ---------------------------------------------------------------- parameters


def _collect(section: Any, path: tuple[str, ...], method: str, out: list[Param], fail: Fail) -> None:
    if not isinstance(section, Map) or not section:
        fail(f"'parameters' of {'.'.join(path)!r} must be a non-empty mapping, not {kind(section)}")
    for key in section:
        check_name(key, section.key_lines[key], fail)
    for key in sorted(section):  # W&B sorts names at every level
        body, line, name = section[key], section.key_lines[key], ".".join((*path, key))
        if not isinstance(body, Map):
            fail(f"parameter {name!r}: expected a mapping such as 'values: [1, 2]', not {kind(body)}", line)
        if "parameters" not in body:
            out.append(_leaf(name, (*path, key), body, line, method, fail))
            continue
        for other in body:
            if other != "parameters":
                fail(f"parameter {name!r}: a parameter with nested 'parameters' takes no {other!r}", line)
        _collect(body["parameters"], (*path, key), method, out, fail)


def _distribution(where: str, body: Map, line: int, fail: Fail) -> str:
    for key in body:
        if key not in _PARAM_KEYS:
            fail(f"{where}: {unknown(key, _PARAM_KEYS)}", body.key_lines[key])
    if "distribution" in body:
        dist = body["distribution"]
        if dist not in _DISTRIBUTIONS:
            fail(f"{where}: {unknown(dist, _DISTRIBUTIONS, 'distribution')}", line)
        return "categorical" if dist == "categorical_w_probabilities" else str(dist)
    # W&B infers the distribution from the keys given.
    if "values" in body or "value" in body:
        return "categorical" if "values" in body else "constant"
    if "min" in body or "max" in body:
        ints = all(isinstance(as_number(body.get(k)), int) for k in _MIN_MAX)
        return "int_uniform" if ints else "uniform"
    fail(f"{where}: no values; give 'values', 'value', 'min' and 'max', or a 'distribution'", line)


def _leaf(name: str, path: tuple[str, ...], body: Map, line: int, method: str, fail: Fail) -> Param:
    where = f"parameter {name!r}"
    dist = _distribution(where, body, line, fail)
    allowed = _DISTRIBUTIONS[dist]
    for key in body:
        if key != "distribution" and key not in allowed:
            fail(f"{where}: key {key!r} does not apply to distribution {dist!r}", body.key_lines[key])
    required = ("value",) if dist == "constant" else ("values",) if dist == "categorical" else _MIN_MAX
    for key in required:
        if key in allowed and key not in body:
            fail(f"{where}: distribution {dist!r} needs {key!r}", line)

    nums: dict[str, Any] = {}
    for key in allowed:
        if key not in ("value", "values", "probabilities"):
            raw = body.get(key, _DEFAULTS.get(key))
            nums[key] = as_number(raw)
            if nums[key] is None:
                fail(f"{where}: {key!r} must be a number, not {kind(raw)}", body.key_lines.get(key, line))
    if "min" in nums and nums["min"] >= nums["max"]:
        fail(f"{where}: min {nums['min']} is not less than max {nums['max']}", line)
    if dist == "int_uniform" and not all(isinstance(nums[k], int) for k in _MIN_MAX):
        fail(f"{where}: int_uniform needs integer min and max", line)
    if dist.endswith("_values") and nums["min"] <= 0:
        fail(f"{where}: {dist} needs min > 0", line)
    for key in ("q", "a", "b"):
        if key in nums and nums[key] <= 0:
            fail(f"{where}: {key!r} must be greater than 0", line)
    if nums.get("sigma", 0) < 0:
        fail(f"{where}: 'sigma' must not be negative", line)

    values = values_list(where, body, line, fail) if dist == "categorical" else [body.get("value")]
    if dist == "constant":
        check_writable(where, values, line, fail)
    weights = _probabilities(where, body["probabilities"], values, line, fail) if "probabilities" in body else None
    if method != "grid":
        draw = Distribution(dist, tuple(values), None if weights is None else tuple(weights), nums, _sampler(dist, values, weights, nums))
        return Param(name, line, draw=draw, path=path)
    if dist not in _GRIDDABLE or weights is not None:
        fail(f"{where}: grid search takes 'values', 'value', int_uniform or q_uniform, not {dist!r}"
             f"{' with probabilities' if weights else ''}; use 'method: random' to draw it", line)
    grid: Values = values
    if dist == "categorical":
        grid = unique_grid_values(values)
    elif dist == "int_uniform":
        grid = range(nums["min"], nums["max"] + 1)
    elif dist == "q_uniform":  # numpy.arange(min, max, q): max excluded; here exact
        grid = arange(nums["min"], nums["max"], nums["q"])
    return Param(name, line, values=grid, path=path)


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


def _probabilities(where: str, raw: Any, values: list[Any], line: int, fail: Fail) -> list[float]:
    numbers = [as_number(p) for p in raw] if isinstance(raw, list) else [None]
    weights = [n for n in numbers if n is not None and n >= 0]
    if len(weights) != len(numbers) or len(weights) != len(values):
        fail(f"{where}: 'probabilities' must be {len(values)} non-negative numbers, one per value", line)
    if not math.isclose(sum(weights), 1.0, rel_tol=1e-6):
        fail(f"{where}: 'probabilities' add up to {sum(weights)}, not 1", line)
    return weights


def grid_key(value: Any) -> Hashable:
    """What W&B's grid counts as one value: its YAML dump, an integer float taken as its int.

    sweeps' `yaml_hash` (grid_search.py, sweeps 0.3.0) is the md5 of
    `yaml.dump(value, default_flow_style=True, sort_keys=True)`, after turning
    a float such as 3.0 into 3. For scalars that dump is told apart by kind
    and value alone (a text that reads as another kind is dumped quoted), so
    only lists and mappings are dumped here.
    """
    if value is None or isinstance(value, (bool, str)):
        return (type(value).__name__, value)
    if isinstance(value, float):
        if math.isnan(value):
            return ("nan",)
        return ("num", int(value) if value.is_integer() else value)
    if isinstance(value, int):
        return ("num", value)
    try:
        return ("yaml", yaml.dump(_plain(value), default_flow_style=True, sort_keys=True))
    except (TypeError, yaml.YAMLError):  # keys of mixed types cannot be sorted
        return ("repr", repr(value))


def _plain(value: Any) -> Any:
    """The value with our line-keeping mappings turned into plain dicts, as W&B's engine sees it."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def unique_grid_values(values: list[Any]) -> list[Any]:
    """Drop repeated values as W&B's grid does: first place, last value (3 then 3.0 runs 3.0).

    The engine maps each value's hash to the value, so a later equal value
    replaces an earlier one, and walks the hashes in their first order.
    """
    place: dict[Hashable, int] = {}
    unique: list[Any] = []
    for value in values:
        key = grid_key(value)
        if key in place:
            unique[place[key]] = value
        else:
            place[key] = len(unique)
            unique.append(value)
    return unique


def _quantize(x: float, q: float) -> float:
    """round(x / q) * q, half to even like numpy.round, but exact for a decimal q."""
    n = round(x / q)
    return n * q if isinstance(q, int) else float(Decimal(n) * Decimal(repr(q)))


def _sampler(
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


# ------------------------------------------------------------------ commands


def _tokens(
    command: tuple[str, ...] | None, program: str | None, params: list[Param], spec: Map, fail: Fail
) -> list[Token]:
    index_of = {p.name: i for i, p in enumerate(params)}
    placed: set[int] = set()
    expanded: list[tuple[str, list[Part]]] = []  # (macro or "", parts of a literal element)
    for element in command or DEFAULT_COMMAND:
        macro = element[2:-1] if element.startswith("${") and element.endswith("}") else ""
        if macro not in MACROS:
            macro, text, where = "", element, "'command'"
        elif macro == "program":
            if program is None:
                fail("missing 'program' (or a 'command' without ${program}): the script to run")
            text, where = program, "'program'"
        else:
            expanded.append((macro, []))
            continue
        parts = _element_parts(text, index_of, where, spec.key_lines.get(where.strip("'")), fail)
        placed.update(p[0] for p in parts if not isinstance(p, str))
        expanded.append((macro, parts))
    delivered = [i for i in range(len(params)) if i not in placed]
    if delivered and not any(macro in _ARG_MACROS for macro, _ in expanded):
        names = ", ".join(repr(params[i].name) for i in delivered)
        fail(f"parameter(s) {names} reach no command: add ${{args}} to 'command' or place them with ${{name}}",
             spec.key_lines.get("command"))
    tokens: list[Token] = []
    for macro, parts in expanded:
        if macro in ("", "program"):
            tokens.append((False, parts))
        elif macro in ("env", "interpreter"):
            tokens.append((False, [ENV if macro == "env" else INTERPRETER]))
        else:
            tokens.extend(_arg_tokens(macro, params, delivered))
    return tokens


def _element_parts(text: str, index_of: dict[str, int], what: str, line: int | None, fail: Fail) -> list[Part]:
    """Shell-quote one argv element, filling `${name}` and leaving `${VAR}` to the shell."""
    if UNWRITABLE.search(text):
        fail(f"{what}: {show(text)} contains a line break or a character a runfile line cannot hold", line)
    parts: list[Part] = []
    position = 0
    for match in PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(shlex.quote(text[position : match.start()]))
        ref, position = match.group(1), match.end()
        if ref in index_of:
            parts.append((index_of[ref], render_word))
        elif ref in MACROS:
            fail(f"{what}: macro ${{{ref}}} must be a whole command element, as W&B requires", line)
        elif ref.startswith("envvar:") and ref[7:] and set(ref[7:]) <= _ENVVAR_CHARS:
            parts.append(f'"${{{ref[7:]}}}"')  # read when the line runs, as the agent reads it
        elif not any(c in ref for c in '"`\\'):
            parts.append(f'"${{{ref}}}"')  # not ours: the shell expands it, as one word
        else:
            parts.append(shlex.quote(match.group(0)))
    if position < len(text) or not parts:
        parts.append(shlex.quote(text[position:]))
    return parts


def _arg_tokens(macro: str, params: list[Param], delivered: list[int]) -> list[Token]:
    """Expand an args macro as W&B's create_sweep_command_args does, a token per word."""
    prefix = {"args": "--", "args_no_hyphens": "", "args_append_hydra": "+", "args_override_hydra": "++"}
    if macro in prefix:
        return [(False, [f"{prefix[macro]}{params[i].name}=", (i, render_arg)]) for i in delivered]
    tokens: list[Token] = []
    if macro == "args_no_equals":
        for i in delivered:
            tokens += [(False, [f"--{params[i].name}"]), (False, [(i, render_word)])]
        return tokens
    if macro == "args_no_boolean_flags":
        return [(True, [(i, _render_nobool)]) for i in delivered]
    json_word: list[Part] = ["'", *_json_parts(delivered, params, 0), "'"]
    if macro == "args_json":
        return [(False, json_word)]
    # ${args_json_file}: the agent writes the JSON to a file just before the
    # run; offline, the shell does so when the line runs.
    return [(False, ["\"$(f=$(mktemp) && printf '%s' ", *json_word, ' > "$f" && echo "$f")"'])]


def _render_nobool(param: Param, value: Any) -> str:
    """${args_no_boolean_flags}: True gives --flag, False nothing; brings its own space."""
    if isinstance(value, bool):
        return f" --{param.name}" if value else ""
    return f" --{param.name}={quote_arg(str(value))}"


def _render_json(param: Param, value: Any) -> str:
    """One value of W&B's json.dumps(config), inside a single-quoted word."""
    return json.dumps(value, default=str).replace("'", "'\\''")


def _json_parts(members: list[int], params: list[Param], depth: int) -> list[Part]:
    """Build the parts of W&B's json.dumps(config): nested parameters nested, names sorted."""
    groups: dict[str, list[int]] = {}
    for i in members:
        groups.setdefault(params[i].path[depth], []).append(i)
    parts: list[Part] = ["{"]
    for n, (key, group) in enumerate(groups.items()):
        parts.append((", " if n else "") + json.dumps(key).replace("'", "'\\''") + ": ")
        if len(group) == 1 and len(params[group[0]].path) == depth + 1:
            parts.append((group[0], _render_json))
        else:
            parts.extend(_json_parts(group, params, depth + 1))
    return [*parts, "}"]
