"""Hyperband early termination, exactly as W&B's sweeps engine decides it.

A port of `hyperband_stop_runs` in `wandb/sweeps` `hyperband_stopping.py`
(the schema's defaults: eta 3, strict true). Bands are checkpoints counted
in logged values of the metric: from `min_iter` up by factors of eta, or
down from `max_iter` by eta, `s` times. At each band the threshold is the
value at position int(n / eta) of the sorted values that the n runs which
reached the band had there, so the top 1/eta pass. Only running runs are
judged, at the last band they reached: strict compares their value at that
band, lenient (strict: false) their best value so far; a run whose value is
worse than the threshold is stopped. Ties pass.

The module is pure: it neither reads metrics files nor signals processes.
The launch feeds it every run's values of the metric (finished, failed and
stopped runs count towards thresholds) and stops what it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from batchrun.sweeps.objective import Goal, is_number

__all__ = ["HyperbandConfig", "HyperbandStopper", "parse_early_terminate"]

_Fail = Callable[..., NoReturn]
# W&B computes 100 bands from min_iter; bands past any run's length never
# apply, and stopping there keeps a huge eta from overflowing a float.
_MIN_ITER_BANDS = 100
_BAND_LIMIT = 2**62
_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")


@dataclass(frozen=True)
class HyperbandConfig:
    """A validated `early_terminate: {type: hyperband, ...}` section."""

    bands: tuple[int, ...]  # ascending checkpoints, in logged values of the metric
    eta: float
    strict: bool


def bands_from(min_iter: int | None = None, max_iter: int | None = None, s: int | None = None,
               eta: float = 3) -> tuple[int, ...]:
    """Compute W&B's bands: max_iter with s wins when both forms are given, as in W&B."""
    bands: list[int] = []
    if max_iter is not None and s is not None:
        band: float = max_iter
        for _ in range(s):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        return tuple(sorted(bands))
    assert min_iter is not None
    band = min_iter
    for _ in range(_MIN_ITER_BANDS):
        if band > _BAND_LIMIT:
            break
        bands.append(int(band))
        band *= eta
    return tuple(bands)


def parse_early_terminate(raw: Any, line: int | None, fail: _Fail) -> HyperbandConfig:
    """Validate an `early_terminate` section as W&B's schema does."""
    if not isinstance(raw, Mapping):
        fail(f"'early_terminate' must be a mapping such as {{type: hyperband, min_iter: 3}}, not {type(raw).__name__}", line)
    for key in raw:
        if key not in _KEYS:
            fail(f"'early_terminate': unknown key {key!r}; hyperband takes {', '.join(_KEYS)}", line)
    if raw.get("type") != "hyperband":
        fail(f"'early_terminate' needs 'type: hyperband' (the only type W&B has), not {raw.get('type')!r}", line)

    def integer(key: str, least: int) -> int | None:
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            fail(f"'early_terminate': {key!r} must be an integer of at least {least}, not {value!r}", line)
        return value

    min_iter, max_iter, s = integer("min_iter", 1), integer("max_iter", 1), integer("s", 1)
    eta = raw.get("eta", 3)
    if not is_number(eta) or eta <= 1:
        fail(f"'early_terminate': 'eta' must be a number greater than 1, not {eta!r}", line)
    strict = raw.get("strict", True)
    if not isinstance(strict, bool):
        fail(f"'early_terminate': 'strict' must be true or false, not {strict!r}", line)
    if min_iter is None and (max_iter is None or s is None):
        fail("'early_terminate': hyperband needs 'min_iter', or 'max_iter' with 's'", line)
    bands = bands_from(min_iter, max_iter, s, eta)
    if not bands:
        fail(f"'early_terminate': max_iter {max_iter} with eta {eta} gives no band; "
             "increase max_iter or s, or decrease eta", line)
    return HyperbandConfig(bands, float(eta), strict)


class HyperbandStopper:
    """Decide which running runs to stop, from every run's history of the metric."""

    def __init__(self, config: HyperbandConfig, metric: str, goal: Goal) -> None:
        self.config = config
        self.metric = metric
        self.goal = goal

    def thresholds(self, histories: Iterable[Sequence[float]]) -> list[float]:
        """Each band's threshold (in minimize sense: negated when maximizing); inf if no run reached it."""
        signed = [self._signed(h) for h in histories]
        signed = [h for h in signed if h]
        r = 1.0 / self.config.eta  # W&B indexes with int(r * n), not int(n / eta): floats differ
        out = []
        for band in self.config.bands:
            values = sorted(h[band - 1] for h in signed if len(h) >= band)
            out.append(values[int(r * len(values))] if values else math.inf)
        return out

    def runs_to_stop(self, histories: Mapping[str, Sequence[float]], running_ids: Iterable[str]) -> set[str]:
        """Return the running runs whose metric is worse than the threshold of the last band they reached.

        Args:
            histories: every run of the sweep (any state): job id -> its valid
                values of the metric, in logged order.
            running_ids: the runs still running; only they can be stopped.
        """
        thresholds = self.thresholds(histories.values())
        stop = set()
        for job_id in running_ids:
            history = self._signed(histories.get(job_id, ()))
            reached = [(b, t) for b, t in zip(self.config.bands, thresholds, strict=True) if b <= len(history)]
            if not reached:
                continue
            band, threshold = reached[-1]
            value = history[band - 1] if self.config.strict else min(history)
            if value > threshold:
                stop.add(job_id)
        return stop

    def _signed(self, history: Sequence[float]) -> list[float]:
        return [-v for v in history] if self.goal is Goal.MAXIMIZE else list(history)
