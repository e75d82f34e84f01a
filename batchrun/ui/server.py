"""The dashboard's server: listen, keep the watched sweeps fresh, wake the pages waiting for a change, stop on a signal.

tornado (the `ui` extra) runs on asyncio in the calling thread; reading runs
directories blocks, so it happens in a small thread pool. A sweep is read
again only while a page watches it (asked within `_WATCHED_FOR` seconds),
about every `_REFRESH` seconds, or every other reading time when reading
takes longer (a sweep of 10,000 runs): a page's long poll
(`/api/sweep/ID?since=V&wait=S`) is answered as soon as a reading brings a
new version, so a change reaches the page within about a second.

This module never prints: `serve` reports the URL through `on_ready`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import secrets
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchrun.errors import UsageError
from batchrun.ui.api import Api
from batchrun.ui.registry import Registry
from batchrun.ui.watch import SweepWatch

__all__ = ["DEFAULT_PORT", "Dashboard", "serve"]

# Jupyter's habit: a fixed port, the next ones when it is taken (unless a port is asked for).
DEFAULT_PORT = 8765
_PORT_TRIES = 20
# A sweep is read again this often at most, and no more often than twice its reading time.
_REFRESH = 0.5
# A sweep no page asked about for this long is no longer read.
_WATCHED_FOR = 30.0
# How often the refresher looks which sweeps are due.
_TICK = 0.1
# Worker threads for reading (a kill waits up to 10 s for the launch's answer in one).
_WORKERS = 4


class Dashboard:
    """The server's state: the runs directories, the API over them, the token, the readers' threads."""

    def __init__(self, root: Path, token: str | None = None, loopback: bool = True) -> None:
        from batchrun.ui.handlers import static_files

        self.registry = Registry(root)
        self.api = Api(self.registry)
        self.token = token or secrets.token_urlsafe(24)
        self.loopback = loopback
        self.executor = ThreadPoolExecutor(_WORKERS, thread_name_prefix="batchrun-ui")
        self.static = static_files()
        self._events: dict[str, asyncio.Event] = {}
        self._busy: set[str] = set()
        self._wanted: set[str] = set()

    def application(self) -> object:
        import tornado.web

        from batchrun.ui.handlers import routes

        table, settings = routes(self)
        return tornado.web.Application(table, **settings)

    def _event(self, watch: SweepWatch) -> asyncio.Event:
        event = self._events.get(watch.sid)
        if event is None:
            event = self._events[watch.sid] = asyncio.Event()
        return event

    async def _refresh(self, watch: SweepWatch, force: bool = False) -> None:
        if watch.sid in self._busy:
            return
        self._busy.add(watch.sid)
        try:
            changed = await asyncio.get_running_loop().run_in_executor(self.executor, watch.refresh, force)
        finally:
            self._busy.discard(watch.sid)
        if changed:
            event = self._event(watch)
            self._events[watch.sid] = asyncio.Event()
            event.set()

    async def ready(self, watch: SweepWatch) -> None:
        """Mark the sweep watched, and read it now if it never was or no page watched it lately (its state is old)."""
        now = time.monotonic()
        stale = now - watch.last_refresh > max(_REFRESH, 2 * watch.refresh_seconds) + 2 * _TICK
        watch.watched = now
        if watch.state is not None and not stale:
            return
        while watch.sid in self._busy:
            await asyncio.sleep(0.02)
        if watch.state is None or time.monotonic() - watch.last_refresh > _REFRESH:
            await self._refresh(watch)

    async def changed(self, watch: SweepWatch, since: int, wait: float) -> None:
        """Wait until the sweep has a version after `since`, or `wait` seconds."""
        deadline = time.monotonic() + wait
        while watch.version == since:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            watch.watched = time.monotonic()
            try:
                await asyncio.wait_for(self._event(watch).wait(), left)
            except asyncio.TimeoutError:
                return

    def poke(self, watch: SweepWatch) -> None:
        """Read the sweep again soon (an action changed it)."""
        self._wanted.add(watch.sid)

    async def refresher(self) -> None:
        """Keep every watched sweep fresh, for as long as the server runs."""
        while True:
            now = time.monotonic()
            for watch in self.registry.known():
                if watch.sid in self._busy or now - watch.watched > _WATCHED_FOR:
                    continue
                due = watch.last_refresh + max(_REFRESH, 2 * watch.refresh_seconds)
                if now >= due or watch.sid in self._wanted:
                    self._wanted.discard(watch.sid)
                    asyncio.ensure_future(self._refresh(watch))
            await asyncio.sleep(_TICK)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int | None) -> list[socket.socket]:
    from tornado.netutil import bind_sockets

    tries = [port] if port is not None else [DEFAULT_PORT + i for i in range(_PORT_TRIES)]
    for i, candidate in enumerate(tries):
        try:
            return bind_sockets(candidate, address=host)
        except OSError as err:
            if err.errno == errno.EADDRINUSE and i + 1 < len(tries):
                continue
            raise UsageError(f"cannot listen on {host}:{candidate}: {err.strerror}") from err
    raise AssertionError("unreachable")


def serve(root: Path, host: str = "127.0.0.1", port: int | None = None, token: str | None = None, on_ready: Callable[[str], None] = lambda url: None) -> None:
    """Serve the dashboard of the runs directories under `root` until SIGINT or SIGTERM.

    `port` None: `DEFAULT_PORT` or the next free one; 0: any free port.
    `on_ready` gets the URL to open (with its token) once the server listens.

    Raises:
        UsageError: `root` is not a directory, or the address cannot be listened on.
    """
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    asyncio.run(_serve(Dashboard(root, token, _loopback(host)), host, port, on_ready))


async def _serve(dashboard: Dashboard, host: str, port: int | None, on_ready: Callable[[str], None]) -> None:
    from tornado.httpserver import HTTPServer

    sockets = _bind(host, port)
    server = HTTPServer(dashboard.application())
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    refresher = asyncio.ensure_future(dashboard.refresher())
    bound = sockets[0].getsockname()[1]
    shown = host if host not in ("", "0.0.0.0", "::") else socket.gethostname()
    if ":" in shown:
        shown = f"[{shown}]"
    on_ready(f"http://{shown}:{bound}/?token={dashboard.token}")
    try:
        await stop.wait()
    finally:
        refresher.cancel()
        server.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        dashboard.executor.shutdown(wait=False, cancel_futures=True)
