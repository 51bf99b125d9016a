"""One realistic data set (benchmarks/serve_data.py) sent to a DuckDB server and a chdb server:
every API answer is the same. Its values (strings, ints, finite doubles) are ones the string
layout gives back exactly, so any difference is an engine's fault."""

import sys
import time
from pathlib import Path

import httpx
import pytest

from threadline import server
from threadline.server.model import Event, Link, Span

pytest.importorskip("chdb")
sys.path.insert(0, str(Path(__file__).parents[3] / "benchmarks"))

from serve_data import make_request

NOW = time.time_ns()
START = NOW - 20 * 60 * 10**9
END_MS = NOW // 1_000_000 + 1


def _answers(srv) -> dict[str, object]:
    """Every read route, over the stored data."""
    out: dict[str, object] = {}
    with httpx.Client(base_url=srv.urls.api, timeout=60) as api:

        def get(path: str, **params) -> object:
            r = api.get(path, params=params)
            key = path + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
            body = r.json()
            out[key] = (r.status_code, body)
            return body

        get("/api/services")
        get("/api/operations")
        get("/api/operations", service="payments", spanKind="client")
        get("/api/services/web/operations")
        get("/api/v3/services")
        get("/api/v3/operations", service="checkout")
        found = get("/api/traces", service="payments", limit=20, lookback="1h")
        get("/api/traces", service="web", tags='{"http.status_code":"500"}', limit=15)
        get("/api/traces", service="web", minDuration="150ms", limit=10)
        get("/api/traces", service="auth", operation="GET /login", limit=10)
        get("/api/dependencies", endTs=END_MS, lookback=3_600_000)
        ids = [t["traceID"] for t in found["data"]]  # type: ignore[index]
        assert len(ids) == 20
        for t in ids[:8]:
            get(f"/api/traces/{t}")
            get(f"/api/v3/traces/{t}")
            get(f"/api/threadline/traces/{t}")
            get(f"/api/threadline/analysis/trace/{t}")
        for t in (P, C):
            get(f"/api/traces/{t}")
            get(f"/api/v3/traces/{t}")
            get(f"/api/threadline/traces/{t}")
            get(f"/api/threadline/analysis/waterfall/{t}")
        get("/api/traces", service="billing")
        get("/api/v3/traces", **{"query.service_name": "cart", "query.num_traces": 5})
        for flt in (
            "http.status_code>=500",
            "http.status_code=404 OR duration_bucket<0.01",
            "resource:host.name=auth-7f9c",
            "!user.id",
            "exception.type",
            'http.route="/product/{id}"',
        ):
            get("/api/threadline/search", filter=flt, limit=25)
        get("/api/threadline/search", service="email", minDuration="100ms")
        get("/api/threadline/analysis/summaries", id=ids[:10])
        window = {"start": START // 1_000 - 1, "end": NOW // 1_000 + 1}  # microseconds
        get("/api/threadline/analysis/dependencies", **window)
        get("/api/threadline/analysis/completeness", buckets=6, **window)
    return out


def _load(srv, body: bytes) -> None:
    r = httpx.post(
        srv.urls.otlp_http + "/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=60,
    )
    assert r.status_code == 200, r.text


P, C = "d1" * 16, "e2" * 16  # a producer's trace, its consumer's


def _threadline_spans() -> list[Span]:
    """What serve_data lacks: pending announcements (one completed later, one not), a consumer
    linking to its producer across traces, dropped counts, flags, trace state."""
    t = START + 5 * 10**9
    pending = {"threadline.pending": True}
    res = {"service.name": "orders", "host.name": "orders-1"}
    db = {"db.system.name": "postgresql", "db.namespace": "orders_db", "server.port": 5432}

    def span(trace, sid, parent, name, service, kind, start, end, **kw):
        r = {**res, "service.name": service}
        return Span(trace, sid, parent, name, kind, start, end, service, resource=r, **kw)

    return [
        span(P, "01" * 8, "", "POST /order", "orders", 2, t, t + 9_000_000, attributes={"n": 3}),
        span(P, "02" * 8, "01" * 8, "publish", "orders", 4, t + 10, t + 10, attributes=pending),
        span(P, "02" * 8, "01" * 8, "publish", "orders", 4, t + 10, t + 500_000, flags=1,
             trace_state="k=v", dropped_attributes_count=2, dropped_events_count=1,
             events=[Event(t + 20, "sent", {"bytes": 512}, 1)]),
        span(C, "03" * 8, "", "consume", "billing", 5, t + 10**6, t + 10**6, attributes=pending,
             links=[Link(P, "02" * 8, "", {"messaging.batch": True}, 0, 1)]),
        # calls no span answered: a database (announced, then completed) and an external API
        span(P, "04" * 8, "01" * 8, "SELECT", "orders", 3, t + 20, t + 20, attributes={**pending, **db}),
        span(P, "04" * 8, "01" * 8, "SELECT", "orders", 3, t + 20, t + 90, attributes=db, status_code=2),
        span(P, "05" * 8, "01" * 8, "GET", "orders", 3, t + 100, t + 200,
             attributes={"server.address": "rates.example.net", "server.port": 443}),
    ]  # fmt: skip


def test_duckdb_and_chdb_give_every_api_answer_alike(tmp_path):
    body = make_request(4_000, seed=3, start_ns=START).SerializeToString()
    answers = {}
    for name, db in (("duckdb", str(tmp_path / "d.duckdb")), ("chdb", f"chdb:{tmp_path / 'ch'}")):
        with server.start(db=db) as srv:
            _load(srv, body)
            srv.ingest.submit(_threadline_spans()).result(30)
            answers[name] = _answers(srv)
    duck, ch = answers["duckdb"], answers["chdb"]
    assert duck.keys() == ch.keys()
    differing = [k for k in duck if duck[k] != ch[k]]
    assert differing == [], differing[:3]
    assert len(duck) > 40
    window = {"start": START // 1_000 - 1, "end": NOW // 1_000 + 1}
    deps = duck[f"/api/dependencies?endTs={END_MS}&lookback=3600000"][1]["data"]  # type: ignore[index]
    assert {"parent": "orders", "child": "billing", "callCount": 1} in deps
    assert {"parent": "orders", "child": "orders_db", "callCount": 1} in deps
    assert {"parent": "orders", "child": "rates.example.net:443", "callCount": 1} in deps
    graph = duck[
        f"/api/threadline/analysis/dependencies?end={window['end']}&start={window['start']}"
    ]
    peers = [n for n in graph[1]["services"] if n["kind"] != "service"]  # type: ignore[index]
    assert peers == [
        {"service": "orders_db", "kind": "database", "spans": 0, "errors": 1,
         "system": "postgresql", "calls": 1},
        {"service": "rates.example.net:443", "kind": "external", "spans": 0, "errors": 0,
         "system": "", "calls": 1},
    ]  # fmt: skip
    [[pending]] = [t["spans"] for t in duck[f"/api/traces/{C}?"][1]["data"]]  # type: ignore[index]
    assert {"key": "threadline.incomplete", "type": "bool", "value": True} in pending["tags"]
