"""The integration test the README shows: start a trace, call the gateway of the running shop,
fetch the spans by trace id from the threadline server, check the services and the tree."""

from __future__ import annotations

import httpx
import pytest

import threadline as tl
from threadline.demo.shop import Shop
from threadline.server.analysis import assemble
from threadline.server.client import Client
from threadline.server.serving import start

SERVICES = {
    "checkout-tests",
    "gateway",
    "users",
    "auth",
    "orders",
    "inventory",
    "payments",
    "worker",
}


@pytest.fixture(scope="module")
def shop():  # a threadline server, and the shop exporting to it
    with start() as server, Shop(server.urls.otlp_http) as running:
        tl.configure("checkout-tests", endpoint=server.urls.otlp_http)
        tl.instrument(servers=False)  # the test is a client
        running.api = server.urls.api
        try:
            yield running
        finally:
            tl.shutdown()


def test_checkout_is_one_trace_across_the_services(shop):
    with tl.span("test checkout") as root:
        r = httpx.get(f"{shop.gateway}/checkout", params={"user": "ada", "item": "tea"})
    assert r.status_code == 200
    trace_id = format(root.get_span_context().trace_id, "032x")
    tl.flush()

    spans = Client(shop.api).wait_for_trace(trace_id, timeout=30, services=SERVICES, connected=True)

    assert {s.service for s in spans} == SERVICES
    tree = assemble(spans)  # the server's own analysis
    assert [r.name for r in tree.real_roots] == ["test checkout"]
    assert not tree.placeholders  # no span whose parent never arrived
    gateway = next(s for s in spans if s.name == "GET /checkout")
    client = next(s for s in spans if s.span_id == gateway.parent_span_id)
    assert client.service == "checkout-tests" and client.parent_span_id == format(
        root.get_span_context().span_id, "016x"
    )
