"""Signals that arrive before a launch can stop jobs: noted, not fatal.

Importing the CLI takes about 0.1 s and preparing a launch longer still; a
Ctrl-C, SIGTERM or SIGHUP in that window once killed batchrun with the
default action (exit -15 or -1, or a KeyboardInterrupt traceback) instead of
the promised 130. The entry point installs these handlers first, before
anything heavy is imported; they only note the signal. The launch honours
the noted signals as soon as its own handlers are in place (start nothing,
exit 130); any other command gives the default handlers back at once and
exits 130 if a signal came meanwhile.

Imports only `signal`: it must be cheap to load first.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

__all__ = ["HANDLED", "install", "restore", "take_pending"]

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_pending: list[int] = []
# The handlers in place before `install`, while installed.
_previous: dict[int, Any] | None = None


def _note(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def install() -> bool:
    """Note INT, TERM and HUP from now on; False if already installed (or not the main thread)."""
    global _previous
    if _previous is not None:
        return False
    try:
        previous: dict[int, Any] = {sig: signal.signal(sig, _note) for sig in HANDLED}
    except ValueError:  # not the main thread: signals are not ours to handle
        return False
    _previous = previous
    return True


def restore() -> None:
    """Give back the handlers `install` replaced; noted signals stay pending."""
    global _previous
    if _previous is not None:
        for sig, handler in _previous.items():
            signal.signal(sig, handler)
        _previous = None


def take_pending() -> list[int]:
    """The signals noted since the last call, oldest first."""
    taken = _pending[:]
    del _pending[: len(taken)]
    return taken
