"""The Dask executor's own settings (`--scheduler`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DaskSettings"]


@dataclass(frozen=True)
class DaskSettings:
    """What only the Dask executor takes from a launch's options."""

    # The scheduler to connect to (tcp://HOST:PORT); None: a local cluster for this launch.
    scheduler: str | None = None
