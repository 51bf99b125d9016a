"""HTTP: threadline's W3C propagators against the stock OpenTelemetry ones (extract and inject
of traceparent + tracestate + baggage), and what a traced Starlette request costs against
the same app untraced and against the contrib middleware set up by hand with the stock
propagators (the ASGI app called directly, no sockets, spans recorded and dropped).
CPU time, best of interleaved rounds (the box is shared)."""

from __future__ import annotations

import asyncio
import time

from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import threadline as tl
from threadline.integrations import w3c

N_PROP = 20_000
N_REQ = 2_000
ROUNDS = 5
CARRIER = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    "baggage": "user=ada,tenant=acme,region=eu-west-1",
}


def per_call(fn, n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - start) / n * 1e6


def app(how: str):
    async def hello(request):
        return PlainTextResponse("ok")

    a = Starlette(routes=[Route("/hello", hello)])
    if how == "threadline":
        return tl.instrument(a, clients=False)
    if how == "contrib":  # the same contrib middleware, set up by hand, stock propagators
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.instrumentation.starlette import _get_default_span_details

        a.add_middleware(
            OpenTelemetryMiddleware,
            default_span_details=_get_default_span_details,
            exclude_spans=["receive", "send"],
        )
    return a


def requests(asgi, n: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in CARRIER.items()]
        + [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    async def loop() -> float:
        start = time.thread_time()
        for _ in range(n):
            await asgi(dict(scope), receive, send)
        return (time.thread_time() - start) / n * 1e6

    return asyncio.run(loop())


def run() -> list[dict]:
    tl.configure("bench", exporter="none", boundaries=False)
    stock = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    ours = w3c.propagator()
    ctx = stock.extract(CARRIER)
    ctx = baggage.set_baggage("user", "ada", ctx)
    span_ctx = trace.set_span_in_context(trace.get_current_span(ctx), ctx)
    cases = {
        "extract stock": lambda: stock.extract(CARRIER),
        "extract threadline": lambda: ours.extract(CARRIER),
        "inject stock": lambda: stock.inject({}, span_ctx),
        "inject threadline": lambda: ours.inject({}, span_ctx),
    }
    best = dict.fromkeys(cases, float("inf"))
    from opentelemetry import propagate
    from opentelemetry.instrumentation import propagators as response

    apps = {name: app(name) for name in ("untraced", "contrib", "threadline")}
    ours_global, server_timing = (
        propagate.get_global_textmap(),
        response.get_global_response_propagator(),
    )
    # what each variant runs with: (global propagator, response propagator)
    globals_for = {
        "untraced": (stock, None),
        "contrib": (stock, None),
        "threadline": (ours_global, server_timing),
    }
    req_best = dict.fromkeys(apps, float("inf"))
    token = context.attach(context.Context())
    try:
        for _ in range(ROUNDS):
            for name, fn in cases.items():
                best[name] = min(best[name], per_call(fn, N_PROP))
            for name, a in apps.items():
                propagate.set_global_textmap(globals_for[name][0])
                response.set_global_response_propagator(globals_for[name][1])
                req_best[name] = min(req_best[name], requests(a, N_REQ))
    finally:
        context.detach(token)
    return [
        {
            "name": "W3C extract (traceparent, tracestate, baggage)",
            "value": best["extract threadline"],
            "unit": "us/op",
            "baseline": best["extract stock"],
            "ratio_to": "stock OTel propagators",
        },
        {
            "name": "W3C inject",
            "value": best["inject threadline"],
            "unit": "us/op",
            "baseline": best["inject stock"],
            "ratio_to": "stock OTel propagators",
        },
        {
            "name": "Starlette request, contrib ASGI middleware alone",
            "value": req_best["contrib"],
            "unit": "us/request",
            "baseline": req_best["untraced"],
            "ratio_to": "untraced app",
        },
        {
            "name": "Starlette request, tl.instrument(app)",
            "value": req_best["threadline"],
            "unit": "us/request",
            "baseline": req_best["contrib"],
            "ratio_to": "contrib alone",
            "note": "W3C propagators, Server-Timing and traceresponse, request hook",
        },
    ]
