"""How the CLI says a count (`1 job`, `2 jobs`) and counts jobs by state: one rule for every line it prints."""

from __future__ import annotations

from collections.abc import Mapping

from batchrun.store.records import IGNORED, REMOVED, STATES, State

__all__ = ["count", "counts_text"]

# States a count line names only when some job is in them.
_RARE = (State.TIMEOUT, State.REQUEUED, State.KILLED, State.STOPPED, IGNORED)

# Nouns whose plural is not the noun and an s.
_PLURALS = {"was": "were", "it": "them"}


def count(n: int, noun: str) -> str:
    """`1 job`, `0 jobs`, `3 jobs`."""
    return f"{n} {noun if n == 1 else _PLURALS.get(noun, noun + 's')}"


def counts_text(counts: Mapping[str, int], terse: bool = False) -> str:
    """`6 jobs: 0 succeeded, 1 failed, 1 interrupted, 0 running, 4 pending`: how `status`, a launch's summary and `wait` count.

    Jobs are counted by `records.category_of`; timeout, killed, stopped and
    ignored are said only when some job is in them (most runs have none),
    and removed jobs after the runfile's. `terse` (a launch's summary,
    `wait`): succeeded and the states some job is in.
    """
    total = sum(n for state, n in counts.items() if state != REMOVED)
    shown = (State.SUCCEEDED,) if terse else tuple(state for state in STATES if state not in _RARE)
    parts = [f"{counts.get(state, 0)} {state}" for state in STATES if state != REMOVED and (counts.get(state, 0) or state in shown)]
    text = f"{count(total, 'job')}: " + ", ".join(parts)
    if counts.get(REMOVED, 0):
        text += f"; {counts[REMOVED]} removed from the runfile"
    return text
