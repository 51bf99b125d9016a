"""Jaeger v1 and api_v3 shapes over a store with known spans (as Grafana / Jaeger UI read them)."""

import time

import httpx
import pytest

from threadline.server.model import Event, Link, Span
from threadline.server.otlp.json_format import decode_json

NOW = time.time_ns()
T1, T2, T3 = "a1" * 16, "b2" * 16, "c3" * 16


def span(trace_id, span_id, parent, name, service, kind, start_ms, dur_ms, **kw):
    start = NOW - 60_000_000_000 + start_ms * 1_000_000
    return Span(
        trace_id,
        span_id,
        parent,
        name,
        kind,
        start,
        start + dur_ms * 1_000_000,
        service,
        resource={"service.name": service, "host.name": f"{service}-1"},
        **kw,
    )


SPANS = [
    span(
        T1,
        "01" * 8,
        "",
        "GET /order",
        "web",
        2,
        0,
        100,
        attributes={"http.status_code": 200, "user": "ann"},
        events=[Event(NOW - 59_990_000_000, "retry", {"n": 1})],
    ),
    span(T1, "02" * 8, "01" * 8, "SELECT", "db", 3, 10, 20, attributes={"db.system": "postgresql"}),
    span(T1, "03" * 8, "01" * 8, "publish", "web", 4, 30, 1),
    span(
        T2,
        "04" * 8,
        "",
        "process",
        "worker",
        5,
        40,
        5,
        links=[Link(T1, "03" * 8, "", {"messaging.batch": True})],
        status_code=2,
        status_message="boom",
    ),
    span(T3, "05" * 8, "", "job", "worker", 1, 50, 2000, attributes={"threadline.pending": True}),
]


@pytest.fixture(scope="module")
def api(srv):
    srv.ingest.submit(SPANS).result(30)
    with httpx.Client(base_url=srv.urls.api, timeout=30) as c:
        yield c


