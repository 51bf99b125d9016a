"""The analysis endpoints over HTTP, as `threadline serve` mounts them, on crafted traces sent
to its OTLP/HTTP receiver."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from crafted import BROKEN, CHECKOUT, CRASHED, EVIL, MAILER, XSS, checkout, load, showcase

import threadline as tl
from threadline.server.client import Client
from threadline.server.storage import open_store
from threadline.server.web import analysis as analysis_routes
from threadline.server.web.responses import CompactJSON
from threadline.testing import hex_ids

BASE = time.time_ns() - 60 * 10**9
SPANS = showcase(BASE)


class Response:
    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.body = status_code, body

    def json(self):
        return json.loads(self.body)


class HTTP:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str) -> Response:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as resp:
                return Response(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read())


@pytest.fixture(scope="module")
def client(srv):
    load(srv.urls.otlp_http, SPANS)
    return HTTP(srv.urls.api)


def test_trace_rows_in_tree_order_with_critical_path(client):
    body = client.get(f"/api/threadline/analysis/trace/{CHECKOUT}").json()
    assert [(r["name"], r["depth"]) for r in body["rows"]] == [
        ("GET /checkout", 0),
        ("load cart", 1),
        ("POST /charge", 1),
        ("charge card", 2),
        ("SELECT account", 3),
        ("orders publish", 1),
        ("render", 1),
    ]
    rows = body["rows"]
    assert [r["parent"] for r in rows] == [-1, 0, 0, 2, 3, 0, 0]
    assert rows[0]["start"] == 0 and rows[0]["end"] == 120_000_000 and int(body["t0_ns"]) == BASE
    assert rows[0]["attributes"]["user.note"] == XSS  # data, escaped by the UI, never by the API
    assert body["summary"] == {
        "root_service": "web",
        "root_name": "GET /checkout",
        "span_count": 7,
        "services": ["payments", "web"],
        "errors": 2,
        "incomplete": 0,
        "placeholders": 0,
        "breaks": 0,
        "dropped_context": False,
    }
    assert [r["name"] for r in rows if r["critical"]] == [
        "GET /checkout",
        "load cart",
        "POST /charge",
        "charge card",
        "SELECT account",
        "orders publish",
        "render",
    ]
    assert body["resources"][rows[0]["resource"]]["service.name"] == "web"
    assert body["resources"][rows[3]["resource"]]["service.name"] == "payments"
    assert rows[3]["events"][0]["name"] == "exception" and rows[3]["events"][0]["t"] == 80_000_000


def test_trace_with_missing_parent_shows_placeholder_and_break(client):
    body = client.get(f"/api/threadline/analysis/trace/{BROKEN}").json()
    rows = body["rows"]
    assert [(r["name"], r.get("placeholder", False)) for r in rows] == [
        ("GET /refund", False),
        ("POST /refund", False),
        ("(missing parent)", True),
        ("UPDATE ledger", False),
    ]
    assert rows[2]["note"] == "parent f000000000000001 of span f000000000000002 never arrived"
    (b,) = body["breaks"]
    assert b["before"] == {
        "service": "web",
        "span_id": "e000000000000002",
        "name": "POST /refund",
        "kind": "client",
    }
    assert b["after"]["service"] == "payments" and b["missing_span_id"] == "f000000000000001"


def test_trace_with_crashed_worker_marks_pending_span(client):
    body = client.get(f"/api/threadline/analysis/trace/{CRASHED}").json()
    pending = [r for r in body["rows"] if r.get("pending")]
    assert [r["name"] for r in pending] == ["crunch part 2"]
    assert (
        pending[0]["note"]
        == "worker pid 301 was killed by signal 9 (SIGKILL), seen by service 'jobs' span 'nightly report'"
    )


def test_trace_errors(client):
    assert client.get("/api/threadline/analysis/trace/" + "e" * 32).status_code == 404
    r = client.get("/api/threadline/analysis/trace/not-hex")
    assert r.status_code == 400 and "hex digits" in r.json()["error"]


def test_dependencies_include_messaging_edge_with_its_traces(client):
    body = client.get("/api/threadline/analysis/dependencies?lookback=1h").json()
    edges = {
        (e["parent"], e["child"], e["kind"]): (e["calls"], e["errors"], e["trace_ids"])
        for e in body["edges"]
    }
    assert edges == {
        ("web", "payments", "call"): (1, 1, [CHECKOUT]),
        ("web", "mailer", "messaging"): (1, 0, [MAILER]),
        (XSS, "web", "call"): (1, 0, [EVIL]),
        # the mailer's leaf CLIENT span names peer.service smtp, which no span answered
        ("mailer", "smtp", "external"): (1, 0, [MAILER]),
    }
    assert {s["service"] for s in body["services"]} == {
        "web",
        "payments",
        "mailer",
        "jobs",
        XSS,
        "smtp",
    }
    assert [s for s in body["services"] if s["kind"] != "service"] == [
        {"service": "smtp", "kind": "external", "spans": 0, "errors": 0, "system": "", "calls": 1}
    ]


def test_completeness_over_window(client):
    body = client.get("/api/threadline/analysis/completeness?lookback=2h&buckets=4").json()
    assert (body["traces"], body["one_root"], body["with_orphans"], body["with_incomplete"]) == (
        5,
        5,
        1,
        1,
    )
    assert body["orphan_share"] == 0.2 and len(body["buckets"]) == 4
    assert sum(b["traces"] for b in body["buckets"]) == 5
    (hop,) = body["broken_hops"]
    assert (hop["before"], hop["after"], hop["count"], hop["trace_ids"]) == (
        "web",
        "payments",
        1,
        [BROKEN],
    )


def test_window_parameters_are_checked(client):
    r = client.get("/api/threadline/analysis/completeness?lookback=soon")
    assert r.status_code == 400 and "lookback must look like" in r.json()["error"]
    r = client.get("/api/threadline/analysis/dependencies?start=20&end=10")
    assert r.status_code == 400 and "must be before end" in r.json()["error"]
    assert analysis_routes.window_of({"lookback": "15m"}, now_ns=10**12) == (
        10**12 - 900 * 10**9,
        10**12,
    )


def test_window_takes_whole_traces_that_start_in_it():
    store = open_store(":memory:")
    store.write(checkout(BASE))  # root at BASE, children up to BASE + 120 ms
    ms = 1_000_000
    # the children alone in a window would look orphaned: a trace that started before is left out
    assert analysis_routes.traces_started_in(store, BASE + 5 * ms, BASE + 10**9) == []
    whole = analysis_routes.traces_started_in(store, BASE, BASE + ms)
    assert len(whole) == 7 and max(s.start_ns for s in whole) == BASE + 98 * ms
    store.close()


def test_summaries_for_example_trace_ids(client):
    body = client.get(
        f"/api/threadline/analysis/summaries?id={MAILER}&id={CHECKOUT}&id={'f' * 32}"
    ).json()
    assert [(t["trace_id"], t["root_service"], t["span_count"]) for t in body["traces"]] == [
        (MAILER, "mailer", 2),
        (CHECKOUT, "web", 7),
    ]
    assert client.get("/api/threadline/analysis/summaries?id=xyz").status_code == 400


def _hang(ready) -> None:
    with tl.span("inner"):
        ready.set()
        threading.Event().wait(60)


def test_a_killed_worker_is_explained_end_to_end(srv, client):
    """A real child process, SIGKILLed mid-span, exporting to the real server: the analysis
    shows its spans as incomplete and says which pid died of which signal."""
    tl.configure("jobs", endpoint=srv.urls.otlp_http)
    try:
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        with tl.span("nightly report") as parent:
            p = ctx.Process(target=_hang, args=(ready,))
            p.start()
            assert ready.wait(60)
            os.kill(p.pid, signal.SIGKILL)
            p.join(60)
        tl.flush()
    finally:
        tl.configure("tests", exporter="none")
    trace_id = hex_ids(parent)[0]
    # by default the unit of work a process may be killed in is announced ("run _hang")
    Client(srv.urls.api).wait_for_trace(trace_id, min_spans=2, timeout=30)
    body = client.get(f"/api/threadline/analysis/trace/{trace_id}").json()
    assert [(r["name"], r["depth"], r.get("pending", False)) for r in body["rows"]] == [
        ("nightly report", 0, False),
        ("run _hang", 1, True),
    ]
    why = f"worker pid {p.pid} was killed by signal 9 (SIGKILL), seen by service 'jobs' span 'nightly report'"
    assert [(i["name"], i["pid"], i["reason"]) for i in body["incomplete"]] == [
        ("run _hang", p.pid, why)
    ]
    assert body["breaks"] == [] and body["summary"]["incomplete"] == 1


def test_values_json_cannot_hold_are_written_as_the_query_api_writes_them():
    body = json.loads(CompactJSON({"raw": b"\x00\xff", "nan": float("nan"), "ok": [1]}).body)
    assert body == {"raw": "AP8=", "nan": "nan", "ok": [1]}
