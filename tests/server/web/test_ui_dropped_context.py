"""The completeness page and the trace view's findings name a dropped context (in Chromium)."""

from __future__ import annotations

import time

import pytest
from crafted import load

from threadline.server.model import KIND_CONSUMER, KIND_INTERNAL, KIND_PRODUCER, Span

pytestmark = pytest.mark.timeout(240)

BASE_NS = time.time_ns() - 5 * 60 * 10**9
TRACED, PLAIN = "d0" * 16, "d1" * 16
Q = {"messaging.destination.name": "orders"}


def span(trace, sid, parent, name, service, kind, start_ms) -> Span:
    return Span(
        trace_id=trace,
        span_id=sid * 16,
        parent_span_id=parent and parent * 16,
        name=name,
        kind=kind,
        start_ns=BASE_NS + start_ms * 10**6,
        end_ns=BASE_NS + (start_ms + 1) * 10**6,
        service=service,
        resource={"service.name": service},
        attributes=dict(Q) if kind != KIND_INTERNAL else {},
    )


@pytest.fixture(scope="module")
def ui(srv):
    load(
        srv.urls.otlp_http,
        [
            span(TRACED, "1", "", "checkout", "shop", KIND_INTERNAL, 0),
            span(TRACED, "2", "1", "publish orders", "shop", KIND_PRODUCER, 1),
            span(TRACED, "3", "2", "process orders", "orders", KIND_CONSUMER, 2),
            span(PLAIN, "4", "", "process orders", "orders", KIND_CONSUMER, 10),
        ],
    )
    return srv.urls.api


def test_the_completeness_page_lists_the_dropped_context(page, ui):
    page.goto(f"{ui}/#/completeness")
    page.wait_for_selector(".cards")
    cards = page.locator(".card").all_inner_texts()
    (dropped,) = [c for c in cards if c.startswith("Dropped context")]
    assert "50.0%" in dropped and "1 traces" in dropped
    (row,) = page.locator("table.dropped tbody tr").all()
    assert (row.get_attribute("data-sender"), row.get_attribute("data-receiver")) == ("?", "orders")
    assert row.get_attribute("data-destination") == "orders"
    assert "untraced sender" in row.inner_text()
    assert row.locator(f"a[href='#/trace/{PLAIN}']").count() == 1


def test_the_trace_view_shows_it_among_the_findings(page, ui):
    page.goto(f"{ui}/#/trace/{PLAIN}")
    page.wait_for_selector("body[data-ready=trace]")
    finding = page.locator(".problem.dropped-context")
    assert finding.count() == 1
    assert finding.locator(".tag").text_content() == "dropped context"
    assert "other messages from destination 'orders' reach 'orders' with context" in (
        finding.inner_text()
    )
    page.goto(f"{ui}/#/trace/{TRACED}")
    page.wait_for_selector("body[data-ready=trace]")
    assert page.locator(".problem.dropped-context").count() == 0
