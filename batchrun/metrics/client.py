"""`batchrun.log` and `batchrun.summary`: how a Python job reports its metrics.

The protocol is the whole of it: one JSON object per line, appended to the
file `$BATCHRUN_METRICS` names (`<log dir>/metrics.jsonl`, set by batchrun for
every job). History lines hold metric values and an optional `_step`;
`{"_summary": {...}}` lines hold final values. `batchrun.results.table` reads them.

This module is imported with `import batchrun`, inside users' training
scripts, so it imports nothing but the standard library's os and json, and it
never raises into the caller: a full disk or a value JSON cannot hold costs
that value (or that line), with one warning on stderr, never the user's run.
Outside batchrun (no `$BATCHRUN_METRICS`) it writes nothing: a script run by
hand, in a test or a notebook leaves no file behind; set
`BATCHRUN_METRICS=metrics.jsonl` to get one anyway.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["log", "summary"]

# The environment variable batchrun sets for each job (contracts point 5).
METRICS_ENV = "BATCHRUN_METRICS"

_state: dict[str, Any] = {"path": None, "fd": None, "pid": None, "warned": False}


def log(metrics: dict[str, Any], step: int | None = None) -> None:
    """Append one history line, e.g. `batchrun.log({"loss": 0.31}, step=10)`.

    The line is written with one `write` on a file opened for appending, so it
    is on disk (in the page cache) when this returns: a job killed right after
    loses nothing it logged. Without `step`, the reader numbers lines
    0, 1, 2... (one more than the previous line's step).
    """
    if not isinstance(metrics, dict):
        _warn(f"batchrun.log expects a dict of metric values, not {type(metrics).__name__}; ignored")
        return
    line = dict(metrics)
    if step is not None:
        try:
            line["_step"] = int(step)
        except (TypeError, ValueError, OverflowError):
            _warn(f"batchrun.log: step must be a whole number, not {step!r}; logged without it")
    _append(line)


def summary(metrics: dict[str, Any]) -> None:
    """Record final values, e.g. `batchrun.summary({"best_acc": 0.91})`; they override the history's last."""
    if not isinstance(metrics, dict):
        _warn(f"batchrun.summary expects a dict of metric values, not {type(metrics).__name__}; ignored")
        return
    _append({"_summary": dict(metrics)})


def _plain(value: Any) -> Any:
    """What JSON cannot hold as is: numpy and torch scalars by their value, anything else by its text."""
    for convert in ("item", "__float__"):
        method = getattr(value, convert, None)
        if method is not None:
            try:
                result = method()
            except Exception:  # noqa: BLE001 - a user's object may raise anything
                continue
            if isinstance(result, (int, float, str, bool)) or result is None:
                return result
    return repr(value)


def _append(line: dict[str, Any]) -> None:
    path = os.environ.get(METRICS_ENV)
    if not path:
        return
    try:
        # NaN and infinities are written as JSON's NaN/Infinity; the reader skips them with a count.
        data = (json.dumps(line, default=_plain, skipkeys=True, separators=(",", ":")) + "\n").encode("utf-8", "replace")
    except (TypeError, ValueError, RecursionError) as err:
        _warn(f"batchrun.log: cannot write these values as JSON ({err}); line dropped")
        return
    try:
        fd = _state["fd"]
        if fd is None or _state["path"] != path or _state["pid"] != os.getpid():
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _state.update(path=path, fd=fd, pid=os.getpid())
        os.write(fd, data)
    except OSError as err:
        _state["fd"] = None
        _warn(f"batchrun.log: cannot write {path}: {err.strerror}; metrics dropped")


def _warn(message: str) -> None:
    # Once per process: a loop logging into a full disk must not flood stderr.
    if _state["warned"]:
        return
    _state["warned"] = True
    try:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001, S110 - stderr itself may be gone; the run goes on
        pass
