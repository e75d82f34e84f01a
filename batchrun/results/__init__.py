"""What each run found: the results table, its views, the report, the plots and the best value so far.

`batchrun.results.load(target)` is the public way to the rows from Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["load"]


def load(path: str | Path, scrape: Sequence[str] = (), agg: str = "last") -> list[dict[str, Any]]:
    """The rows of a runfile, gridspec or runs directory: `pandas.DataFrame(load("grid.yml"))`.

    `scrape` takes `NAME=REGEX` texts as `batchrun results --scrape` does.
    (The reading is imported here, when called: importing a module of this
    folder, such as the table formats, costs no reading machinery.)

    Raises:
        BatchrunError: the target cannot be read (as `batchrun results` says).
    """
    from batchrun.metrics.scrape import parse_scrape
    from batchrun.results.table import read_results
    from batchrun.store.target import resolve_target

    return read_results(resolve_target(Path(path)), [parse_scrape(text) for text in scrape]).rows(agg)
