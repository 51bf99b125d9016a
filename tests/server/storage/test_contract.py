"""The store contract: every engine (the `store` fixture: DuckDB and chdb) answers alike."""

import pytest
from store_spans import T1, T2, span

from threadline.server.model import Link
from threadline.server.storage import Filter, Query, parse_filter


def test_pending_copy_is_superseded_and_kept_when_alone(store):
    pending = span(span_id="01" * 8, start=5, end=5, attributes={"threadline.pending": True})
    done = span(span_id="01" * 8, start=5, end=9, attributes={"x": 1})
    alone = span(
        span_id="02" * 8, parent="01" * 8, start=6, end=6, attributes={"threadline.pending": True}
    )
    store.write([pending, alone])
    store.write([done])
    spans = store.get_trace(T1)
    assert [(s.span_id, s.end_ns, s.pending) for s in spans] == [
        ("01" * 8, 9, False),
        ("02" * 8, 6, True),
    ]
    [summary] = store.summaries([T1])
    assert (summary.span_count, summary.incomplete_count, summary.root_name) == (2, 1, "op")


def test_find_traces_with_filters(store):
    store.write(
        [
            span(
                T1,
                "01" * 8,
                service="api",
                name="GET /",
                attributes={"http.status_code": 503, "user": "ann"},
                start=100,
                end=400,
            ),
            span(T1, "02" * 8, "01" * 8, service="db", name="select", kind=3, start=150, end=160),
            span(
                T2,
                "03" * 8,
                service="api",
                name="GET /",
                attributes={"http.status_code": 200},
                resource={"region": "eu"},
                start=900,
                end=950,
            ),
        ]
    )

    def ids(**kw):
        return store.find_trace_ids(Query(**kw))

    assert ids() == [T2, T1]  # most recent first
    assert ids(service="db") == [T1]
    assert ids(filters=[parse_filter("http.status_code>=500")]) == [T1]
    assert ids(filters=[parse_filter("http.status_code=200")]) == [T2]
    assert ids(filters=[parse_filter("http.status_code!=200")]) == [T1]
    assert ids(filters=[parse_filter("user")]) == [T1]
    assert ids(filters=[parse_filter("resource:region=eu OR user=ann")]) == [T2, T1]
    assert ids(filters=[parse_filter("span:region=eu")]) == []
    assert ids(filters=[parse_filter("!user"), parse_filter("http.status_code")]) == [T2]
    assert ids(service="api", min_duration_ns=200) == [T1]
    assert ids(limit=1) == [T2]
    assert [(d.parent, d.child, d.call_count) for d in store.dependencies(0, 1_000)] == [
        ("api", "db", 1)
    ]
    assert store.services() == ["api", "db"]
    assert store.operations("db") == [("select", 3)]
    assert [s.span_id for s in store.spans_between(120, 1_000, service="api")] == ["03" * 8]
    assert store.count_between(0, 1_000, 10) == 3
    assert store.count_between(0, 1_000, 1) == 2  # counted only far enough to pass the cap
    assert store.count_between(120, 1_000, 10) == 2
    assert ids(filters=[parse_filter("http.status_code>1e300")]) == []  # a bound number
    assert store.delete_before(500) == 2
    assert store.get_trace(T1) == [] and store.stats()["spans"] == 1


def test_filter_parsing_is_precise():
    assert parse_filter('resource:host.name="a b"') == [Filter("host.name", "=", "a b", "resource")]
    assert parse_filter("a>1 OR !b") == [Filter("a", ">", 1.0), Filter("b", "!exists")]
    with pytest.raises(ValueError, match="needs a number"):
        parse_filter("a>x")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_filter("=x")


def test_unknown_and_malformed_ids_are_empty(store):
    assert store.get_trace("00" * 16) == []
    assert store.get_trace("xyz") == []
    assert store.get_traces(["zz" * 16]) == {}


