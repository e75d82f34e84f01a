"""The dashboard's HTTP handlers (tornado): who may ask, what is served, and how answers travel.

Every request is checked before anything else (`prepare`): the Host must be
this machine's when the server listens on loopback (a web page elsewhere
cannot reach it by a DNS trick), and the token must come with it, in the
URL (`?token=`) or the `X-Batchrun-Token` header; a POST (an action) must
carry it in the header, which no other site's page can set. Anything else
is refused with 403, unmatched paths included.

Pages are one small HTML shell each, with no inline script: the Content
Security Policy allows scripts from this server only, so no text a user
wrote can run even were it mis-escaped. Static files are a fixed list, found
by name in a dict, never by path: plotly.js from the plotly package, the
sweep's drawing from `results/static/`, the pages' own from `ui/static/`.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import html
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from importlib.resources import files
from typing import Any, Protocol

import tornado.web

from batchrun.ui.api import Api, ApiError
from batchrun.ui.registry import Registry
from batchrun.ui.watch import SweepWatch

__all__ = ["TOKEN_HEADER", "routes", "static_files"]

TOKEN_HEADER = "X-Batchrun-Token"


class Dashboard(Protocol):
    """What the handlers use of the server's state (`server.Dashboard`), so this module need not import it."""

    @property
    def token(self) -> str: ...
    @property
    def loopback(self) -> bool: ...
    @property
    def executor(self) -> Executor: ...
    @property
    def api(self) -> Api: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def static(self) -> dict[str, Any]: ...

    async def ready(self, watch: SweepWatch) -> None: ...

    async def changed(self, watch: SweepWatch, since: int, wait: float) -> None: ...

    def poke(self, watch: SweepWatch) -> None: ...
