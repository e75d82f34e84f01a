"""The original batchrun's gridspec format: its `program` text with `${name}` slots, and its parameters.

Where the original had plain bugs (README: "Differences from batchrun 0.0.14's
sweep"), this does the right thing; for everything it accepted it gives the
same lines byte for byte.
"""

from __future__ import annotations

import re

from batchrun.sweeps._common import (
    LINE_BREAKS,
    PLACEHOLDER,
    Fail,
    Map,
    Param,
    Part,
    Render,
    Values,
    arange,
    as_number,
    check_name,
    check_writable,
    kind,
    render_word,
    unknown,
    values_list,
)

__all__ = ["original_params", "scan_program"]

_ORIGINAL_PARAM_KEYS = ("values", "value", "min", "max", "step")

_WANDB_PARAM_KEYS = ("distribution", "parameters", "probabilities", "q", "mu", "sigma", "a", "b")


# A backslash ending a line; `\Z` also drops one that ends the program.
_CONTINUATION = re.compile(f"\\\\[ \t]*(?:\r\n|[{LINE_BREAKS}]|\\Z)")

# How to render a `${name}` placed outside quotes, inside '...' and inside "...".
_QUOTE_CONTEXT: dict[str, Render] = {
    "": render_word,
    "'": lambda p, v: str(v).replace("'", "'\\''"),
    '"': lambda p, v: re.sub(r'([\\"$`])', r"\\\1", str(v)),
}


def scan_program(text: str, index_of: dict[str, int], line: int | None, fail: Fail) -> list[Part]:
    """Split shell text into literal parts and `${name}` slots, normalising whitespace.

    Outside quotes, runs of whitespace become one space and a backslash that
    ends a line joins the lines. Quoted text and other backslashes stay.
    """
    parts: list[Part] = []
    buf: list[str] = []
    quote, space, i = "", False, 0
    while i < len(text):
        c = text[i]
        if c == "$" and (m := PLACEHOLDER.match(text, i)) and m.group(1) in index_of:
            if space and (buf or parts):
                buf.append(" ")
            space = False
            parts.extend(["".join(buf)] if buf else [])
            buf = []
            parts.append((index_of[m.group(1)], _QUOTE_CONTEXT[quote]))
            i = m.end()
            continue
        if c == "\\" and quote != "'":
            m = _CONTINUATION.match(text, i)
            if m:
                space, i = space or not quote, m.end()
                continue
            chunk = text[i : i + 2]  # an escaped character stays escaped
        elif quote:
            quote = "" if c == quote else quote
            chunk = " " if c in LINE_BREAKS else c
        elif c.isspace():
            space, i = True, i + 1
            continue
        else:
            quote, chunk = (c if c in "'\"" else ""), c
        if space and (buf or parts):
            buf.append(" ")
        space = False
        buf.append(chunk)
        i += len(chunk)
    if quote:
        fail(f"'program': unterminated {quote} quote", line)
    return parts + (["".join(buf)] if buf else [])


def original_params(section: Map, fail: Fail) -> list[Param]:
    params: list[Param] = []
    for raw_name, body in section.items():
        line = section.key_lines.get(raw_name)
        name = check_name(raw_name, line, fail)
        where = f"parameter {name!r}"
        if not isinstance(body, Map):
            fail(f"{where}: expected a mapping such as 'values: [1, 2]', not {kind(body)}", line)
        for key in body:
            if key in _WANDB_PARAM_KEYS:
                fail(f"{where}: {key!r} is a W&B sweep key; add 'method: grid' (or random) to use W&B rules",
                     body.key_lines[key])
            if key not in _ORIGINAL_PARAM_KEYS:
                fail(f"{where}: {unknown(key, _ORIGINAL_PARAM_KEYS)}", body.key_lines[key])
        given = [k for k in ("values", "value") if k in body] + [k for k in ("min", "max", "step") if k in body][:1]
        if not given:
            fail(f"{where}: no values; give 'values', 'value' or 'max' (with optional 'min' and 'step')", line)
        if len(given) > 1:
            fail(f"{where}: give only one of 'values', 'value' or a min/max/step range, "
                 f"not both {given[0]!r} and {given[1]!r}", line)
        if "values" in body:
            values: Values = values_list(where, body, line, fail)
        elif "value" in body:
            values = [body["value"]]
            check_writable(where, values, line, fail)
        else:
            values = _original_range(where, body, line, fail)
        params.append(Param(name, line, values=values))
    return params


def _original_range(where: str, body: Map, line: int | None, fail: Fail) -> Values:
    if "max" not in body:
        fail(f"{where}: a range needs 'max' (the range stops before it)", line)
    bounds = []
    for key, default in (("min", 0), ("max", None), ("step", 1)):
        number = as_number(body.get(key, default))
        if number is None:
            fail(f"{where}: {key!r} must be a number, not {kind(body[key])}", body.key_lines[key])
        bounds.append(number)
    start, stop, step = bounds
    if step == 0:
        fail(f"{where}: 'step' is 0, so the range would never reach max", line)
    values = arange(start, stop, step)
    if not len(values):
        if start == stop:
            fail(f"{where}: min and max are both {start}, so the range is empty (max is excluded)", line)
        fail(f"{where}: step {step} never reaches max {stop} from min {start}", line)
    return values
