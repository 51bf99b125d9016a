"""`threadline demo --once`: the whole shop in separate processes, its spans in the embedded
server's DuckDB file, read back and checked span by span."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections import defaultdict

import pytest

from threadline.demo.breaker import EVENT
from threadline.demo.services import SERVICES
from threadline.report.render import ERRORS_LEGEND
from threadline.server.model import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_UNSET
from threadline.server.storage import open_store

SHOP = {"gateway", "users", "auth", "orders", "inventory", "payments"}
CHARGE = "/shop.Payments/Charge"


def run_demo(db, *extra: str):
    proc = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "demo", "--once", "-n", "20", "--port", "0"]
        + ["--db", str(db), *extra],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = open_store(str(db))
    try:
        spans = store.spans_between(0, 2**62)
    finally:
        store.close()
    by_trace = defaultdict(list)
    for s in spans:
        by_trace[s.trace_id].append(s)
    return proc.stdout, dict(by_trace)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo") / "traces.duckdb")


def status_of(spans) -> int:
    (gateway,) = [s for s in spans if s.service == "gateway" and s.kind == KIND_SERVER]
    a = gateway.attributes
    return int(a.get("http.response.status_code", a.get("http.status_code")))


def checkouts(traces, status):
    return [
        t
        for t in traces.values()
        if any(s.service == "gateway" for s in t) and status_of(t) == status
    ]


def one(spans, name, service):
    found = [s for s in spans if s.name == name and s.service == service]
    assert len(found) == 1, (name, service, [(s.name, s.service) for s in spans])
    return found[0]


def exception_types(span) -> list[str]:
    return [e.attributes.get("exception.type", "") for e in span.events if e.name == "exception"]


def test_prints_a_checkout_the_service_map_and_completeness(demo):
    out, _ = demo
    assert "checkouts" in out and "20/20" in out
    assert "trace " in out and "GET /checkout" in out and "authorize payment" in out
    assert re.search(r"service map ─+\ngateway\n├── orders  20 calls, 6 errors\n", out)
    # each service's database is a node of the map, under the service that owns it
    assert "│   │   └── inventory_db (sqlite database)  40 calls\n" in out  # UPDATE + SELECT
    assert "│   ├── orders_db (sqlite database)  20 calls\n" in out
    assert "    └── users_db (sqlite database)  20 calls\n" in out
    assert f"\n{ERRORS_LEGEND}\n" in out
    assert re.search(r"^traces\s+20$", out, re.M)  # one per checkout, nothing else
    assert re.search(r"connected \(one tree\)\s+100\.0%", out)
    assert "no broken hops" in out


def test_every_trace_is_a_checkout_and_one_connected_tree(demo):
    _, traces = demo
    # start-up (the pricing pool's warm-up, the worker's lifetime) is no trace of its own
    assert [len([s for s in t if s.name == "GET /checkout"]) for t in traces.values()] == [1] * 20
    for trace_id, spans in traces.items():
        ids = {s.span_id for s in spans}
        roots = [s for s in spans if not s.parent_span_id]
        orphans = [s for s in spans if s.parent_span_id and s.parent_span_id not in ids]
        assert len(roots) == 1 and not orphans, (trace_id, [(s.name, s.service) for s in spans])


def test_a_placed_checkout_crosses_every_service_the_queue_and_the_worker(demo):
    _, traces = demo
    placed = checkouts(traces, 200)
    assert len(placed) >= 10
    for spans in placed:
        assert {s.service for s in spans} >= SHOP | {"worker"}
        root = [s for s in spans if not s.parent_span_id][0]
        assert (root.service, root.name, root.kind) == ("gateway", "GET /checkout", KIND_SERVER)
        send = one(spans, "send order.created", "orders")
        process = one(spans, "process order.created", "worker")
        assert process.parent_span_id == send.span_id
        assert process.resource["process.pid"] != send.resource["process.pid"]
        orders = one(spans, "POST /orders", "orders")
        pricing = one(spans, "run price_order", "orders")  # the CPU step, in the process pool
        assert pricing.parent_span_id == one(spans, "place order", "orders").span_id
        assert pricing.resource["process.pid"] != orders.resource["process.pid"]
        charge = one(spans, CHARGE, "payments")  # over gRPC
        client = next(s for s in spans if s.span_id == charge.parent_span_id)
        assert (client.name, client.service, client.kind) == (CHARGE, "orders", KIND_CLIENT)
        assert charge.kind == KIND_SERVER
        assert (charge.attributes["rpc.system"], charge.attributes["rpc.service"]) == (
            "grpc",
            "shop.Payments",
        )
        # each service's own database
        (profile,) = [s for s in spans if s.attributes.get("db.namespace") == "users_db"]
        assert (profile.name, profile.service, profile.kind) == ("SELECT", "users", KIND_CLIENT)
        assert profile.attributes["db.query.text"] == "SELECT tier FROM users WHERE name = ?"
        stock = [s for s in spans if s.attributes.get("db.namespace") == "inventory_db"]
        assert [(s.name, s.service) for s in stock] == [
            ("UPDATE", "inventory"),
            ("SELECT", "inventory"),
        ]
        assert stock[0].parent_span_id == one(spans, "reserve stock", "inventory").span_id
        (stored,) = [s for s in spans if s.attributes.get("db.namespace") == "orders_db"]
        assert (stored.name, stored.service) == ("INSERT", "orders")
        assert {s.attributes["db.system.name"] for s in [profile, *stock, stored]} == {"sqlite"}
        assert not [s for s in spans if s.status_code == STATUS_ERROR]


def test_declined_payment_is_an_error_where_it_happened(demo):
    _, traces = demo
    declined = checkouts(traces, 402)
    assert len(declined) == 3  # 19 charges: the payments rhythm declines the 3rd, 14th, 19th
    for spans in declined:
        authorize = one(spans, "authorize payment", "payments")
        assert authorize.status_code == STATUS_ERROR
        assert exception_types(authorize)[0].endswith("PaymentDeclined")
        charge = one(spans, "charge payment", "orders")
        assert charge.status_code == STATUS_ERROR
        assert exception_types(charge)[0].endswith("PaymentDeclined")
        # FAILED_PRECONDITION is the caller's outcome, not a server error (gRPC conventions)
        server = one(spans, CHARGE, "payments")
        assert server.status_code == STATUS_UNSET
        assert server.attributes["rpc.grpc.status_code"] == 9
        # nothing went wrong with the order itself: it is stored as declined
        assert one(spans, "INSERT", "orders").attributes["db.namespace"] == "orders_db"
        assert one(spans, "GET /checkout", "gateway").status_code == STATUS_UNSET


def test_failed_and_timed_out_payments(demo):
    _, traces = demo
    failed = checkouts(traces, 502)
    assert len(failed) == 5  # four processor failures and one timeout
    crashed = [
        t for t in failed if any(s.name == "authorize payment" and exception_types(s) for s in t)
    ]
    assert len(crashed) == 4
    for spans in crashed:
        authorize = one(spans, "authorize payment", "payments")
        assert authorize.status_code == STATUS_ERROR
        assert exception_types(authorize)[0].endswith("CardProcessorError")
        server = one(spans, CHARGE, "payments")
        assert server.status_code == STATUS_ERROR  # UNAVAILABLE
        assert server.attributes["rpc.grpc.status_code"] == 14
        charge = one(spans, "charge payment", "orders")
        assert exception_types(charge)[0].endswith("PaymentUnavailable")
        assert one(spans, "GET /checkout", "gateway").status_code == STATUS_ERROR  # a 502
    (timed_out,) = [t for t in failed if t not in crashed]
    charge = one(timed_out, "charge payment", "orders")
    assert charge.status_code == STATUS_ERROR
    (client,) = [s for s in timed_out if s.parent_span_id == charge.span_id]
    assert (client.name, client.kind, client.status_code) == (CHARGE, KIND_CLIENT, STATUS_ERROR)
    assert client.attributes["rpc.grpc.status_code"] == 4  # DEADLINE_EXCEEDED


def test_circuit_breaker_transitions_are_events(demo):
    _, traces = demo
    events = sorted(
        (e.time_ns, e.attributes["circuit_breaker.from"], e.attributes["circuit_breaker.to"], s)
        for spans in traces.values()
        for s in spans
        for e in s.events
        if e.name == EVENT
    )
    assert [(f, t) for _, f, t, _ in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert all(s.name == "charge payment" and s.service == "orders" for *_, s in events)
    (refused,) = checkouts(traces, 503)  # the one call made while open, answered at once
    charge = one(refused, "charge payment", "orders")
    assert exception_types(charge)[0].endswith("CircuitOpen")
    assert charge.attributes["circuit_breaker.state"] == "open"
    assert "payments" not in {s.service for s in refused}


def test_sampling_is_decided_once_per_trace(tmp_path):
    out, traces = run_demo(tmp_path / "sampled.duckdb", "--sample", "0.5")
    kept = [t for t in traces.values() if any(s.name == "GET /checkout" for s in t)]
    assert 0 < len(kept) < 20  # 2**-19 odds of failing by chance
    assert f"sampling: {len(kept)} of 20 checkouts traced" in out
    for spans in kept:  # a kept trace is kept whole, in every service it reached
        reached = SHOP - {"payments"} if status_of(spans) == 503 else SHOP  # circuit open
        assert {s.service for s in spans} >= reached
    # and nothing of a dropped one was recorded anywhere
    assert len([s for t in traces.values() for s in t if s.name == "POST /orders"]) == len(kept)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _still_running(pid: int, timeout: float) -> bool:
    """Whether the process is still running after up to `timeout` seconds (waits on a pidfd,
    which becomes readable when the process exits; exited helpers may need a moment)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        return not select.select([fd], [], [], timeout)[0]
    finally:
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize(
    "phase, requests, marker",
    [
        ("checkouts", "100000", "shop running"),
        ("live page, after the report", "1", "live order page"),
    ],
)
def test_interrupting_the_demo_stops_every_process_it_started(phase, requests, marker, sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", "demo", "-n", requests, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(marker):
                break
        assert seen and seen[-1].startswith(marker), "".join(seen)
        services = _children(proc.pid)
        assert len(services) == len(SERVICES)
        workers = [w for s in services for w in _children(s)]  # orders' worker and pool
        assert len(workers) >= 2
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert rest.strip().splitlines()[-1] == "stopping"
    left = [p for p in services + workers if _still_running(p, 10)]
    assert not left


def test_demo_to_another_server(tmp_path):
    """--endpoint sends the spans elsewhere; --server is where the report reads them."""
    from threadline.server.serving import start

    with start() as server:
        proc = subprocess.run(
            [sys.executable, "-m", "threadline.cli", "demo", "--once", "-n", "3"]
            + ["--endpoint", server.urls.otlp_http, "--server", server.urls.api],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"spans to {server.urls.otlp_http}" in proc.stdout
        assert "GET /checkout" in proc.stdout and "\ngateway\n├── orders  3 calls" in proc.stdout
        assert {"gateway", "worker"} <= set(server.store.services())


def test_a_taken_ui_port_is_said_and_a_free_one_used(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "threadline.cli", "demo", "--once", "-n", "2"]
            + ["--port", str(port), "--db", str(tmp_path / "t.duckdb")],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"cannot listen on 127.0.0.1:{port} (--port)" in proc.stdout
    assert "the UI takes a free port instead" in proc.stdout
    assert "GET /checkout" in proc.stdout
