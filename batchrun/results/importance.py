"""Which parameters matter: an importance per parameter from the finished runs, with its correlation to the metric.

As W&B's parameter importance panel and optuna-dashboard's show it. The
importance is Optuna's PED-ANOVA evaluator (`optuna.importance`, the
default of Optuna 5 and what optuna-dashboard draws; it needs only numpy,
where fANOVA needs scikit-learn): how much each parameter's distribution
among the best 10% of runs differs from its distribution among all, summing
to 1. The correlation is Pearson's, between the metric and the parameter on
its axis (the logarithm for a log axis); none for a category.

Only runs that ended (succeeded, failed, timed out, killed, stopped) with
a value of the metric and every swept parameter count. Optuna is the `ui`
extra's (and `bayes`'s); without it the answer says how to get it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from batchrun.store.records import State

__all__ = ["MIN_RUNS", "parameter_importance"]

# Fewer finished runs than this give no stable answer.
MIN_RUNS = 10
# PED-ANOVA compares the best runs with all: the best 10%, but never fewer than this many (Optuna's advice).
_TOP_RUNS = 5
_ENDED = {str(state) for state in State.ENDED}


def parameter_importance(columns: Sequence[str], rows: Sequence[Sequence[Any]], params: Sequence[dict[str, Any]], metric: str, goal: str) -> dict[str, Any]:
    """Importance and correlation of each swept parameter for `metric`, from a sweep document's rows and axes.

    Returns `{"method", "runs", "params": [{"name", "importance", "correlation"}]}`
    best first, or `{"error": why}` when it cannot be computed (too few runs,
    no Optuna).
    """
    swept = [axis for axis in params if axis["kind"] != "constant"]
    if not swept:
        return {"error": "no parameter varies"}
    at = {name: i for i, name in enumerate(columns)}
    if metric not in at:
        return {"error": f"no metric {metric!r}"}
    state_at, metric_at = at["state"], at[metric]
    points = []
    for row in rows:
        value = row[metric_at]
        if row[state_at] not in _ENDED or not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        setting = [row[at[axis["name"]]] for axis in swept]
        if any(v is None for v in setting):
            continue
        points.append((setting, float(value)))
    if len(points) < MIN_RUNS:
        return {"error": f"needs {MIN_RUNS} finished runs with a value of {metric}; {len(points)} so far"}
    quantile = min(0.5, max(0.1, _TOP_RUNS / len(points)))
    try:
        importances = _ped_anova(swept, points, goal, quantile)
    except ImportError:
        return {"error": "needs Optuna: pip install 'batchrun[ui]'"}
    out = []
    for i, axis in enumerate(swept):
        out.append({"name": axis["name"], "importance": importances.get(axis["name"], 0.0), "correlation": _correlation(axis, [p[0][i] for p in points], [p[1] for p in points])})
    out.sort(key=lambda item: -item["importance"])
    return {"method": f"PED-ANOVA (Optuna), best {quantile:.0%} against all", "runs": len(points), "params": out}


def _ped_anova(swept: Sequence[dict[str, Any]], points: list[tuple[list[Any], float]], goal: str, quantile: float) -> dict[str, float]:
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {}
    for i, axis in enumerate(swept):
        values = [p[0][i] for p in points]
        if axis["kind"] == "category" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            dists[axis["name"]] = optuna.distributions.CategoricalDistribution(tuple(sorted({str(v) for v in values})))
        elif axis["kind"] == "int":
            dists[axis["name"]] = optuna.distributions.IntDistribution(int(min(values)), int(max(values)))
        else:
            low, high = float(min(values)), float(max(values))
            dists[axis["name"]] = optuna.distributions.FloatDistribution(low, high if high > low else low + 1, log=axis["kind"] == "log" and low > 0)
    trials = []
    for setting, value in points:
        params = {}
        for axis, v in zip(swept, setting, strict=True):
            dist = dists[axis["name"]]
            params[axis["name"]] = str(v) if isinstance(dist, optuna.distributions.CategoricalDistribution) else (int(v) if isinstance(dist, optuna.distributions.IntDistribution) else float(v))
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    study = optuna.create_study(direction="maximize" if goal == "max" else "minimize")
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in Optuna 3.6-4, and its "few trials" notes
        found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile), normalize=True)
    return {name: float(value) for name, value in found.items()}


def _correlation(axis: dict[str, Any], xs: list[Any], ys: list[float]) -> float | None:
    if axis["kind"] == "category":
        return None
    try:
        values = [math.log10(x) if axis["kind"] == "log" else float(x) for x in xs]
    except (TypeError, ValueError):
        return None
    n = len(values)
    mx, my = sum(values) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in values)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(values, ys, strict=True)) / math.sqrt(sxx * syy)
