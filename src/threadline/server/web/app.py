"""The query app: Jaeger v1/v3, threadline's own search and live feed, analysis, the web UI.

`build_app(store, ingest)` assembles it from routers, in order: OTLP/HTTP receiver (so a
browser exporter may use the UI's origin), Jaeger (jaeger.py), threadline's own endpoints
(search.py), analysis (`threadline.server.web.analysis.routes(store)`) and the waterfall
(`threadline.server.web.waterfall.routes(store)`), then the UI
(`threadline.server.web.ui.routes()`, last: it answers `/`). Extra routers passed in go before
the UI. Both apps sit behind `access.guard`: tokens, the Host check, nosniff.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route

from threadline.server.ingest.otlp_http import http_handler
from threadline.server.ingest.queue import MAX_REQUEST_BYTES, Ingest
from threadline.server.storage.base import Store, StoreUnavailable
from threadline.server.web import jaeger, search
from threadline.server.web.access import Access, guard
from threadline.server.web.responses import store_unavailable

# browser exporters on this machine may post spans; anything else must be allowed explicitly
LOOPBACK_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


def cors(origins: Iterable[str] | None) -> Middleware:
    """CORS for browser exporters: the given origins ("*" for any), else loopback origins."""
    origins = list(origins or [])
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_origin_regex=None if origins else LOOPBACK_ORIGINS,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=[
            "content-type",
            "content-encoding",
            "traceparent",
            "tracestate",
            "authorization",
        ],
        max_age=3600,
    )


def access_guard(access: Access | None, login_page: bool) -> Middleware:
    """Tokens, the Host check and nosniff (access.py); the loopback defaults when None."""
    return Middleware(guard, access=access or Access(), login_page=login_page)


def otlp_app(
    ingest: Ingest,
    cors_origins: Iterable[str] | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    access: Access | None = None,
) -> Starlette:
    """The OTLP/HTTP receiver on its own port (4318)."""
    return Starlette(
        routes=otlp_routes(ingest, max_request_bytes),
        middleware=[access_guard(access, False), cors(cors_origins)],
    )


def otlp_routes(ingest: Ingest, max_request_bytes: int = MAX_REQUEST_BYTES) -> list[BaseRoute]:
    return [Route("/v1/traces", http_handler(ingest, max_request_bytes), methods=["POST"])]


def _optional_routes(module: str, *args: Any) -> list[BaseRoute]:
    """`threadline.server.<module>.routes(*args)` when that part is installed."""
    try:
        mod = importlib.import_module(f"threadline.server.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"threadline.server.{module}":
            raise
        return []
    return list(mod.routes(*args))


def build_app(
    store: Store,
    ingest: Ingest | None = None,
    routers: Iterable[Iterable[BaseRoute]] = (),
    cors_origins: Iterable[str] | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    access: Access | None = None,
) -> Starlette:
    routes: list[BaseRoute] = []
    if ingest is not None:
        routes += otlp_routes(ingest, max_request_bytes)
    routes += jaeger.routes(store)
    routes += search.routes(store, ingest)
    routes += _optional_routes("web.analysis", store)
    routes += _optional_routes("web.waterfall", store)  # the web UI's compact trace/{id}
    for extra in routers:
        routes += list(extra)
    routes += _optional_routes("web.ui")
    return Starlette(
        routes=routes,
        middleware=[access_guard(access, True), cors(cors_origins)],
        exception_handlers={StoreUnavailable: store_unavailable},
    )
