"""A W&B sweep's command: the agent's `command` list and its macros, as tokens batchrun renders per point.

Follows the W&B agent (`wandb/sdk/launch/sweeps/utils.py`, `wandb/wandb_agent.py`):
`${env}`, `${interpreter}`, `${program}` and the `${args...}` macros.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from batchrun.sweeps._common import (
    PLACEHOLDER,
    UNWRITABLE,
    Fail,
    Map,
    Param,
    Part,
    Token,
    quote_arg,
    render_arg,
    render_word,
    show,
)

__all__ = ["DEFAULT_COMMAND", "ENV", "INTERPRETER", "MACROS", "command_tokens", "placed_params"]

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


def placed_params(command: tuple[str, ...] | None, program: str | None, params: list[Param], spec: Map, fail: Fail) -> frozenset[int]:
    """The parameters placed with `${name}` in the command (or the program it runs): they have no flag of their own."""
    return frozenset(_expand(command, program, params, spec, fail)[1])


def _expand(command: tuple[str, ...] | None, program: str | None, params: list[Param], spec: Map,
            fail: Fail) -> tuple[list[tuple[str, list[Part]]], set[int]]:
    """The command's elements as (macro or "", parts of a literal element), and the parameters placed in them."""
    index_of = {p.name: i for i, p in enumerate(params)}
    placed: set[int] = set()
    expanded: list[tuple[str, list[Part]]] = []
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
    return expanded, placed


def command_tokens(
    command: tuple[str, ...] | None, program: str | None, params: list[Param], spec: Map, fail: Fail
) -> list[Token]:
    expanded, placed = _expand(command, program, params, spec, fail)
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