def test_services_and_operations(api):
    assert api.get("/api/services").json() == {
        "data": ["db", "web", "worker"],
        "total": 3,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    assert api.get("/api/services/web/operations").json()["data"] == ["GET /order", "publish"]
    assert api.get("/api/operations", params={"service": "web", "spanKind": "producer"}).json()[
        "data"
    ] == [{"name": "publish", "spanKind": "producer"}]
    assert api.get("/api/operations", params={"spanKind": "nope"}).status_code == 400
    assert api.get("/api/v3/services").json() == {"services": ["db", "web", "worker"]}
    assert api.get("/api/v3/operations", params={"service": "db"}).json() == {
        "operations": [{"name": "SELECT", "spanKind": "client"}]
    }


def test_trace_search(api):
    def ids(**params):
        body = api.get("/api/traces", params=params).json()
        assert body["errors"] is None
        return [t["traceID"] for t in body["data"]]

    assert ids(service="web", lookback="1h") == [T1]
    assert ids(service="db", tags='{"db.system":"postgresql"}') == [T1]
    assert ids(service="web", tags='{"db.system":"postgresql"}') == []  # one span must match all
    assert ids(tag="http.status_code:200") == [T1]
    assert ids(tags='{"error":"true"}') == [T2]
    assert ids(service="worker", minDuration="1s") == [T3]
    assert ids(service="worker", maxDuration="10ms") == [T2]
    start_us = (NOW - 60_000_000_000) // 1000
    assert ids(start=start_us + 45_000, end=start_us + 60_000) == [T3]
    assert ids(traceID=[T2, "ff" * 16]) == [T2]
    bad = api.get("/api/traces", params={"minDuration": "soon"})
    assert bad.status_code == 400 and "invalid duration 'soon'" in bad.json()["errors"][0]["msg"]


def test_trace_by_id_shapes(api):
    assert api.get(f"/api/traces/{'9' * 32}").status_code == 404
    [trace] = api.get(f"/api/traces/{T2}").json()["data"]
    [s] = trace["spans"]
    assert s["references"] == [{"refType": "FOLLOWS_FROM", "traceID": T1, "spanID": "03" * 8}]
    assert {"key": "error", "type": "bool", "value": True} in s["tags"]
    assert {"key": "span.kind", "type": "string", "value": "consumer"} in s["tags"]
    assert trace["processes"][s["processID"]] == {
        "serviceName": "worker",
        "tags": [{"key": "host.name", "type": "string", "value": "worker-1"}],
    }
    [pending] = api.get(f"/api/traces/{T3}").json()["data"][0]["spans"]
    assert {"key": "threadline.incomplete", "type": "bool", "value": True} in pending["tags"]
    assert pending["warnings"] and pending["warnings"][0].startswith("incomplete")


def test_dependencies(api):
    end_ms = NOW // 1_000_000
    body = api.get("/api/dependencies", params={"endTs": end_ms, "lookback": 3_600_000}).json()
    assert body["data"] == [
        {"parent": "web", "child": "db", "callCount": 1},
        {"parent": "web", "child": "worker", "callCount": 1},
    ]
    assert (
        api.get("/api/dependencies", params={"endTs": end_ms - 3_600_000, "lookback": 1000}).json()[
            "data"
        ]
        == []
    )


def test_api_v3_is_lossless_otlp(api):
    body = api.get(f"/api/v3/traces/{T1.upper()}").json()
    spans = decode_json(body["result"]).spans
    assert sorted(s.span_id for s in spans) == ["01" * 8, "02" * 8, "03" * 8]
    root = next(s for s in spans if s.span_id == "01" * 8)
    assert root == SPANS[0]
    found = api.get(
        "/api/v3/traces",
        params={"query.service_name": "db", "query.attributes": '{"db.system":"postgresql"}'},
    ).json()
    assert {s.trace_id for s in decode_json(found["result"]).spans} == {T1}
    assert api.get("/api/v3/traces", params={"query.service_name": "nobody"}).status_code == 404
    assert (
        api.get("/api/v3/traces", params={"query.start_time_min": "yesterday"}).status_code == 400
    )
    assert api.get(f"/api/v3/traces/{'9' * 32}").json() == {
        "error": {"httpCode": 404, "message": f"trace not found: {'9' * 32}"}
    }


def test_own_search_and_trace(api):
    def search(*filters, **params):
        body = api.get("/api/threadline/search", params={"filter": list(filters), **params})
        assert body.status_code == 200, body.text
        return [t["trace_id"] for t in body.json()["traces"]]

    assert search("http.status_code>=200", "user=ann") == [T1]
    assert search("http.status_code<200 OR db.system=postgresql") == [T1]
    assert search("resource:host.name=worker-1") == [T3, T2]
    assert search("user!=ann") == []
    assert search("!threadline.pending", service="worker") == [T2]
    assert search(status="error") == [T2]
    assert search(kind="client") == [T1]
    [summary] = api.get("/api/threadline/search", params={"service": "db"}).json()["traces"]
    assert summary == {
        "trace_id": T1,
        "root_service": "web",
        "root_name": "GET /order",
        "start_ns": SPANS[0].start_ns,
        "duration_ns": 100_000_000,
        "span_count": 3,
        "services": ["db", "web"],
        "error_count": 0,
        "incomplete_count": 0,
    }
    bad = api.get("/api/threadline/search", params={"filter": "x>y"})
    assert bad.status_code == 400 and bad.json() == {"error": "x > needs a number, got 'y'"}
    body = api.get(f"/api/threadline/traces/{T1}").json()
    assert [s["name"] for s in body["spans"]] == ["GET /order", "SELECT", "publish"]
    assert body["spans"][0]["start_ns"] == str(SPANS[0].start_ns)
    malformed = api.get("/api/threadline/traces/zz")
    assert malformed.status_code == 400
    assert malformed.json() == {"error": "trace id must be up to 32 hex digits, got 'zz'"}
    assert api.get(f"/api/threadline/traces/{'ab' * 16}").status_code == 404


def test_live_feed_announces_new_traces(srv, api):
    with api.stream("GET", "/api/threadline/live") as resp:
        lines = resp.iter_lines()
        assert next(lines) == ": connected"
        srv.ingest.submit([span("d4" * 16, "06" * 8, "", "fresh", "live", 2, 70, 1)]).result(30)
        data = next(line for line in lines if line.startswith("data: "))
    assert '"trace_id": "' + "d4" * 16 + '"' in data and '"root_name": "fresh"' in data


@pytest.mark.parametrize("bad", ["zz", "a1" * 16 + "0", "a1 b2", "-1", "0x1f"])
def test_malformed_trace_id_is_400_as_in_jaeger(api, bad):
    message = f"trace id must be up to 32 hex digits, got {bad!r}"
    resp = api.get(f"/api/traces/{bad}")
    assert resp.status_code == 400
    assert resp.json() == {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 400, "msg": message}],
    }
    resp = api.get("/api/traces", params={"traceID": [T1, bad]})
    assert resp.status_code == 400 and resp.json()["errors"] == [{"code": 400, "msg": message}]
    resp = api.get(f"/api/v3/traces/{bad}")
    assert resp.status_code == 400
    assert resp.json() == {"error": {"httpCode": 400, "message": message}}


