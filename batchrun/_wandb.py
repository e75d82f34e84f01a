"""W&B sweep configurations, expanded offline, without a W&B server.

`parse` turns a W&B sweep config into batchrun parameters and command
tokens, following W&B's documented semantics and, where the docs are silent,
its code: the grid (`wandb/sweeps`, `src/sweeps/search/grid.py`), the
parameter schema (`src/sweeps/config/schema.json`, `schema.py`) and the
agent's command macros (`wandb/sdk/launch/sweeps/utils.py`,
`wandb/wandb_agent.py`). Parameter names are sorted at every level and the
first varies slowest, as in W&B's grid. Random draws come from Python's
`random` seeded by our `seed` key (W&B has none), so a runfile can be
regenerated identically. Only `batchrun.sweep` imports this module.
"""

from __future__ import annotations

import json
import math
import random
import shlex
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from batchrun.sweep import (
    _UNWRITABLE,
    Fail,
    Part,
    Token,
    _arange,
    _as_number,
    _check_name,
    _check_writable,
    _did_you_mean,
    _kind,
    _Map,
    _Param,
    _PLACEHOLDER,
    _show,
    _unknown_key,
)

# What the W&B agent puts for ${env} on Unix and for ${interpreter}.
ENV = "/usr/bin/env"
INTERPRETER = "python"
# The agent's command when the config has none.
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
# W&B only replaces a macro that is a whole command element.
_ARG_MACROS = (
    "args", "args_no_hyphens", "args_no_boolean_flags", "args_no_equals", "args_json",
    "args_json_file", "args_append_hydra", "args_override_hydra",
)
MACROS = ("env", "interpreter", "program", *_ARG_MACROS)
# W&B's pattern for ${envvar:NAME}: upper case, digits and _ only.
_ENVVAR_NAMES = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

_MIN_MAX = ("min", "max")
# Keys each distribution takes besides `distribution` (W&B's schema.json).
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
# Schema defaults; q's default is the float 1.0, so an unset q gives floats.
_DEFAULTS = {"q": 1.0, "mu": 0.0, "sigma": 1.0, "a": 1, "b": 1}
# The distributions W&B's grid search accepts (categorical without probabilities).
_GRIDDABLE = ("constant", "categorical", "int_uniform", "q_uniform")


class WandbSweep(NamedTuple):
    """What `parse` found: the run plan and the command tokens."""

    method: str
    run_cap: int | None
    seed: int | None
    program: str | None
    command: tuple[str, ...] | None
    params: list[_Param]
    tokens: list[Token]


def parse(spec: _Map, fail: Fail) -> WandbSweep:
    """Validate a W&B sweep config and plan its runs."""
    line = spec.key_lines.get
    method = spec.get("method")
    if method is None:
        fail("a W&B sweep needs 'method: grid' or 'method: random'")
    if method in ("bayes", "custom"):
        fail(
            f"method {method!r} needs W&B's live optimizer and the results of finished runs; "
            "batchrun writes every run up front: use 'grid' or 'random'",
            line("method"),
        )
    if method not in ("grid", "random"):
        fail(f"method {_show(method)} is not one of grid, random", line("method"))
    run_cap = _positive_int(spec, "run_cap", fail)
    if method == "random" and run_cap is None:
        fail("method 'random' needs 'run_cap', the number of runs to draw", line("method"))
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        fail(f"'seed' must be an integer, not {_kind(seed)}", line("seed"))
    if method == "random" and seed is None:
        seed = 0  # reproducible by default: regenerating a runfile must not change its jobs
    program = spec.get("program")
    if program is not None and not isinstance(program, str):
        fail(f"'program' must be text, not {_kind(program)}", line("program"))
    command = _command(spec, fail)

    params: list[_Param] = []
    _collect(spec["parameters"], (), method, params, fail)
    seen: dict[str, int | None] = {}
    for param in params:
        if param.name in seen:
            fail(f"parameter {param.name!r} is defined twice (first on line {seen[param.name]})", param.lineno)
        seen[param.name] = param.lineno
    tokens = _tokens(command, program, params, spec, fail)
    return WandbSweep(method, run_cap, seed, program, command, params, tokens)


def _positive_int(spec: _Map, key: str, fail: Fail) -> int | None:
    value = spec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        fail(f"{key!r} must be a positive integer, not {_kind(value)}", spec.key_lines.get(key))
    return value


def _command(spec: _Map, fail: Fail) -> tuple[str, ...] | None:
    if "command" not in spec:
        return None
    command = spec["command"]
    where = spec.key_lines.get("command")
    if not isinstance(command, list) or not command:
        fail(f"'command' must be a non-empty list of words, not {_kind(command)}", where)
    for element in command:
        if element is None or isinstance(element, (list, dict)):
            fail(f"'command' elements must be words, not {_kind(element)}", where)
    # W&B's agent runs str() of each element.
    elements = tuple(str(element) for element in command)
    _check_writable("'command'", elements, where, fail)
    return elements


