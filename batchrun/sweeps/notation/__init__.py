"""Sweeps typed on the command line: bash braces, GNU parallel's `:::` lists, Hydra's multirun overrides.

`expand_command(words)` picks the notation a command is written in and returns
an `Expansion`: how many lines it gives (counted without generating them) and
a generator of the lines, streamed, each exactly what a hand-written runfile
would hold. Every problem is one `NotationError` naming the argument and the
place. Pure: no I/O but reading a `::::` file, no printing.
"""

from __future__ import annotations

from batchrun.sweeps.notation.expansion import Expansion, NotationError, expand_command

__all__ = ["Expansion", "NotationError", "expand_command"]