def test_short_trace_ids_are_zero_padded(api):
    tid = "00" * 8 + "e5" * 8
    assert api.get(f"/api/traces/{tid}").status_code == 404
    assert api.get(f"/api/traces/{tid.lstrip('0')}").json()["errors"][0]["msg"] == (
        f"trace not found: {tid}"
    )


def test_jaeger_dependencies_are_calls_and_messaging_not_plain_links():
    from threadline import server

    spans = [
        span(T1, "01" * 8, "", "GET /", "web", 2, 0, 10),
        span(T1, "02" * 8, "01" * 8, "publish", "web", 4, 1, 1),
        span(T1, "03" * 8, "02" * 8, "consume", "mail", 5, 2, 1),  # messaging, parent -> child
        span(T2, "04" * 8, "", "process", "mail", 5, 3, 1, links=[Link(T1, "02" * 8)]),
        span(T3, "05" * 8, "", "report", "batch", 1, 4, 1, links=[Link(T1, "01" * 8)]),
    ]
    with server.start() as s, httpx.Client(base_url=s.urls.api, timeout=30) as c:
        s.ingest.submit(spans).result(30)
        body = c.get("/api/dependencies", params={"endTs": NOW // 1_000_000}).json()
    assert body["data"] == [{"parent": "web", "child": "mail", "callCount": 2}]


def test_client_waits_for_services_and_missing_parents(srv, api):
    from threadline.server.client import Client

    client = Client(srv.urls.api)
    trace = "d5" * 16
    srv.ingest.submit([span(trace, "08" * 8, "07" * 8, "child", "db", 3, 80, 1)]).result(30)
    with pytest.raises(TimeoutError) as waited:
        client.wait_for_trace(trace, timeout=0.3, services={"db", "web"})
    assert str(waited.value) == f"trace {trace} after 0.3s: no spans yet from web"
    with pytest.raises(TimeoutError) as waited:
        client.wait_for_trace(trace, timeout=0.3, services={"db"}, connected=True)
    assert str(waited.value) == f"trace {trace} after 0.3s: 1 parent(s) not arrived"
    srv.ingest.submit([span(trace, "07" * 8, "", "root", "web", 2, 79, 3)]).result(30)
    spans = client.wait_for_trace(trace, timeout=30, services={"db", "web"}, connected=True)
    assert sorted(s.name for s in spans) == ["child", "root"]


def test_jaeger_dependencies_name_databases_and_external_services_as_jaeger_names_peers():
    from crafted import users

    from threadline import server

    base = NOW - 30 * 60 * 10**9
    with server.start() as s, httpx.Client(base_url=s.urls.api, timeout=30) as c:
        s.ingest.submit(users(base)).result(30)
        body = c.get("/api/dependencies", params={"endTs": NOW // 1_000_000}).json()
    # a leaf CLIENT span's peer is an edge, as Jaeger makes one of a leaf span's peer.service
    assert body["data"] == [
        {"parent": "users", "child": "geo.example.net:443", "callCount": 1},
        {"parent": "users", "child": "users_db", "callCount": 2},
    ]
