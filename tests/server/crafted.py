"""Crafted traces with known shapes, and how to load them, shared by the analysis API and UI
tests, the screenshots and the UI benchmark. Times are relative to `base_ns`; every trace is
deterministic for a given seed."""

from __future__ import annotations

import json
import random
import urllib.request

from threadline.semconv import PENDING
from threadline.server.model import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    STATUS_ERROR,
    Event,
    Link,
    Span,
)
from threadline.server.otlp.json_format import encode_json

MS = 1_000_000
XSS = '<img src=x onerror="window.__xss=1">'
XSS_URL = "javascript:window.__xss=1"

CHECKOUT = "c0ffee00000000000000000000000001"
BROKEN = "c0ffee00000000000000000000000002"
CRASHED = "c0ffee00000000000000000000000003"
MAILER = "c0ffee00000000000000000000000004"
EVIL = "c0ffee00000000000000000000000005"
SKEWED = "c0ffee00000000000000000000000006"
USERS = "c0ffee00000000000000000000000007"


def _res(service: str, pid: int, host: str = "app-1") -> dict:
    return {
        "service.name": service,
        "process.pid": pid,
        "host.name": host,
        "telemetry.sdk.language": "python",
    }


def span(trace, sid, parent, name, service, kind, start, end, base_ns, *, pid=100, **kw) -> Span:
    return Span(
        trace_id=trace,
        span_id=sid,
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_ns=base_ns + int(start * MS),
        end_ns=base_ns + int(end * MS),
        service=service,
        resource=kw.pop("resource", None) or _res(service, pid),
        scope_name="threadline",
        **kw,
    )


# fmt: off
def checkout(base_ns: int) -> list[Span]:
    """web -> payments (error) -> db; web publishes to the mailer queue; XSS-laden attributes."""
    t = CHECKOUT
    return [
        span(t, "a000000000000001", "", "GET /checkout", "web", KIND_SERVER, 0, 120, base_ns, attributes={"http.method": "GET", "http.route": "/checkout", "user.note": XSS, "http.url": XSS_URL}),
        span(t, "a000000000000002", "a000000000000001", "load cart", "web", KIND_INTERNAL, 2, 20, base_ns),
        span(t, "a000000000000003", "a000000000000001", "POST /charge", "web", KIND_CLIENT, 22, 90, base_ns, status_code=STATUS_ERROR, status_message="502 from payments"),
        span(t, "b000000000000001", "a000000000000003", "charge card", "payments", KIND_SERVER, 25, 88, base_ns, pid=200, status_code=STATUS_ERROR, status_message="card declined", attributes={"rpc.system": "grpc", "rpc.method": "Charge", "payment.amount": 42.5, "payment.currency": "EUR"}, events=[Event(base_ns + 80 * MS, "exception", {"exception.type": "CardDeclined", "exception.message": XSS})]),
        span(t, "b000000000000002", "b000000000000001", "SELECT account", "payments", KIND_CLIENT, 30, 60, base_ns, pid=200, attributes={"db.system": "postgresql", "db.statement": "SELECT * FROM account WHERE id = $1"}),
        span(t, "a000000000000004", "a000000000000001", "orders publish", "web", KIND_PRODUCER, 95, 97, base_ns, attributes={"messaging.system": "rabbitmq", "messaging.destination.name": "orders"}),
        span(t, "a000000000000005", "a000000000000001", "render", "web", KIND_INTERNAL, 98, 118, base_ns, links=[Link(t, "a000000000000002", attributes={"reason": "uses the cart"})]),
    ]


def mailer(base_ns: int) -> list[Span]:
    """A consumer in its own trace, linked to the checkout's producer span."""
    t = MAILER
    return [
        span(t, "d000000000000001", "", "orders process", "mailer", KIND_CONSUMER, 130, 170, base_ns, pid=400, links=[Link(CHECKOUT, "a000000000000004", attributes={"messaging.message.id": "m-1"})]),
        span(t, "d000000000000002", "d000000000000001", "send email", "mailer", KIND_CLIENT, 135, 165, base_ns, pid=400, attributes={"peer.service": "smtp"}),
    ]


def broken(base_ns: int) -> list[Span]:
    """The payments server span never arrived: its child is an orphan under a placeholder."""
    t = BROKEN
    b = base_ns + 1000 * MS
    return [
        span(t, "e000000000000001", "", "GET /refund", "web", KIND_SERVER, 0, 80, b),
        span(t, "e000000000000002", "e000000000000001", "POST /refund", "web", KIND_CLIENT, 5, 70, b),
        span(t, "f000000000000002", "f000000000000001", "UPDATE ledger", "payments", KIND_CLIENT, 20, 50, b, pid=200),
    ]


def crashed(base_ns: int) -> list[Span]:
    """A pool worker was SIGKILLed mid-task: its span is pending, the parent saw it die."""
    t = CRASHED
    b = base_ns + 2000 * MS
    died = Event(b + 40 * MS, "threadline.worker.died", {"process.pid": 301, "process.signal": 9})
    return [
        span(t, "9000000000000001", "", "nightly report", "jobs", KIND_INTERNAL, 0, 60, b, pid=300, events=[died]),
        span(t, "9000000000000002", "9000000000000001", "crunch part 1", "jobs", KIND_INTERNAL, 2, 30, b, pid=302),
        span(t, "9000000000000003", "9000000000000001", "crunch part 2", "jobs", KIND_INTERNAL, 3, 3, b, pid=301, attributes={PENDING: True}),
    ]


