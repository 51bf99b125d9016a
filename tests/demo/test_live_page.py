"""The demo's live order page in headless Chromium: click "Checkout", the order goes over the
WebSocket to the web service, through the gateway to orders, inventory and payments, and the
status comes back — one trace from the click to the inventory service, read from the server."""

from __future__ import annotations

import pytest

from threadline.demo.shop import Shop
from threadline.server.analysis import assemble
from threadline.server.client import Client
from threadline.server.model import KIND_CONSUMER, KIND_PRODUCER, KIND_SERVER
from threadline.server.serving import start

SERVICES = {"web-browser", "web", "gateway", "users", "auth", "orders", "inventory", "payments"}


@pytest.fixture(scope="module")
def shop():
    with start() as server, Shop(server.urls.otlp_http) as running:
        running.api = server.urls.api
        yield running


def one(spans, name, service):
    found = [s for s in spans if s.name == name and s.service == service]
    assert len(found) == 1, (name, service, [(s.name, s.service) for s in spans])
    return found[0]


def test_click_to_inventory_is_one_trace(shop, browser):
    page = browser.new_page()
    try:
        page.goto(shop.web)
        page.wait_for_selector("#checkout:not([disabled])", timeout=10_000)
        page.select_option("select[name=item]", "coffee")
        page.click("#checkout")
        line = page.wait_for_selector(
            "#log li[data-status]:not([data-status=placing])", timeout=20_000
        )
        status, text = line.get_attribute("data-status"), line.inner_text()
        trace_id = line.query_selector(".trace").inner_text().split()[-1]  # shown per order
        page.goto("about:blank")  # leaving the page exports the browser's spans
    finally:
        page.close()
    assert status == "placed" and "1 × coffee for ada: placed" in text

    spans = Client(shop.api).wait_for_trace(trace_id, timeout=30, services=SERVICES, connected=True)
    assert {s.service for s in spans} >= SERVICES
    tree = assemble(spans)  # the server's own analysis: one root, no missing parents
    assert [r.name for r in tree.real_roots] == ["click checkout"] and not tree.placeholders
    click = tree.real_roots[0]
    b_send = one(spans, "send /live", "web-browser")
    assert (b_send.kind, b_send.parent_span_id) == (KIND_PRODUCER, click.span_id)
    process = one(spans, "process /live", "web")
    assert (process.kind, process.parent_span_id) == (KIND_CONSUMER, b_send.span_id)
    gateway = one(spans, "GET /checkout", "gateway")
    assert gateway.kind == KIND_SERVER
    by_id = {s.span_id: s for s in spans}

    def ancestors(s):
        while s.parent_span_id in by_id:
            s = by_id[s.parent_span_id]
            yield s

    assert process in ancestors(gateway)
    reserve = one(spans, "reserve stock", "inventory")
    assert gateway in ancestors(reserve)
    # Both pushes ("placing", then the outcome) came back inside the trace.
    pushes = [s for s in spans if s.name == "send /live" and s.service == "web"]
    received = [s for s in spans if s.name == "process /live" and s.service == "web-browser"]
    assert len(pushes) == 2 and all(p.parent_span_id == process.span_id for p in pushes)
    assert sorted(r.parent_span_id for r in received) == sorted(p.span_id for p in pushes)
