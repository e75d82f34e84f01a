"""A Hydra multirun command line (`python app.py -m lr=0.1,0.01 'seed=range(1,4)'`) as one line per job.

The app's own `-m`/`--multirun` says the overrides sweep; it is taken out of
the lines. Each override (a word after the command name with `=`, or `~key`)
is parsed with Hydra's grammar (`hydra_grammar`); a sweep (`a,b`, `choice()`,
`range()`, `sort()`, `shuffle()`, `tag()`, casts of these) becomes one word
per value, `key=value`, written as Hydra's basic sweeper writes its job
overrides (`Override.sweep_string_iterator`); the jobs are the product of the
sweeps in the order typed, the last varying fastest, as the basic sweeper
orders them. Every other word stays as typed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from batchrun.sweeps.notation.hydra_functions import sweep_strings
from batchrun.sweeps.notation.hydra_grammar import parse_override
from batchrun.sweeps.notation.hydra_values import HydraSyntaxError, IntervalSweep, Special

__all__ = ["HydraError", "multirun_flag", "parse_hydra", "quote_word"]

_MULTIRUN = ("-m", "--multirun")
_PYTHON = re.compile(r"(?:.*/)?python[0-9.]*\Z")
# Hydra's options that take the next word as their value: that word is no override.
_VALUE_OPTIONS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class HydraError(ValueError):
    """A multirun command that cannot be expanded; `word` is the index of the word it is about."""

    def __init__(self, message: str, word: int) -> None:
        super().__init__(message)
        self.word = word


def multirun_flag(values: Sequence[str]) -> int | None:
    """The index of the app's `-m`/`--multirun` among the command's word values, or None.

    A `-m` right after `python` (or after python's own options) is python's, not the app's.
    """
    python_m = None
    for i, value in enumerate(values):
        if _PYTHON.match(value):
            j = i + 1
            while j < len(values) and values[j].startswith("-") and values[j] != "-m" and values[j] != "-c":
                j += 1
            if j < len(values) and values[j] == "-m":
                python_m = j
            break
    return next((i for i, v in enumerate(values) if v in _MULTIRUN and i != python_m), None)


def _is_override(value: str) -> bool:
    return "=" in value or (value.startswith("~") and len(value) > 1 and (value[1].isalpha() or value[1] in "_$"))


def parse_hydra(values: Sequence[str], flag: int) -> tuple[list[tuple[int, list[str]]], set[int]]:
    """Find and expand the sweep overrides among the command's word values.

    Returns:
        (index of the word, its `key=value` words) per sweep, in order; and the
        indices of the words to leave out (the `-m`).

    Raises:
        HydraError: an override Hydra would refuse, an interval() or glob()
            sweep, or a key given twice.
    """
    sweeps: list[tuple[int, list[str]]] = []
    seen: dict[str, int] = {}
    started = False  # past the leading VAR=value words and the command name
    after_option = False
    for i, value in enumerate(values):
        if i == flag:
            continue
        if not started:
            if not _ASSIGNMENT.match(value):
                started = True
            continue
        if after_option or value.startswith("-"):
            after_option = value in _VALUE_OPTIONS
            continue
        if not _is_override(value):
            continue
        try:
            override = parse_override(value)
        except HydraSyntaxError as err:
            raise HydraError(f"{value!r} is not an override Hydra accepts: {err}", i) from err
        if override.key_element in seen:
            raise HydraError(f"{override.key_element!r} is given twice (also word {seen[override.key_element] + 1}); Hydra would keep only one", i)
        seen[override.key_element] = i
        if not override.is_sweep:
            continue
        if isinstance(override.value, IntervalSweep):
            raise HydraError(f"{value!r}: interval() is a continuous range, which needs a sampler (Hydra's Optuna or "
                             "Nevergrad sweeper) to pick points; batchrun expands lists, choice() and range()", i)
        if isinstance(override.value, Special):
            raise HydraError(f"{value!r}: glob() picks among the app's config group options, which batchrun cannot see; "
                             "list the options instead (a,b,c)", i)
        try:
            texts = [f"{override.key_element}={text}" for text in sweep_strings(override.value)]
        except HydraSyntaxError as err:
            raise HydraError(f"{value!r}: {err}", i) from err
        if not texts:
            raise HydraError(f"{value!r}: the sweep has no values", i)
        sweeps.append((i, texts))
    return sweeps, {flag}


def quote_word(text: str) -> str:
    """A word as sh needs it to receive exactly `text`: as is when it can, else single-quoted."""
    return shlex.quote(text)
