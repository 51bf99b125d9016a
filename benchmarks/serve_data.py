"""Realistic span data for the serve benchmarks: services calling each other in trees of 1-500
spans, with HTTP/DB/messaging attributes, as OTLP protobuf export batches."""

from __future__ import annotations

import random

SERVICES = [
    "web",
    "checkout",
    "payments",
    "inventory",
    "shipping",
    "email",
    "search",
    "auth",
    "cart",
    "recommend",
]
ROUTES = [
    "/",
    "/checkout",
    "/cart",
    "/api/items",
    "/api/orders",
    "/login",
    "/search",
    "/product/{id}",
]


def trace_sizes(rng: random.Random):
    """Mostly small traces, a long tail up to 500 spans."""
    while True:
        r = rng.random()
        yield (
            1
            if r < 0.1
            else rng.randint(2, 30)
            if r < 0.85
            else rng.randint(31, 150)
            if r < 0.98
            else rng.randint(151, 500)
        )


def make_request(n_spans: int, seed: int = 1, start_ns: int = 1_700_000_000_000_000_000):
    """An ExportTraceServiceRequest with about n_spans spans, grouped by service like an SDK."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    scopes = {}
    for svc in SERVICES:
        rs = req.resource_spans.add()
        for key, value in (
            ("service.name", svc),
            ("service.version", "1.4.2"),
            ("host.name", f"{svc}-7f9c"),
            ("telemetry.sdk.language", "python"),
        ):
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.asgi", "0.48b0"
        scopes[svc] = ss
    made = 0
    t = start_ns
    sizes = trace_sizes(rng)
    while made < n_spans:
        size = min(next(sizes), n_spans - made)
        trace_id = rng.randbytes(16)
        ids = [rng.randbytes(8) for _ in range(size)]
        t += rng.randint(1_000_000, 50_000_000)
        for i in range(size):
            svc = SERVICES[0] if i == 0 else rng.choice(SERVICES)
            s = scopes[svc].spans.add()
            s.trace_id, s.span_id = trace_id, ids[i]
            if i:
                s.parent_span_id = ids[rng.randrange(i)]
            s.kind = 2 if i == 0 else rng.choice((1, 2, 3, 3, 4, 5))
            route = rng.choice(ROUTES)
            s.name = (
                f"GET {route}"
                if s.kind in (2, 3)
                else rng.choice(["SELECT orders", "render", "publish orders", "process"])
            )
            s.start_time_unix_nano = t + i * 10_000
            s.end_time_unix_nano = s.start_time_unix_nano + rng.randint(10_000, 200_000_000)
            code = rng.choice((200, 200, 200, 200, 201, 404, 500))
            for key, value in (
                ("http.method", "GET"),
                ("http.route", route),
                ("http.status_code", code),
                ("net.peer.name", f"{svc}.internal"),
                ("user.id", f"u{rng.randint(1, 100_000)}"),
                ("duration_bucket", rng.random()),
            ):
                kv = s.attributes.add()
                kv.key = key
                if isinstance(value, str):
                    kv.value.string_value = value
                elif isinstance(value, int):
                    kv.value.int_value = value
                else:
                    kv.value.double_value = value
            if code >= 500:
                s.status.code, s.status.message = 2, "internal error"
                e = s.events.add()
                e.time_unix_nano, e.name = s.end_time_unix_nano, "exception"
                kv = e.attributes.add()
                kv.key, kv.value.string_value = "exception.type", "TimeoutError"
        made += size
    return req


def nested_value(depth: int):
    """An OTLP AnyValue `depth` levels deep (arrays in arrays around a string): the hostile-input
    tests and the fuzz campaign spoil exports with it."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    v = AnyValue(string_value="x")
    for _ in range(depth - 1):
        outer = AnyValue()
        outer.array_value.values.add().CopyFrom(v)
        v = outer
    return v


def deep_attribute(depth: int):
    """A function that spoils a protobuf Span with a "deep" attribute, nested_value(depth)."""

    def spoil(span) -> None:
        kv = span.attributes.add()
        kv.key = "deep"
        kv.value.CopyFrom(nested_value(depth))

    return spoil