# ---------------------------------------------------------------- parameters


def _collect(section: Any, path: tuple[str, ...], method: str, out: list[_Param], fail: Fail) -> None:
    if not isinstance(section, dict) or not section:
        fail(f"'parameters' of {'.'.join(path)!r} must be a non-empty mapping, not {_kind(section)}")
    for key in section:
        _check_name(key, section.key_lines.get(key), fail)
    for key in sorted(section):  # W&B sorts names at every level
        body, line = section[key], section.key_lines.get(key)
        name = ".".join((*path, key))
        if not isinstance(body, dict):
            fail(f"parameter {name!r}: expected a mapping such as 'values: [1, 2]', not {_kind(body)}", line)
        if "parameters" in body:
            for other in body:
                if other != "parameters":
                    fail(f"parameter {name!r}: a parameter with nested 'parameters' takes no {other!r}", line)
            _collect(body["parameters"], (*path, key), method, out, fail)
        else:
            out.append(_leaf(name, (*path, key), body, line, method, fail))


def _distribution(where: str, body: _Map, line: int | None, fail: Fail) -> str:
    for key in body:
        if key not in _PARAM_KEYS:
            fail(f"{where}: {_unknown_key(key, _PARAM_KEYS)}", body.key_lines.get(key, line))
    if "distribution" in body:
        dist = body["distribution"]
        if dist not in _DISTRIBUTIONS:
            fail(f"{where}: unknown distribution {_show(dist)}{_did_you_mean(dist, _DISTRIBUTIONS)}", line)
        return "categorical" if dist == "categorical_w_probabilities" else dist  # type: ignore[no-any-return]
    # W&B infers the distribution from the keys given.
    if "values" in body:
        return "categorical"
    if "value" in body:
        return "constant"
    if "min" in body or "max" in body:
        numbers = [_as_number(body.get(k)) for k in _MIN_MAX]
        return "int_uniform" if all(isinstance(n, int) for n in numbers) else "uniform"
    fail(f"{where}: no values; give 'values', 'value', 'min' and 'max', or a 'distribution'", line)


def _leaf(name: str, path: tuple[str, ...], body: _Map, line: int | None, method: str, fail: Fail) -> _Param:
    where = f"parameter {name!r}"
    dist = _distribution(where, body, line, fail)
    allowed = _DISTRIBUTIONS[dist]
    for key in body:
        if key != "distribution" and key not in allowed:
            fail(f"{where}: key {key!r} does not apply to distribution {dist!r}", body.key_lines.get(key, line))
    required = ("value",) if dist == "constant" else ("values",) if "values" in allowed else _MIN_MAX
    for key in required:
        if key in allowed and key not in body:
            fail(f"{where}: distribution {dist!r} needs {key!r}", line)

    def number(key: str) -> int | float:
        raw = body.get(key, _DEFAULTS.get(key))
        value = _as_number(raw)
        if value is None:
            fail(f"{where}: {key!r} must be a number, not {_kind(raw)}", body.key_lines.get(key, line))
        return value

    nums = {key: number(key) for key in allowed if key not in ("value", "values", "probabilities")}
    if "min" in nums and nums["min"] >= nums["max"]:
        fail(f"{where}: min {nums['min']} is not less than max {nums['max']}", line)
    if dist == "int_uniform" and not all(isinstance(nums[k], int) for k in _MIN_MAX):
        fail(f"{where}: int_uniform needs integer min and max", line)
    if dist.endswith("_values") and nums["min"] <= 0:
        fail(f"{where}: {dist} needs min > 0", line)
    for key, bound in (("q", 0), ("a", 0), ("b", 0)):
        if key in nums and nums[key] <= 0:
            fail(f"{where}: {key!r} must be greater than {bound}", line)
    if "sigma" in nums and nums["sigma"] < 0:
        fail(f"{where}: 'sigma' must not be negative", line)

    values = None
    if "values" in allowed:
        values = body["values"]
        if not isinstance(values, list):
            fail(f"{where}: 'values' must be a list such as [1, 2], not {_kind(values)} (for one value write 'value:')", line)
        if not values:
            fail(f"{where}: 'values' is an empty list", line)
        _check_writable(where, values, line, fail)
    if dist == "constant":
        _check_writable(where, [body["value"]], line, fail)
    weights = _probabilities(where, body, values, line, fail) if "probabilities" in body else None

    if method == "grid":
        if dist not in _GRIDDABLE or weights is not None:
            fail(
                f"{where}: grid search takes 'values', 'value', int_uniform or q_uniform, "
                f"not {dist!r}{' with probabilities' if weights else ''}; use 'method: random' to draw it",
                line,
            )
        grid: Sequence[Any] | Any
        if dist == "constant":
            grid = [body["value"]]
        elif dist == "categorical":
            grid = _unique(values)  # type: ignore[arg-type]
        elif dist == "int_uniform":
            grid = range(nums["min"], nums["max"] + 1)  # type: ignore[arg-type]
        else:  # q_uniform: numpy.arange(min, max, q), max excluded, computed exactly
            grid = _arange(nums["min"], nums["max"], nums["q"])
        return _Param(name, line, values=grid, path=path)
    return _Param(name, line, draw=_sampler(dist, body, values, weights, nums), path=path)


