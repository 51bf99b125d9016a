"""Dropped contexts: a receiving root is flagged only when its service (for a consumer, its
destination) also receives with context; its sender is named when a traced span sent it."""

from __future__ import annotations

from threadline.server import analysis as an
from threadline.server.model import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    Link,
    Span,
)

MS = 1_000_000
Q = {"messaging.destination.name": "orders"}


def span(trace, sid, parent, name, service, kind, start, end, **kw) -> Span:
    return Span(
        trace_id=trace * 32,
        span_id=sid * 16,
        parent_span_id=parent and parent * 16,
        name=name,
        kind=kind,
        start_ns=start * MS,
        end_ns=end * MS,
        service=service,
        resource={"service.name": service},
        **kw,
    )


def traced_message(t: str) -> list[Span]:  # shop -> orders, with context
    return [
        span(t, "1", "", "checkout", "shop", KIND_INTERNAL, 0, 10),
        span(t, "2", "1", "publish orders", "shop", KIND_PRODUCER, 1, 2, attributes=Q),
        span(t, "3", "2", "process orders", "orders", KIND_CONSUMER, 3, 4, attributes=Q),
    ]


def test_a_consumer_root_on_a_destination_that_also_receives_with_context_is_flagged():
    plain = [span("b", "4", "", "process orders", "orders", KIND_CONSUMER, 20, 21, attributes=Q)]
    other_queue = [
        span("c", "5", "", "process audit", "orders", KIND_CONSUMER, 22, 23,
             attributes={"messaging.destination.name": "audit"}),
    ]  # fmt: skip
    linked = [
        span("d", "6", "", "process orders", "orders", KIND_CONSUMER, 24, 25, attributes=Q,
             links=[Link("a" * 32, "2" * 16)]),
    ]  # fmt: skip
    found, hops = an.dropped_contexts([traced_message("a"), plain, other_queue, linked])
    assert [(d.trace_id, d.span_id, d.destination) for d in found] == [
        ("b" * 32, "4" * 16, "orders")
    ]
    assert [(h.sender, h.receiver, h.destination, h.kind, h.count, h.trace_ids) for h in hops] == [
        ("?", "orders", "orders", "consumer", 1, ["b" * 32])
    ]
    c = an.completeness([traced_message("a"), plain, other_queue, linked])
    assert (c.traces, c.one_root, c.with_dropped_context, c.connected) == (4, 4, 1, 3)
    assert sum(b.with_dropped_context for b in c.buckets) == 1


def test_a_server_root_in_a_service_called_with_context_is_flagged_with_its_likely_sender():
    called = [
        span("a", "1", "", "GET /checkout", "gateway", KIND_SERVER, 0, 50),
        span("a", "2", "1", "GET /users", "gateway", KIND_CLIENT, 1, 10),
        span("a", "3", "2", "GET /users", "users", KIND_SERVER, 2, 9),
    ]
    # gateway forgot to inject on its second call: its CLIENT span has no child, and the
    # users SERVER span it caused is a root in a trace of its own
    forgot = [
        span("b", "4", "", "GET /checkout", "gateway", KIND_SERVER, 100, 150),
        span("b", "5", "4", "GET /users", "gateway", KIND_CLIENT, 101, 110),
    ]
    root = [span("c", "6", "", "GET /users", "users", KIND_SERVER, 102, 109)]
    found, hops = an.dropped_contexts([called, forgot, root])
    # the gateway's own roots are a public edge: nobody calls the gateway with context
    assert [(d.service, d.trace_id) for d in found] == [("users", "c" * 32)]
    assert found[0].sender is not None and found[0].sender.span_id == "5" * 16
    assert [(h.sender, h.receiver, h.destination, h.kind, h.count) for h in hops] == [
        ("gateway", "users", "GET /users", "server", 1)
    ]
    assert hops[0].example == (
        "service 'users' span 'GET /users' (server) is a root: it arrived with no context "
        "(likely sender service 'gateway' span 'GET /users'), while other 'GET /users' "
        "requests reach 'users' with context"
    )


def test_a_page_and_an_untrusted_edge_in_a_service_called_with_context_are_not_flagged():
    # A live page: the browser loads "GET /" with no context (an entry point), then connects
    # its socket with the page's context; an untrusted caller of "POST /hook" is only linked.
    page = [
        span("a", "1", "", "GET /", "shop", KIND_SERVER, 0, 5),
        span("a", "2", "1", "connect /live", "shop-browser", KIND_CLIENT, 6, 60),
        span("a", "3", "2", "connect /live", "shop", KIND_SERVER, 7, 59),
    ]
    hook = [
        span("b", "4", "", "POST /hook", "shop", KIND_SERVER, 10, 11,
             links=[Link("f" * 32, "f" * 16)]),
    ]  # fmt: skip
    unlinked_hook = [span("c", "5", "", "POST /hook", "shop", KIND_SERVER, 12, 13)]
    assert an.dropped_contexts([page, hook, unlinked_hook]) == ([], [])


def test_entry_points_are_not_flagged():
    cron = [span("a", "1", "", "nightly report", "reports", KIND_INTERNAL, 0, 5)]
    edge = [span("b", "2", "", "GET /", "web", KIND_SERVER, 0, 5)]
    only_plain = [
        span("c", "3", "", "process audit", "audit", KIND_CONSUMER, 0, 5,
             attributes={"messaging.destination.name": "audit"}),
    ]  # fmt: skip
    assert an.dropped_contexts([cron, edge, only_plain]) == ([], [])
    c = an.completeness([cron, edge, only_plain])
    assert (c.with_dropped_context, c.connected, c.dropped_context) == (0, 3, [])


def test_the_trace_view_decides_from_evidence_given():
    plain = [span("b", "4", "", "process orders", "orders", KIND_CONSUMER, 20, 21, attributes=Q)]
    assert an.analyse(plain).dropped is None  # nothing known of the service
    seen = an.received_with_context(traced_message("a"))
    assert seen == {("orders", KIND_CONSUMER, "orders")}
    d = an.analyse(plain, context_seen=seen).dropped
    assert d is not None and (d.service, d.span_id, d.destination) == ("orders", "4" * 16, "orders")
