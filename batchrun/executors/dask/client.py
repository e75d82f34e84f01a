"""Talking to Dask from the launch's host: importing dask.distributed, checking a scheduler answers, one-line errors.

dask.distributed is an optional extra, imported only here and only when used.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from typing import Any

from batchrun.errors import ExecutorError

__all__ = ["CONNECT_TIMEOUT", "INSTALL_HINT", "cancelled", "distributed", "one_line", "probe_scheduler", "start_local_cluster"]

INSTALL_HINT = "pip install 'batchrun[dask]'"
# Seconds to wait for the scheduler: Dask's default (30 s) is long for a typo.
CONNECT_TIMEOUT = 10.0


def probe_scheduler(address: str) -> None:
    """Check that a Dask scheduler answers at `address`, with one-line errors.

    Connecting a `Client` to a bad address leaves a half-built client whose
    finaliser hangs for 20 s at exit, and Dask retries a refused address
    until its timeout; a plain socket and one Dask handshake fail cleanly.
    """
    import asyncio  # noqa: PLC0415 - only when connecting: it costs 15 ms to import

    connect = importlib.import_module("distributed.comm").connect
    security = importlib.import_module("distributed.security").Security()

    scheme, _, location = address.rpartition("://")
    if scheme in ("", "tcp"):
        host, _, port = location.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ExecutorError(f"bad Dask scheduler address {address!r}; expected tcp://HOST:PORT")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
        except OSError as err:
            reason = err.strerror or str(err) or type(err).__name__
            raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {reason}; check --scheduler") from err

    async def handshake() -> None:
        comm = await connect(address, timeout=CONNECT_TIMEOUT, **security.get_connection_args("client"))
        await comm.close()

    try:
        asyncio.run(handshake())
    except Exception as err:  # noqa: BLE001 - Dask raises OSError, ValueError, TypeError... for bad addresses
        raise ExecutorError(f"cannot connect to the Dask scheduler at {address}: {one_line(err)}; check --scheduler") from err


def distributed() -> Any:
    """dask.distributed, imported on first use: it is an optional extra."""
    try:
        module = importlib.import_module("distributed")
    except ImportError as err:
        raise ExecutorError(f"--executor dask cannot import dask.distributed ({err}); install it with: {INSTALL_HINT}") from err
    # distributed gives its loggers (and tornado's) a stderr handler and
    # levels of their own at import, and logs a lost scheduler as tracebacks
    # there; batchrun reports each failure as one line (ExecutorError) instead.
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    return module


def cancelled() -> tuple[type[BaseException], ...]:
    """What a cancelled Dask future raises (distributed's own class derives from one)."""
    import asyncio  # noqa: PLC0415 - imported once a future is waited for
    import concurrent.futures  # noqa: PLC0415

    return (asyncio.CancelledError, concurrent.futures.CancelledError)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


def start_local_cluster(distributed: Any, n_jobs: int, preload: str) -> tuple[Any, Any]:
    """A local Dask cluster of up to `n_jobs` single-threaded worker processes, and a client of it.

    Raises:
        ExecutorError: it could not start.
    """
    n_workers = max(1, min(n_jobs, os.cpu_count() or 1))
    cluster = None
    try:
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # Its HTTP server (health, metrics) starts anyway: any free loopback port.
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
            # `preload` (the worker module's dask_setup): each worker leaves
            # batchrun's session, so a Ctrl-C on the terminal reaches batchrun
            # (which stops the jobs with a grace period), not the workers.
            preload=[preload],
        )
        return cluster, distributed.Client(cluster, set_as_default=False, name="batchrun")
    except Exception as err:
        if cluster is not None:
            cluster.close()
        raise ExecutorError(f"cannot start a local Dask cluster: {one_line(err)}") from err