def _probabilities(where: str, body: _Map, values: Any, line: int | None, fail: Fail) -> list[float]:
    raw = body["probabilities"]
    numbers = [_as_number(p) for p in raw] if isinstance(raw, list) else [None]
    if any(n is None or n < 0 for n in numbers) or len(numbers) != len(values):
        fail(f"{where}: 'probabilities' must be {len(values)} non-negative numbers, one per value", line)
    if not math.isclose(sum(numbers), 1.0, rel_tol=1e-6):  # type: ignore[arg-type]
        fail(f"{where}: 'probabilities' add up to {sum(numbers)}, not 1", line)  # type: ignore[arg-type]
    return numbers  # type: ignore[return-value]


def _unique(values: list[Any]) -> list[Any]:
    """Drop repeated values, as W&B's grid does by hashing each value's YAML."""
    seen: set[str] = set()
    unique = []
    for value in values:
        # W&B counts 3.0 and 3 as one value.
        key = int(value) if isinstance(value, float) and value.is_integer() else value
        try:
            text = json.dumps(key, sort_keys=True, default=repr)
        except (TypeError, ValueError):
            text = repr(key)
        if text not in seen:
            seen.add(text)
            unique.append(value)
    return unique


def _quantize(x: float, q: int | float) -> int | float:
    """round(x / q) * q as W&B does (half to even), but exact for decimal q."""
    n = round(x / q)
    if isinstance(q, int):
        return n * q
    return float(Decimal(n) * Decimal(repr(q)))


def _sampler(
    dist: str, body: _Map, values: Any, weights: list[float] | None, nums: dict[str, Any]
) -> Callable[[random.Random], Any]:
    if dist == "constant":
        value = body["value"]
        return lambda rng: value
    if dist.startswith("categorical"):
        if weights is None:
            return lambda rng: rng.choice(values)
        return lambda rng: rng.choices(values, weights)[0]
    lo, hi = nums.get("min"), nums.get("max")
    mu, sigma = nums.get("mu"), nums.get("sigma")
    base = dist[2:] if dist.startswith("q_") else dist
    draw: Callable[[random.Random], float]
    if base == "int_uniform":
        return lambda rng: rng.randint(lo, hi)  # type: ignore[arg-type]
    if base == "uniform":
        draw = lambda rng: rng.uniform(lo, hi)  # noqa: E731
    elif base == "log_uniform":  # min and max are exponents of e
        draw = lambda rng: math.exp(rng.uniform(lo, hi))  # noqa: E731
    elif base == "log_uniform_values":
        draw = lambda rng: math.exp(rng.uniform(math.log(lo), math.log(hi)))  # noqa: E731
    elif base == "inv_log_uniform":  # log(1/X) uniform in [min, max]
        draw = lambda rng: math.exp(-rng.uniform(lo, hi))  # noqa: E731
    elif base == "inv_log_uniform_values":  # log(1/X) uniform in [log(1/max), log(1/min)]
        draw = lambda rng: math.exp(-rng.uniform(-math.log(hi), -math.log(lo)))  # noqa: E731
    elif base == "normal":
        draw = lambda rng: rng.normalvariate(mu, sigma)  # noqa: E731
    elif base == "log_normal":
        draw = lambda rng: rng.lognormvariate(mu, sigma)  # noqa: E731
    else:  # beta
        a, b = nums["a"], nums["b"]
        draw = lambda rng: rng.betavariate(a, b)  # noqa: E731
    if dist.startswith("q_"):
        q = nums["q"]
        return lambda rng: _quantize(draw(rng), q)
    return draw


# ------------------------------------------------------------------ commands


