"""A bayes sweep's runfile lines read back as points: the runfile is the record of the search.

A point becomes its line through the search space's command template (as
`method: random` renders a draw); `LineParser` turns that template into a
regular expression with a group per parameter slot and reads a line back,
accepting it only if the point it finds renders to the very same line. A line
written by hand that no point renders is no point of the search. This module
knows nothing of Optuna: `bayes_space` says which values a slot can hold.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchrun.sweeps.wandb_space import SearchSpace

__all__ = ["LineParser"]

# Numbers as str() and json.dumps() write them.
_NUMBER = r"[-+0-9.eE]+"
# A number no context changes, rendered to find what surrounds a number.
_MARKER = 7654321


class LineParser:
    """Reads the lines of one command template back into points (a value per parameter)."""

    def __init__(self, space: SearchSpace, choices: Mapping[int, Sequence[Any]], constants: Mapping[int, Any],
                 render: Callable[[Mapping[str, Any]], str]) -> None:
        """`choices`: the values a parameter can take, for those with a finite set (categorical and constant ones);
        the others are numbers. `constants`: the parameters that take one value. `render`: a point's line, to check a parse against."""
        self.space = space
        self.render = render
        self.constants = dict(constants)
        self._pattern, self._slots = _compile(space, choices)

    def params_of(self, command: str) -> dict[str, Any] | None:
        """Return the point a line renders, or None if no point renders it."""
        match = self._pattern.fullmatch(" " + command if self.space.lstrip else command)
        if match is None:
            return None
        values: dict[int, Any] = dict(self.constants)
        for group, (index, texts) in zip(match.groups(), self._slots, strict=True):
            if texts is not None:
                value = texts[group]
            else:
                try:
                    value = int(group) if re.fullmatch(r"[-+]?\d+", group) else float(group)
                except ValueError:
                    return None
            if values.setdefault(index, value) != value:
                return None
        names = self.space.names
        params = {names[i]: values[i] for i in range(len(names))}
        return params if self.render(params) == command else None


def _compile(space: SearchSpace, choices: Mapping[int, Sequence[Any]]) -> tuple[re.Pattern[str], list[tuple[int, dict[str, Any] | None]]]:
    """Turn the command template into a regex with a group per parameter slot."""
    pieces: list[str] = []
    slots: list[tuple[int, dict[str, Any] | None]] = []
    for literal, field, _, _ in string.Formatter().parse(space.template):
        pieces.append(re.escape(literal))
        if field is None:
            continue
        index, _, rest = field.partition("[")
        i, j = int(index), int(rest[:-1]) if rest else None
        if i in choices:
            texts: dict[str, Any] = {}
            for value in choices[i]:
                rendered = space.renderers[i](value)
                texts.setdefault(rendered if j is None else rendered[j], value)
            pieces.append("(" + "|".join(map(re.escape, sorted(texts, key=len, reverse=True))) + ")")
            slots.append((i, texts))
        else:  # the context around a number (" --x=" for ${args_no_boolean_flags}) is its marker's
            rendered = space.renderers[i](_MARKER)
            before, _, after = (rendered if j is None else rendered[j]).partition(str(_MARKER))
            pieces.append(f"{re.escape(before)}({_NUMBER}){re.escape(after)}")
            slots.append((i, None))
    return re.compile("".join(pieces), re.DOTALL), slots
