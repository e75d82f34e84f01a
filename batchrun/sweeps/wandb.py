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

import math
from collections.abc import Hashable
from typing import Any, NamedTuple

import yaml

from batchrun.sweeps._common import (
    Fail,
    Map,
    Param,
    Token,
    Values,
    arange,
    as_number,
    check_name,
    check_writable,
    kind,
    show,
    unknown,
    values_list,
)
from batchrun.sweeps.hyperband import HyperbandConfig, parse_early_terminate
from batchrun.sweeps.objective import Metric, parse_metric
from batchrun.sweeps.wandb_command import DEFAULT_COMMAND, command_tokens
from batchrun.sweeps.wandb_space import Distribution, sampler

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
                      command_tokens(command, program, params, spec, fail), metric, early_terminate)


def program_warnings(program: str | None, command: tuple[str, ...] | None) -> tuple[str, ...]:
    """What a W&B spec's `program` likely did not mean, for the CLI to print once when it sweeps or launches the spec.

    `program: python3 train.py`: W&B's agent runs `${interpreter} ${program}`, the program as one
    file name, and batchrun renders it as the agent does (`/usr/bin/env python 'python3 train.py'`),
    so every run fails; the spec is valid W&B, so this is a warning, not an error.
    """
    uses_program = any(element == "${program}" for element in command or DEFAULT_COMMAND)
    if program is None or not uses_program or len(program.split()) < 2:
        return ()
    first, *rest = program.split()
    hint = f"program: {rest[0]}" if len(rest) == 1 and first.startswith("python") else "program: <script file>"
    return (f"'program' is one file name to W&B: its agent runs `python <program>`, so {program!r} is run as a file of that name "
            f"and every run fails; write {hint}, or a command: list (e.g. command: [{', '.join(program.split())}, ${{args}}])",)


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
        draw = Distribution(dist, tuple(values), None if weights is None else tuple(weights), nums, sampler(dist, values, weights, nums))
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