def _tokens(
    command: tuple[str, ...] | None, program: str | None, params: list[_Param], spec: _Map, fail: Fail
) -> list[Token]:
    index_of = {p.name: i for i, p in enumerate(params)}
    placed: set[int] = set()
    elements = command or DEFAULT_COMMAND
    # First pass: find placed parameters, so args macros can leave them out.
    expanded: list[tuple[str, list[Part] | None]] = []
    for element in elements:
        macro = element[2:-1] if element.startswith("${") and element.endswith("}") else None
        if macro in MACROS:
            if macro == "program":
                if program is None:
                    fail("missing 'program' (or a 'command' without ${program}): the script to run")
                parts = _element_parts(program, index_of, "'program'", spec.key_lines.get("program"), fail)
                placed.update(p[0] for p in parts if not isinstance(p, str))
                expanded.append(("program", parts))
            else:
                expanded.append((macro, None))  # type: ignore[arg-type]
        else:
            parts = _element_parts(element, index_of, "'command'", spec.key_lines.get("command"), fail)
            placed.update(p[0] for p in parts if not isinstance(p, str))
            expanded.append(("", parts))
    delivered = [i for i in range(len(params)) if i not in placed]
    if delivered and not any(kind in _ARG_MACROS for kind, _ in expanded):
        names = ", ".join(repr(params[i].name) for i in delivered)
        fail(f"parameter(s) {names} reach no command: add ${{args}} to 'command' or place them with ${{name}}",
             spec.key_lines.get("command"))

    tokens: list[Token] = []
    for kind, parts in expanded:
        if parts is not None:
            tokens.append((False, parts))
        elif kind == "env":
            tokens.append((False, [ENV]))
        elif kind == "interpreter":
            tokens.append((False, [INTERPRETER]))
        else:
            tokens.extend(_arg_tokens(kind, params, delivered))
    return tokens


def _element_parts(text: str, index_of: dict[str, int], what: str, line: int | None, fail: Fail) -> list[Part]:
    """Shell-quote one argv element, filling `${name}` and keeping `${VAR}` for the shell."""
    if _UNWRITABLE.search(text):
        fail(f"{what}: {_show(text)} contains a line break or a character a runfile line cannot hold", line)
    parts: list[Part] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(shlex.quote(text[position : match.start()]))
        ref = match.group(1)
        if ref in index_of:
            parts.append((index_of[ref], "w"))
        elif ref in MACROS:
            fail(f"{what}: macro ${{{ref}}} must be a whole command element, as W&B requires", line)
        elif ref.startswith("envvar:") and ref[7:] and set(ref[7:]) <= _ENVVAR_NAMES:
            # W&B's agent reads the variable when it starts the run: so does the shell.
            parts.append(f'"${{{ref[7:]}}}"')
        elif not any(c in ref for c in "\"`\\"):
            parts.append(f'"${{{ref}}}"')  # not ours: the shell expands it, as one word
        else:
            parts.append(shlex.quote(match.group(0)))
        position = match.end()
    if position < len(text) or not parts:
        parts.append(shlex.quote(text[position:]))
    return parts


def _arg_tokens(macro: str, params: list[_Param], delivered: list[int]) -> list[Token]:
    """Expand an args macro as the W&B agent does, one token per word."""
    names = {i: params[i].name for i in delivered}
    if macro == "args":
        return [(False, [f"--{names[i]}=", (i, "q")]) for i in delivered]
    if macro == "args_no_hyphens":
        return [(False, [f"{names[i]}=", (i, "q")]) for i in delivered]
    if macro == "args_append_hydra":
        return [(False, [f"+{names[i]}=", (i, "q")]) for i in delivered]
    if macro == "args_override_hydra":
        return [(False, [f"++{names[i]}=", (i, "q")]) for i in delivered]
    if macro == "args_no_equals":
        return [token for i in delivered for token in ((False, [f"--{names[i]}"]), (False, [(i, "w")]))]
    if macro == "args_no_boolean_flags":
        return [(True, [(i, "nobool")]) for i in delivered]
    json_word: list[Part] = ["'", *_json_parts(delivered, params, 0), "'"]
    if macro == "args_json":
        return [(False, json_word)]
    # args_json_file: the agent writes the JSON to a file just before the run;
    # offline, the shell does it when the line runs.
    return [(False, ["\"$(f=$(mktemp) && printf '%s' ", *json_word, ' > "$f" && echo "$f")"'])]


def _json_parts(members: list[int], params: list[_Param], depth: int) -> list[Part]:
    """The parts of W&B's json.dumps(config): nested parameters nest, keys sorted."""
    groups: dict[str, list[int]] = {}
    for i in members:
        groups.setdefault(params[i].path[depth], []).append(i)
    parts: list[Part] = ["{"]
    for n, (key, group) in enumerate(groups.items()):
        parts.append((", " if n else "") + json.dumps(key).replace("'", "'\\''") + ": ")
        if len(group) == 1 and len(params[group[0]].path) == depth + 1:
            parts.append((group[0], "json"))
        else:
            parts.extend(_json_parts(group, params, depth + 1))
    parts.append("}")
    return parts
