"""HTTP in one line: ``tl.instrument()`` wires the OpenTelemetry contrib instrumentations.

Servers: ASGI (Starlette, FastAPI, any ASGI callable), WSGI (Flask, any WSGI callable) and
Django. Clients: httpx, requests, aiohttp. The same call wires gRPC (``integrations.grpc``) and
the database drivers (``integrations.databases``). What threadline adds around HTTP:

* W3C Trace Context Level 2 and Baggage done right (`threadline.integrations.w3c`);
* the trace returned to callers: every response carries
  ``Server-Timing: traceparent;desc="00-…", trace;desc="00-…"`` (the ``traceparent`` metric is
  the form browser agents read from the Resource Timing API; ``trace`` the same value by its
  short name) and ``traceresponse: 00-…`` (W3C Trace Context Level 3 draft; OpenTelemetry's
  experimental response propagator), both exposed to scripts with
  ``Access-Control-Expose-Headers``;
* a trust policy for public edges: ``trust="honour"`` continues the caller's trace, ``"link"``
  starts a new trace whose server span links to the caller's, ``"ignore"`` starts clean. Under
  "link" and "ignore" the caller's traceparent, tracestate and baggage are removed before the
  instrumentation (and the application) see them: nothing from an untrusted caller flows on.

The contrib packages are imported only when instrument() is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from opentelemetry import trace

from threadline import semconv
from threadline.seam import carrier_keys

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from opentelemetry.propagators.textmap import Getter

log = logging.getLogger("threadline")

Trust = Literal["honour", "link", "ignore"]
TRUSTS = ("honour", "link", "ignore")

SERVER_TIMING = "Server-Timing"
TRACERESPONSE = "traceresponse"
SERVER_TIMING_METRICS = ("traceparent", "trace")  # what parse_server_timing reads, in order
REMOTE_KEY = semconv.REMOTE_CONTEXT  # where an untrusted caller's context waits in scope/environ
LINK_ATTRIBUTES = {semconv.TRUST: "link"}

# library -> (contrib module, instrumentor class)
CLIENTS = {
    "httpx": ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    "requests": ("opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
    "aiohttp": ("opentelemetry.instrumentation.aiohttp_client", "AioHttpClientInstrumentor"),
}
# Order matters: FastAPI subclasses Starlette, so it is instrumented (and imported) first; the
# Starlette patch then cannot leak into FastAPI's base class and double the middleware.
FRAMEWORKS = {
    "fastapi": ("opentelemetry.instrumentation.fastapi", "FastAPIInstrumentor"),
    "starlette": ("opentelemetry.instrumentation.starlette", "StarletteInstrumentor"),
    "flask": ("opentelemetry.instrumentation.flask", "FlaskInstrumentor"),
    "django": ("opentelemetry.instrumentation.django", "DjangoInstrumentor"),
}

_missing_reported: set[str] = set()


# -- Server-Timing -----------------------------------------------------------------------------


def traceresponse_value(span_context: trace.SpanContext) -> str:
    """The ``traceresponse`` header value that names ``span_context`` (version 00)."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def server_timing_value(span_context: trace.SpanContext) -> str:
    """The ``Server-Timing`` header value that names ``span_context``, once per metric name."""
    value = traceresponse_value(span_context)
    return ", ".join(f'{metric};desc="{value}"' for metric in SERVER_TIMING_METRICS)


_HEADERS = ("http.response.start", "websocket.accept")  # ASGI messages that carry headers
_EXPOSED = f"{SERVER_TIMING}, {TRACERESPONSE}"