def test_dependencies_count_each_span_once_by_kind(store):
    T3, T4 = "03" * 16, "04" * 16
    pending = {"threadline.pending": True}
    store.write(
        [
            span(T1, "01" * 8, service="web", kind=2, start=10, end=90),
            # a call whose child was announced (pending) and then completed: one call
            span(T1, "02" * 8, "01" * 8, service="db", kind=3, start=20, end=20, attributes=pending),
            span(T1, "02" * 8, "01" * 8, service="db", kind=3, start=20, end=30),
            # a producer, announced too, and its consumer as a child: messaging
            span(T1, "03" * 8, "01" * 8, service="web", kind=4, start=40, end=40, attributes=pending),
            span(T1, "03" * 8, "01" * 8, service="web", kind=4, start=40, end=41),
            span(T1, "04" * 8, "03" * 8, service="mail", kind=5, start=50, end=60),
            # a consumer in its own trace linking to the producer, pending copy and completed
            span(T2, "05" * 8, service="mail", kind=5, start=60, end=60, attributes=pending,
                 links=[Link(T1, "03" * 8)]),
            span(T2, "05" * 8, service="mail", kind=5, start=60, end=70, links=[Link(T1, "03" * 8)]),
            # a batch job linking to a request it summarises: a plain link
            span(T3, "06" * 8, service="batch", kind=1, start=80, end=85, links=[Link(T1, "01" * 8)]),
            # links that point nowhere, or are not ids at all, are skipped
            span(T4, "07" * 8, service="odd", kind=5, start=86, end=87,
                 links=[Link("zz" * 16, "not hex"), Link(T1, "ff" * 8), Link("", "")]),
        ]
    )  # fmt: skip
    deps = [(d.parent, d.child, d.kind, d.call_count) for d in store.dependencies(0, 1_000)]
    assert deps == [
        ("web", "batch", "link", 1),
        ("web", "db", "call", 1),
        ("web", "mail", "messaging", 2),
    ]


def test_dependencies_read_peers_from_the_copy_that_counts(store):
    """The copy of a span that counts names its peer: the completed one, else the pending one
    alone; a re-sent span counts once."""
    pending = {"threadline.pending": True}
    store.write(
        [
            span(T1, "01" * 8, service="web", kind=2, start=10, end=90),
            # announced naming none, completed naming one: that peer, once
            span(T1, "03" * 8, "01" * 8, service="web", kind=3, start=30, end=30,
                 attributes=pending),
            span(T1, "03" * 8, "01" * 8, service="web", kind=3, start=30, end=35,
                 attributes={"peer.service": "billing"}),
            # still running: its announcement names the peer
            span(T1, "04" * 8, "01" * 8, service="web", kind=3, start=40, end=40,
                 attributes={**pending, "rpc.service": "geo.Geo"}),
            # announced naming one, completed naming none: no peer
            span(T1, "06" * 8, "01" * 8, service="web", kind=3, start=60, end=60,
                 attributes={**pending, "peer.service": "gone"}),
            span(T1, "06" * 8, "01" * 8, service="web", kind=3, start=60, end=65),
        ]
    )  # fmt: skip
    resent = span(T1, "05" * 8, "01" * 8, service="web", kind=3, start=50, end=55,
                  attributes={"server.address": "api.example.net"})  # fmt: skip
    store.write([resent])
    store.write([resent])
    deps = [(d.parent, d.child, d.kind, d.call_count) for d in store.dependencies(0, 1_000)]
    assert deps == [
        ("web", "api.example.net", "external", 1),
        ("web", "billing", "external", 1),
        ("web", "geo.Geo", "external", 1),
    ]


def test_quoted_filter_values_may_hold_or(store):
    store.write(
        [
            span(T1, "01" * 8, attributes={"q": "a OR b"}),
            span(T2, "02" * 8, attributes={"q": "a", "r": 'x|"y"'}, start=3_000, end=4_000),
        ]
    )
    assert parse_filter('q="a OR b"') == [Filter("q", "=", "a OR b")]
    assert store.find_trace_ids(Query(filters=[parse_filter('q="a OR b"')])) == [T1]
    assert store.find_trace_ids(Query(filters=[parse_filter("q=a OR q=b")])) == [T2]
    assert store.find_trace_ids(Query(filters=[parse_filter(r'r="x|\"y\"" | q=none')])) == [T2]
    with pytest.raises(
        ValueError, match=r"""cannot parse filter 'q="a': unterminated quoted value"""
    ):
        parse_filter('q="a OR b')


def test_dependencies_to_databases_and_external_services(store):
    from store_spans import peer_cases

    from threadline.server import analysis

    spans, edges = peer_cases()
    store.write(spans)
    deps = [(d.parent, d.child, d.kind, d.call_count) for d in store.dependencies(0, 10_000)]
    assert deps == edges
    graph = analysis.dependencies(spans)  # the analysis reads the same rule over spans
    assert [(e.parent, e.child, e.kind, e.calls) for e in graph.edges] == edges
    # outside the window: nothing
    assert store.dependencies(5_000, 10_000) == []