def evil(base_ns: int) -> list[Span]:
    """Markup and script URLs in every place a value from spans is shown."""
    t = EVIL
    b = base_ns + 3000 * MS
    res = {"service.name": XSS, "evil.url": XSS_URL}
    return [
        span(t, "5000000000000001", "", XSS, XSS, KIND_SERVER, 0, 10, b, resource=res, status_code=STATUS_ERROR, status_message=XSS, attributes={XSS: XSS, "url": XSS_URL}, events=[Event(b + MS, XSS, {"x": XSS})]),
        span(t, "5000000000000002", "5000000000000001", "<script>window.__xss=1</script>", "web", KIND_CLIENT, 1, 9, b, attributes={"http.url": XSS_URL}),
    ]


def skewed(base_ns: int) -> list[Span]:
    """The payments host's clock runs 40 ms behind: its server span starts before the call."""
    t = SKEWED
    b = base_ns + 4000 * MS
    web, pay = _res("web", 100, "web-1"), _res("payments", 200, "pay-7")
    return [
        span(t, "7000000000000001", "", "GET /order", "web", KIND_SERVER, 0, 100, b, resource=web),
        span(t, "7000000000000002", "7000000000000001", "GET /balance", "web", KIND_CLIENT, 10, 60, b, resource=web),
        span(t, "7100000000000001", "7000000000000002", "balance", "payments", KIND_SERVER, -25, 5, b, resource=pay, events=[Event(b - 24 * MS, "query sent")]),
        span(t, "7100000000000002", "7100000000000001", "SELECT balance", "payments", KIND_CLIENT, -20, 0, b, resource=pay),
    ]


def users(base_ns: int, trace: str = USERS) -> list[Span]:
    """The users service reads its own database twice (one query fails) and calls an external
    API that nothing traces: nodes users_db (postgresql) and geo.example.net:443 in the map."""
    t = trace
    b = base_ns + 5000 * MS
    db = {"db.system.name": "postgresql", "db.namespace": "users_db", "server.address": "127.0.0.1", "server.port": 5432, "db.operation.name": "SELECT"}
    geo = {"http.request.method": "GET", "server.address": "geo.example.net", "server.port": 443}
    return [
        span(t, "6000000000000001", "", "GET /users/{id}", "users", KIND_SERVER, 0, 50, b, pid=500),
        span(t, "6000000000000002", "6000000000000001", "SELECT users", "users", KIND_CLIENT, 2, 10, b, pid=500, attributes=db),
        span(t, "6000000000000003", "6000000000000001", "SELECT addresses", "users", KIND_CLIENT, 11, 20, b, pid=500, attributes=db, status_code=STATUS_ERROR, status_message="relation does not exist"),
        span(t, "6000000000000004", "6000000000000001", "GET", "users", KIND_CLIENT, 21, 45, b, pid=500, attributes=geo),
    ]


def big(base_ns: int, n: int = 50_000, seed: int = 7, trace_id: str = "b16b16b16b16b16b16b16b16b16b16b1") -> list[Span]:
    """A wide and deep trace of n spans over four services."""
    rng = random.Random(seed)
    services = ["gateway", "orders", "inventory", "pricing"]
    spans = [span(trace_id, f"{1:016x}", "", "batch import", "gateway", KIND_SERVER, 0, 60_000, base_ns)]
    bounds = [(0.0, 60_000.0)]
    for i in range(2, n + 1):
        p = rng.randrange(max(0, len(spans) - 200), len(spans))  # recent parents: deep and wide
        lo, hi = bounds[p]
        start = lo + rng.random() * (hi - lo) * 0.5
        end = start + rng.random() * (hi - start)
        status = STATUS_ERROR if rng.random() < 0.01 else 0
        spans.append(span(trace_id, f"{i:016x}", spans[p].span_id, f"step {i}", rng.choice(services), KIND_INTERNAL, start, end, base_ns, status_code=status, attributes={"item": i}))
        bounds.append((start, end))
    return spans
# fmt: on


def showcase(base_ns: int) -> list[Span]:
    return checkout(base_ns) + mailer(base_ns) + broken(base_ns) + crashed(base_ns) + evil(base_ns)


def load(otlp_http: str, spans: list[Span], batch: int = 2000) -> None:
    """POST spans to a running server's OTLP/HTTP receiver as OTLP/JSON, as an exporter would;
    the receiver answers only once they are stored."""
    for i in range(0, len(spans), batch):
        body = json.dumps(encode_json(spans[i : i + batch])).encode()
        req = urllib.request.Request(
            f"{otlp_http}/v1/traces", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()


def history(base_ns: int, n: int = 60, every_s: float = 50, seed: int = 3) -> list[Span]:
    """n earlier traces shaped like the showcase, with varied timings and an occasional break or
    crash, ending at base_ns: volume for the search scatter, service map and completeness."""
    rng = random.Random(seed)
    out: list[Span] = []
    for k in range(n):
        b = base_ns - int((k + 1) * every_s * 10**9)
        shapes = [checkout(b), mailer(b)] if k % 2 else [checkout(b)]
        if k % 7 == 3:
            shapes.append(broken(b))
        if k % 11 == 5:
            shapes.append(crashed(b))
        stretch = rng.uniform(0.4, 3.0)
        failed = rng.random() < 0.3
        for spans in shapes:
            for s in spans:
                s.trace_id = f"{s.trace_id[:18]}{k + 16:012x}{s.trace_id[-2:]}"
                if not failed and s.trace_id.endswith("01"):
                    s.status_code, s.status_message, s.events = 0, "", []
                s.start_ns = b + int((s.start_ns - b) * stretch)
                s.end_ns = b + int((s.end_ns - b) * stretch)
                for e in s.events:
                    e.time_ns = b + int((e.time_ns - b) * stretch)
                for lk in s.links:
                    lk.trace_id = f"{lk.trace_id[:18]}{k + 16:012x}{lk.trace_id[-2:]}"
            out.extend(spans)
    return out