_CSP = ("default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# plotly.js compiles WebGL programs with `new Function`: hence 'unsafe-eval'; it sets styles inline: hence 'unsafe-inline' for styles.
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Which pages need plotly.
_PLOTTING = {"sweep", "run", "compare"}


class _Base(tornado.web.RequestHandler):
    def initialize(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.started = time.perf_counter()

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", _CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        if not self._host_allowed():
            raise tornado.web.HTTPError(403, reason="Host not allowed")
        given = self.request.headers.get(TOKEN_HEADER, "")
        if self.request.method == "GET" and not given:
            given = self.get_query_argument("token", "")
        if not given or not hmac.compare_digest(given.encode(), self.dashboard.token.encode()):
            raise tornado.web.HTTPError(403, reason="Forbidden")
        if self.request.method == "POST":
            origin = self.request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != self.request.host:
                raise tornado.web.HTTPError(403, reason="Cross-origin request")

    def _host_allowed(self) -> bool:
        if not self.dashboard.loopback:
            return True
        host = self.request.host_name.strip("[]").lower()
        return host in _LOOPBACK_NAMES or host.startswith("127.") or host.endswith(".localhost")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if status_code == 403:
            self.finish("403 Forbidden: open the URL batchrun ui printed (it carries ?token=...)\n")
        else:
            self.finish(f"{status_code} {self._reason}\n")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # refusals are answers, not errors
        super().log_exception(typ, value, tb)

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` in a worker thread: reading runs directories blocks."""
        return await tornado.ioloop.IOLoop.current().run_in_executor(self.dashboard.executor, fn, *args)

    def send_json(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Server-Timing", f"app;dur={(time.perf_counter() - self.started) * 1000:.1f}")
        self.finish(json.dumps(doc, separators=(",", ":"), allow_nan=False))

    async def answer(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.send_json(await self.blocking(fn, *args))
        except ApiError as err:
            self.send_json({"error": str(err)}, err.status)

    @property
    def api(self) -> Api:
        return self.dashboard.api


class _Page(_Base):
    async def get(self, kind: str = "overview", *ids: str) -> None:
        params = {"page": kind}
        if kind in ("sweep", "run"):
            if self.dashboard.registry.get(ids[0]) is None:
                raise tornado.web.HTTPError(404)
            params["sweep"] = ids[0]
            if kind == "run":
                params["job"] = ids[1]
        if kind == "compare":
            params["a"] = self.get_query_argument("a", "")
            params["b"] = self.get_query_argument("b", "")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_shell(self.dashboard.token, params, kind in _PLOTTING))


def _shell(token: str, params: dict[str, str], plotting: bool) -> str:
    q = f"?token={html.escape(token, quote=True)}"
    # plotly.js (4.8 MB) is compiled while the page's data comes: the page starts asking before it is there.
    scripts = (["parcoords.js", "sweep.js"] if plotting else []) + ["ui.js"]
    data = " ".join(f"data-{name}='{html.escape(value, quote=True)}'" for name, value in params.items())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>batchrun ui</title>"
        "<meta name='viewport' content='width=device-width'><link rel='icon' href='data:,'>"
        f"<link rel='stylesheet' href='/static/sweep.css{q}'><link rel='stylesheet' href='/static/ui.css{q}'>"
        + "".join(f"<script defer src='/static/{name}{q}'></script>" for name in scripts)
        + (f"<script async src='/static/plotly.min.js{q}'></script>" if plotting else "")
        + f"</head><body {data} data-token='{html.escape(token, quote=True)}'><div id='app'>loading&hellip;</div></body></html>\n"
    )


class _Static(_Base):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        # The token is in the URL and changes with every server: a file may be kept as long as that URL lives.
        self.set_header("Cache-Control", "private, max-age=86400")

    def get(self, name: str) -> None:
        found = self.dashboard.static.get(name)
        if found is None:
            raise tornado.web.HTTPError(404)
        body, packed, kind, etag = found
        self.set_header("Content-Type", kind)
        self.set_header("ETag", etag)
        if self.request.headers.get("If-None-Match") == etag:
            self.set_status(304)
            self.finish()
            return
        if "gzip" in self.request.headers.get("Accept-Encoding", ""):
            self.set_header("Content-Encoding", "gzip")
            self.finish(packed)
        else:
            self.finish(body)

    def compute_etag(self) -> None:
        return None


def static_files() -> dict[str, tuple[bytes, bytes, str, str]]:
    """The files the pages load, by name: (bytes, gzipped bytes, content type, ETag), made once."""
    from plotly.offline import get_plotlyjs

    sources = {
        "plotly.min.js": get_plotlyjs(),
        "parcoords.js": files("batchrun.results").joinpath("static").joinpath("parcoords.js").read_text(encoding="utf-8"),
        "sweep.js": files("batchrun.results").joinpath("static").joinpath("sweep.js").read_text(encoding="utf-8"),
        "sweep.css": files("batchrun.results").joinpath("static").joinpath("sweep.css").read_text(encoding="utf-8"),
        "ui.js": files("batchrun.ui").joinpath("static").joinpath("ui.js").read_text(encoding="utf-8"),
        "ui.css": files("batchrun.ui").joinpath("static").joinpath("ui.css").read_text(encoding="utf-8"),
    }
    out = {}
    for name, text in sources.items():
        body = text.encode()
        kind = "text/javascript; charset=utf-8" if name.endswith(".js") else "text/css; charset=utf-8"
        out[name] = (body, gzip.compress(body, 6), kind, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return out


class _Overview(_Base):
    async def get(self) -> None:
        await self.answer(self.api.overview)


class _Sweep(_Base):
    async def get(self, sid: str) -> None:
        watch = self.dashboard.registry.get(sid)
        if watch is None:
            raise tornado.web.HTTPError(404)
        since = _int(self.get_query_argument("since", "0"))
        wait = min(30.0, max(0.0, _float(self.get_query_argument("wait", "0"))))
        await self.dashboard.ready(watch)
        if since and since == watch.version and wait:
            await self.dashboard.changed(watch, since, wait)
            self.started = time.perf_counter()  # the answer's own time, not the wait's
        doc = watch.changes(since) if since else watch.document()
        if doc is None:
            self.send_json({"error": watch.error or "cannot read this runs directory", "version": 0}, 503)
            return
        self.set_header("X-Refresh-Ms", f"{watch.refresh_seconds * 1000:.0f}")
        self.send_json({**doc, "error": watch.error})


class _SweepPart(_Base):
    """The parts of a sweep page fetched apart: curves, groups, importance, a run, its logs."""

    async def get(self, sid: str, part: str, job_id: str | None = None) -> None:
        watch = self.dashboard.registry.get(sid)
        if watch is None:
            raise tornado.web.HTTPError(404)
        await self.dashboard.ready(watch)
        arg = self.get_query_argument
        if part == "histories":
            ids = [j for j in arg("jobs", "").split(",") if j]
            await self.answer(self.api.curves, watch, ids, arg("metric", ""))
        elif part == "groups":
            await self.answer(self.api.groups, watch, arg("over", ""), arg("metric", ""))
        elif part == "importance":
            await self.answer(self.api.importance, watch, arg("metric", ""))
        elif part == "run" and job_id is not None:
            await self.answer(self.api.run, watch, job_id)
        elif part == "log" and job_id is not None:
            await self.answer(self.api.log, watch, job_id, arg("name", "out"), _int(arg("offset", "-1"), -1))
        else:
            raise tornado.web.HTTPError(404)


class _Action(_Base):
    async def post(self, sid: str, action: str) -> None:
        watch = self.dashboard.registry.get(sid)
        if watch is None:
            raise tornado.web.HTTPError(404)
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.send_json({"error": "expected a JSON object"}, 400)
            return
        await self.dashboard.ready(watch)
        if action == "kill":
            await self.answer(self.api.kill, watch, str(body.get("job_id", "")))
        else:
            await self.answer(self.api.stop, watch, bool(body.get("now", False)))
        self.dashboard.poke(watch)


class _NotFound(_Base):
    def prepare(self) -> None:
        super().prepare()  # a wrong path without the token is 403 like any other
        raise tornado.web.HTTPError(404)


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def routes(dashboard: Dashboard) -> tuple[list[Any], dict[str, Any]]:
    """The URL table and the application settings."""
    sid, job = r"([0-9a-f]{12})", r"([0-9a-f]{1,64})"
    args = {"dashboard": dashboard}
    table = [
        (r"/", _Page, args),
        (r"/(sweep)/" + sid, _Page, args),
        (r"/(run)/" + sid + "/" + job, _Page, args),
        (r"/(compare)", _Page, args),
        (r"/static/([a-z.]+)", _Static, args),
        (r"/api/overview", _Overview, args),
        (r"/api/sweep/" + sid, _Sweep, args),
        (r"/api/sweep/" + sid + r"/(histories|groups|importance)", _SweepPart, args),
        (r"/api/sweep/" + sid + r"/(run|log)/" + job, _SweepPart, args),
        (r"/api/sweep/" + sid + r"/(kill|stop)", _Action, args),
    ]
    settings = {"default_handler_class": _NotFound, "default_handler_args": args, "log_function": lambda handler: None, "compress_response": False}
    return table, settings

