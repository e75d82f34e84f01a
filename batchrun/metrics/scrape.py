"""`--scrape 'NAME=REGEX'`: metrics read from a job's out.log, for scripts that cannot be changed.

Each match of REGEX in out.log is one history point of metric NAME, in
order (steps 0, 1, 2...); the value is the first group (or the whole match
when the pattern has no group). Scraping happens at read time, so it works on
runs that finished long ago, without a relaunch. A scraped metric replaces a
logged metric of the same name for that job. Pure: rules in, series out.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from batchrun.errors import UsageError
from batchrun.metrics.file import MAX_BYTES, RunMetrics, Series, Skipped

__all__ = ["ScrapeRule", "parse_scrape", "scrape_log"]

# The Skipped reason for a log scraped from its end ({n}: how many logs).
_TAIL_SCRAPED = f"scraped only the last {MAX_BYTES >> 20} MiB of {{n}} logs over {MAX_BYTES >> 20} MiB"


@dataclass(frozen=True)
class ScrapeRule:
    """One `NAME=REGEX` option."""

    name: str
    pattern: re.Pattern[str]


def parse_scrape(text: str) -> ScrapeRule:
    """`loss=loss: ([0-9.eE+-]+)` -> a rule.

    Raises:
        UsageError: no `=`, an empty name, a bad regular expression, or more than one group.
    """
    name, sep, regex = text.partition("=")
    name = name.strip()
    if not sep or not name or not regex:
        raise UsageError(f"--scrape {text!r}: expected NAME=REGEX, e.g. 'loss=loss: ([0-9.eE+-]+)'")
    try:
        pattern = re.compile(regex, re.MULTILINE)
    except re.error as err:
        raise UsageError(f"--scrape {text!r}: bad regular expression: {err}") from None
    if pattern.groups > 1 and "value" not in pattern.groupindex:
        raise UsageError(f"--scrape {text!r}: {pattern.groups} groups; use one group around the number (or name it (?P<value>...))")
    return ScrapeRule(name, pattern)


def scrape_log(path: str, rules: list[ScrapeRule], metrics: RunMetrics, skipped: Skipped, keep_history: bool = False) -> None:
    """Add each rule's matches in the file at `path` to `metrics` (a missing file adds nothing)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                f.seek(size - MAX_BYTES)
                skipped.add(_TAIL_SCRAPED, f"{path} ({size >> 20} MiB)")
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return
    except OSError as err:
        skipped.add("skipped {n} logs that cannot be read", f"{path}: {err.strerror}")
        return
    for rule in rules:
        series = Series()
        group = "value" if "value" in rule.pattern.groupindex else (1 if rule.pattern.groups else 0)
        for step, match in enumerate(rule.pattern.finditer(text)):
            found = match.group(group)
            try:
                value = float(found)
            except (TypeError, ValueError):
                skipped.add("skipped {n} scraped matches that are not numbers", f"{path}: {rule.name}={found!r}"[:120])
                continue
            if not math.isfinite(value):
                skipped.add("skipped {n} NaN or infinite metric values", f"{path}: {rule.name}")
                continue
            series.add(step, value, keep_history)
        if series.count:
            metrics.drop(rule.name)
            metrics.series[rule.name] = series
