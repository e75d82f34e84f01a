"""The values Hydra's override grammar builds: quoted strings and the sweeps (choice, range, interval, glob).

Apart from the grammar (`hydra_grammar`) and the functions that make them
(`hydra_functions`), which both use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChoiceSweep", "HydraSyntaxError", "IntervalSweep", "QuotedString", "RangeSweep", "Special"]


class HydraSyntaxError(ValueError):
    """The text is not a Hydra override (Hydra's parser would refuse it too)."""


@dataclass(frozen=True)
class QuotedString:
    text: str
    quote: str  # "'" or '"'


@dataclass
class ChoiceSweep:
    items: list[Any]
    simple_form: bool = False
    shuffle: bool = False


@dataclass
class RangeSweep:
    start: Any
    stop: Any
    step: Any = 1
    shuffle: bool = False


@dataclass
class IntervalSweep:
    start: float
    end: float


@dataclass
class Special:
    """A sweep batchrun cannot enumerate by itself (glob over config group options)."""

    name: str
    args: list[Any] = field(default_factory=list)