def _server_timing_propagator():
    from opentelemetry.instrumentation.propagators import ResponsePropagator, default_setter

    class ServerTimingPropagator(ResponsePropagator):
        """Tells the caller which trace (and server span) answered it."""

        def inject(self, carrier, context=None, setter=default_setter) -> None:
            # ASGI asks for every message it sends; only the response start has headers.
            if isinstance(carrier, dict) and carrier.get("type", _HEADERS) not in _HEADERS:
                return
            sc = trace.get_current_span(context).get_span_context()
            if not sc.is_valid:
                return
            setter.set(carrier, SERVER_TIMING, server_timing_value(sc))
            setter.set(carrier, TRACERESPONSE, traceresponse_value(sc))
            setter.set(carrier, "Access-Control-Expose-Headers", _EXPOSED)

    return ServerTimingPropagator()


def parse_server_timing(header: str | None) -> str | None:
    """The traceparent in a Server-Timing header value, or None: the ``desc`` of its first
    ``traceparent`` or ``trace`` metric (names compared case-insensitively)."""
    for metric in (header or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name.strip().lower() not in SERVER_TIMING_METRICS:
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "desc":
                return value.strip().strip('"') or None
    return None


# -- trust at the edge -------------------------------------------------------------------------


def _remote_context(carried: dict[str, list[str]]) -> trace.SpanContext:
    from threadline.seam import w3c

    # A Getter by duck type (the propagator calls get and keys), its module not imported for it
    getter = cast("Getter[dict[str, list[str]]]", _ListGetter())
    ctx = w3c.TraceContextPropagator().extract(carried, getter=getter)
    return trace.get_current_span(ctx).get_span_context()


class _ListGetter:
    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


class AsgiEdge:
    """Outermost ASGI layer of an untrusted edge: takes the caller's trace headers away from the
    instrumentation and the app, keeping the caller's span context (for "link") in the scope.
    ``app`` is the ASGI application it wraps, ``trust`` "link" or "ignore"."""

    def __init__(self, app: Any, trust: Trust) -> None:
        self.app = app
        self.trust = trust

    async def __call__(self, scope: Mapping[str, Any], receive, send):
        if scope.get("type") in ("http", "websocket"):
            kept, carried = [], {}
            keys = carrier_keys()  # W3C, and whatever OTEL_PROPAGATORS reads
            for key, value in scope.get("headers") or ():
                name = key.decode("latin-1").lower()
                if name in keys:
                    carried.setdefault(name, []).append(value.decode("latin-1"))
                else:
                    kept.append((key, value))
            if carried:
                scope = dict(scope, headers=kept)
                if self.trust == "link":
                    scope[REMOTE_KEY] = _remote_context(carried)
        return await self.app(scope, receive, send)


class WsgiEdge:
    """The WSGI counterpart of AsgiEdge: ``app`` is the WSGI application it wraps, ``trust``
    "link" or "ignore" (for "link" the caller's span context waits in the environ)."""

    def __init__(self, app: Any, trust: Trust) -> None:
        self.app = app
        self.trust = trust

    def __call__(self, environ, start_response):
        names = {f"HTTP_{k.upper().replace('-', '_')}": k for k in carrier_keys()}
        carried = {name: [environ[key]] for key, name in names.items() if key in environ}
        if carried:
            environ = {k: v for k, v in environ.items() if k not in names}
            if self.trust == "link":
                environ[REMOTE_KEY] = _remote_context(carried)
        return self.app(environ, start_response)


def _request_hook(user_hook: Callable | None) -> Callable:
    """The server request hook: links an untrusted caller's span, then runs the user's hook."""

    def hook(span: trace.Span, scope_or_environ: Any, *rest: Any) -> None:
        remote = scope_or_environ.get(REMOTE_KEY) if hasattr(scope_or_environ, "get") else None
        if remote is not None and remote.is_valid and span.is_recording():
            span.add_link(remote, LINK_ATTRIBUTES)
        if user_hook is not None:
            user_hook(span, scope_or_environ, *rest)

    return hook


# -- wiring ------------------------------------------------------------------------------------


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _contrib(library: str, table: dict[str, tuple[str, str]], extra: str = "http", **init: Any):
    """The contrib instrumentor for an installed library, or None (told once) when missing.
    ``library`` may name a part of a package (``grpc.aio``): the package is what must be
    installed. ``init`` goes to the instrumentor's constructor."""
    module, cls = table[library]
    if not _installed(library.partition(".")[0]):
        return None
    if not _installed(module):
        if library not in _missing_reported:
            _missing_reported.add(library)
            log.info(
                "threadline: %s is installed but %s is not; pip install 'threadline[%s]'",
                library,
                module.replace(".", "-").replace("_", "-"),
                extra,
            )
        return None
    return getattr(importlib.import_module(module), cls)(**init)


def _django_ready() -> bool:
    """Django's settings are there to read. The contrib instrumentation adds its middleware to
    them, and configures empty ones when there are none: a program that configures its own
    later would then fail, so Django waits until it has them."""
    from django.conf import settings

    if os.environ.get("DJANGO_SETTINGS_MODULE") or settings.configured:
        return True
    log.info(
        "threadline: Django is installed but its settings are not configured; call "
        "tl.instrument() after setting DJANGO_SETTINGS_MODULE (or settings.configure()) to "
        "trace Django requests"
    )
    return False


def _turn_on(inst: Any, **kwargs: Any) -> None:
    if inst is not None and not inst.is_instrumented_by_opentelemetry:
        inst.instrument(**kwargs)
        if inst.is_instrumented_by_opentelemetry:  # False when its library's version is refused
            _ours.append(inst)


def _clients_setup() -> None:
    """The HTTP clients, the gRPC channels and the database drivers."""
    from threadline.integrations import databases, grpc

    for library in CLIENTS:
        _turn_on(_contrib(library, CLIENTS))
    for library in grpc.CLIENTS:
        _turn_on(_contrib(library, grpc.CLIENTS, "grpc", filter_=grpc.not_otlp()))
    wanted = [
        (lib, databases.instrumentor(lib, _contrib(lib, databases.DATABASES, "databases")))
        for lib in databases.DATABASES
    ]
    if any(inst is not None for _, inst in wanted):
        undo = databases.opt_in()
        if undo is not None:
            _ours.append(undo)  # undone after the instrumentations it served
    for library, inst in wanted:
        _turn_on(inst, **databases.instrument_kwargs(library))


def _servers_setup() -> None:
    """The frameworks (applications created from now on) and the gRPC servers."""
    from threadline.integrations import grpc

    for library in FRAMEWORKS:
        if library == "django" and (not _installed("django") or not _django_ready()):
            continue
        _turn_on(_contrib(library, FRAMEWORKS))
    for library in grpc.SERVERS:
        _turn_on(_contrib(library, grpc.SERVERS, "grpc", filter_=grpc.not_otlp()))


def _global_setup(server_timing: bool, clients: bool) -> None:
    from opentelemetry.instrumentation import propagators as response

    from threadline.seam import w3c

    w3c.install()
    if server_timing and response.get_global_response_propagator() is None:
        _ours.append(_server_timing_propagator())
        response.set_global_response_propagator(_ours[-1])
    if clients:
        _clients_setup()


_ours: list[Any] = []  # what instrument() turned on, for uninstrument(): instrumentors, propagator


def _is_asgi(app: Any) -> bool:
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    return inspect.iscoroutinefunction(call)


def _wrap_stack(app: Any, trust: Trust) -> None:
    """Put the trust edge outside everything a Starlette/FastAPI app builds, the instrumentation
    middleware included."""
    build = app.build_middleware_stack

    def build_middleware_stack():
        return AsgiEdge(build(), trust)

    app.build_middleware_stack = build_middleware_stack
    app.middleware_stack = None  # rebuilt on the next request


def _contrib_teardown(app: Any) -> Any:
    for fn in app.teardown_request_funcs.get(None, ()):
        if fn.__module__ == "opentelemetry.instrumentation.flask":
            return fn
    raise RuntimeError("cannot find the Flask instrumentation's teardown function to replace")


def _reinstrument(instrumentor: Any, app: Any, **kwargs: Any) -> None:
    """instrumentor.instrument_app(app, **kwargs), for an app that may be instrumented already:
    one created after a global tl.instrument() is, and instrument_app would then do nothing,
    dropping the request hook (the trust link, the user's hook). Such an app is uninstrumented
    first."""
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        if hasattr(app, "teardown_request_funcs") and not hasattr(app, "_teardown_request"):
            # Flask: an app instrumented when it was created keeps no handle on the teardown
            # function uninstrument_app removes.
            app._teardown_request = _contrib_teardown(app)  # noqa: SLF001 - contrib's own name
        instrumentor.uninstrument_app(app)
        if hasattr(app, "middleware_stack"):
            app.middleware_stack = None  # Starlette: built again on the next request
    instrumentor.instrument_app(app, **kwargs)


def _instrument_app(app: Any, trust: Trust, asgi_spans: bool, request_hook: Callable | None):
    hook = _request_hook(request_hook)
    exclude: list[Literal["receive", "send"]] | None = None if asgi_spans else ["receive", "send"]
    mro = {f"{c.__module__}.{c.__qualname__}" for c in type(app).__mro__}
    if "fastapi.applications.FastAPI" in mro:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        _reinstrument(FastAPIInstrumentor, app, server_request_hook=hook, exclude_spans=exclude)
        if trust != "honour":
            _wrap_stack(app, trust)
        return app
    if "starlette.applications.Starlette" in mro:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        _reinstrument(StarletteInstrumentor, app, server_request_hook=hook)
        for middleware in app.user_middleware:  # instrument_app has no exclude_spans argument
            if middleware.cls is OpenTelemetryMiddleware:
                middleware.kwargs["exclude_spans"] = exclude
        if trust != "honour":
            _wrap_stack(app, trust)
        return app
    if "flask.app.Flask" in mro:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        _reinstrument(FlaskInstrumentor, app, request_hook=hook)
        if trust != "honour":
            app.wsgi_app = WsgiEdge(app.wsgi_app, trust)
        return app
    if not callable(app):
        raise TypeError(f"instrument() takes an ASGI or WSGI application, not {type(app).__name__}")
    if _is_asgi(app):
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        wrapped = OpenTelemetryMiddleware(app, server_request_hook=hook, exclude_spans=exclude)
        return AsgiEdge(wrapped, trust) if trust != "honour" else wrapped
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiMiddleware

    # callable and not ASGI: a WSGI application
    wsgi_app = cast("WSGIApplication", app)
    wrapped = WsgiMiddleware(wsgi_app, request_hook=hook, response_hook=_wsgi_server_timing)
    return WsgiEdge(wrapped, trust) if trust != "honour" else wrapped


def _wsgi_server_timing(span: trace.Span, environ: Any, status: str, headers: list) -> None:
    # The plain WSGI middleware (unlike the Flask one) does not run the response propagator.
    from opentelemetry.instrumentation.propagators import get_global_response_propagator

    propagator = get_global_response_propagator()
    if propagator is not None:
        propagator.inject(headers, context=trace.set_span_in_context(span), setter=_ListSetter())


class _ListSetter:
    def set(self, carrier: list, key: str, value: str) -> None:
        carrier.append((key, value))


def instrument(
    app: Any = None,
    *,
    trust: Trust = "honour",
    clients: bool = True,
    servers: bool = True,
    server_timing: bool = True,
    asgi_spans: bool = False,
    request_hook: Callable | None = None,
) -> Any:
    """Trace HTTP, gRPC and database calls with the OpenTelemetry contrib instrumentations.

    With no app: every installed client (httpx, requests, aiohttp; gRPC channels, sync and aio;
    the database drivers of ``integrations.databases``) and, unless servers=False, every
    installed framework (FastAPI, Starlette, Flask, Django: applications created from now on;
    gRPC servers, sync and aio) is instrumented. Django needs its settings by then
    (``DJANGO_SETTINGS_MODULE``), and is left alone, with a log line saying so, until it has
    them.
    With an app (Starlette, FastAPI, Flask, or any ASGI/WSGI callable): that app is instrumented,
    with the given trust policy for its callers' trace context, and clients as above. Returns the
    app to serve: the same object for framework apps, a wrapping middleware for bare callables.

    Args:
        app: the application to instrument, or None for every installed framework and client.
        trust: "honour" (continue the caller's trace), "link" (new trace, linked to the
            caller's), "ignore" (new trace). Only "honour" with no app.
        clients: instrument the installed HTTP clients, gRPC channels and database drivers too.
        servers: with no app, instrument the installed frameworks and gRPC servers (False:
            clients only).
        server_timing: answer every request with its trace (``Server-Timing`` and
            ``traceresponse`` headers, as the module docstring says), unless the program set
            a response propagator of its own.
        asgi_spans: keep the ASGI instrumentation's per-message send/receive spans (apps
            instrumented with no app given keep the contrib's defaults).
        request_hook: request_hook(span, scope_or_environ) runs for every server span.

    An app the contrib instrumentation has instrumented already (one created after a global
    ``tl.instrument()``, or instrumented with the contrib directly) is instrumented again, with
    these arguments. Instrumenting an app a second time with the same arguments returns what the
    first call returned; with other ones raises ValueError. Idempotent per library.
    A Celery app goes to threadline.integrations.celery.instrument(app); trust "honour", "link",
    "ignore" there are the relations "child", "link", "none".
    """
    if trust not in TRUSTS:
        raise ValueError(f"trust must be one of {TRUSTS}, not {trust!r}")
    if "celery.app.base.Celery" in {f"{c.__module__}.{c.__qualname__}" for c in type(app).__mro__}:
        from threadline.integrations import celery  # a Celery app: its own integration

        relation = {"honour": "child", "link": "link", "ignore": "none"}[trust]
        return celery.instrument(app, relation=relation)
    _global_setup(server_timing, clients)
    if app is None:
        if trust != "honour":
            raise ValueError(
                f"trust={trust!r} applies to one edge: pass the application that faces the "
                "untrusted callers, e.g. tl.instrument(app, trust='link')"
            )
        if servers:
            _servers_setup()
        return None
    wanted = {"trust": trust, "request_hook": request_hook, "asgi_spans": asgi_spans}
    done = getattr(app, "_threadline_instrumented", None)
    if done is not None:
        out, had = done
        changed = [f"{k}={wanted[k]!r} (was {had[k]!r})" for k in wanted if wanted[k] != had[k]]
        if changed:
            raise ValueError(
                f"instrument(): this application is instrumented already; {', '.join(changed)} "
                "would change how. Instrument an application once, with the arguments it needs."
            )
        return out
    out = _instrument_app(app, trust, asgi_spans, request_hook)
    try:
        app._threadline_instrumented = (out, wanted)  # noqa: SLF001 - our mark on the app
    except (AttributeError, TypeError):  # a slotted object: instrumenting it again would nest
        pass
    return out


def uninstrument() -> None:
    """Undo what instrument() with no app turned on: the client, framework, gRPC and database
    instrumentations it started, the database conventions' opt-in it set (not ones the program started itself) and the Server-Timing response propagator.
    Applications instrumented one by one keep their middleware: the contrib's
    ``uninstrument_app(app)`` removes it. Idempotent."""
    from opentelemetry.instrumentation import propagators as response

    while _ours:
        item = _ours.pop()
        if hasattr(item, "uninstrument"):
            if item.is_instrumented_by_opentelemetry:
                item.uninstrument()
        elif response.get_global_response_propagator() is item:
            response.set_global_response_propagator(None)  # type: ignore[arg-type]
