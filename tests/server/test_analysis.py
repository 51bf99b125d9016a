"""Analysis on crafted traces: every case is built span by span so the expected answer is known."""

from __future__ import annotations

import pytest

from threadline.semconv import CLOCK_CORRECTION, PENDING, WORKER_DIED
from threadline.server import analysis as an
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

T = "0af7651916cd43dd8448eb211c80319c"
MS = 1_000_000


def sp(
    span_id,
    parent="",
    *,
    start=0,
    end=10,
    service="api",
    name=None,
    kind=KIND_INTERNAL,
    trace=T,
    **kw,
):
    return Span(
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent,
        name=name or f"op-{span_id}",
        kind=kind,
        start_ns=start * MS,
        end_ns=end * MS,
        service=service,
        **kw,
    )


def rows(tree):
    return [(n.span_id, n.depth) for n in tree.walk()]


# --------------------------------------------------------------------------------- assemble


def test_assemble_nests_children_in_start_order():
    tree = an.assemble(
        [
            sp("c", "a", start=5, end=6),
            sp("a", end=10),
            sp("b", "a", start=1, end=4),
            sp("d", "b", start=2, end=3),
        ]
    )
    assert rows(tree) == [("a", 0), ("b", 1), ("d", 2), ("c", 1)]
    assert tree.placeholders == [] and tree.main_root.span_id == "a"


def test_missing_parent_becomes_a_placeholder_not_a_dropped_span():
    spans = [
        sp("root", end=100),
        sp("x", "gone", start=20, end=30, service="pay"),
        sp("x2", "x", start=21, end=22, service="pay"),
    ]
    tree = an.assemble(spans)
    assert rows(tree) == [("root", 0), ("gone", 0), ("x", 1), ("x2", 2)]
    ph = tree.nodes["gone"]
    assert ph.placeholder and ph.note == "parent gone of span x never arrived"
    assert (ph.start_ns, ph.end_ns) == (20 * MS, 30 * MS)  # spans its orphans
    assert {s.span_id for s in tree.spans} == {"root", "x", "x2"}


def test_one_placeholder_per_missing_parent_lists_every_orphan():
    tree = an.assemble([sp("x", "gone", start=1), sp("y", "gone", start=2)])
    assert tree.nodes["gone"].note == "parent gone of spans x, y never arrived"
    assert rows(tree) == [("gone", 0), ("x", 1), ("y", 1)]


def test_parent_loop_is_cut_and_every_span_kept():
    tree = an.assemble([sp("a", "b", start=1), sp("b", "a", start=2), sp("s", "s", start=3)])
    assert sorted(n.span_id for n in tree.walk()) == ["a", "b", "s"]
    assert [n.span_id for n in tree.cycles] == ["a", "s"]
    kinds = [(b.kind, b.after.span_id) for b in an.breaks(tree)]
    assert kinds == [("parent_cycle", "a"), ("parent_cycle", "s")]


def test_assemble_refuses_spans_of_two_traces():
    with pytest.raises(ValueError, match="one trace's spans; got 2 trace ids"):
        an.assemble([sp("a"), sp("b", trace="1" * 32)])


def test_completed_span_supersedes_its_pending_announcement():
    pending = sp("w", "a", start=1, end=1, attributes={PENDING: True})
    done = sp("w", "a", start=1, end=8)
    for order in ([pending, done], [done, pending]):
        tree = an.assemble([sp("a", end=10), *order])
        assert tree.nodes["w"].span.end_ns == 8 * MS and not tree.nodes["w"].span.pending
        assert an.incomplete(tree) == []


def test_deep_chain_does_not_recurse():
    n = 5000
    spans = [sp(f"{i:x}", f"{i - 1:x}" if i else "", start=i, end=2 * n - i) for i in range(n)]
    a = an.analyse(spans)
    assert max(node.depth for node in a.tree.walk()) == n - 1
    assert a.critical_path[0].span_id == "0" and len(a.critical_path) == 2 * n - 1


# ----------------------------------------------------------------------------------- breaks


def test_break_names_the_span_and_service_on_each_side():
    spans = [
        sp("root", service="web", name="GET /checkout", kind=KIND_SERVER, end=100),
        sp("call", "root", service="web", name="POST /charge", kind=KIND_CLIENT, start=10, end=60),
        sp("late", "root", service="web", name="render", start=70, end=90),
        # the payments server span "lost" never arrived; its child did
        sp(
            "db",
            "lost",
            service="payments",
            name="INSERT charge",
            kind=KIND_CLIENT,
            start=20,
            end=40,
        ),
    ]
    (b,) = an.breaks(an.assemble(spans))
    assert b.kind == "missing_parent" and b.missing_span_id == "lost" and b.trace_id == T
    assert (b.before.service, b.before.span_id, b.before.name) == ("web", "call", "POST /charge")
    assert (b.after.service, b.after.span_id, b.after.name) == ("payments", "db", "INSERT charge")
    assert b.services == ("web", "payments")
    assert b.message == (
        "service 'web' span 'POST /charge' (client) -> service 'payments' span 'INSERT charge' (client): parent lost never arrived"
    )


def test_break_sender_can_be_a_producer_that_already_ended():
    spans = [
        sp("root", service="shop", end=10),
        sp(
            "send",
            "root",
            service="shop",
            name="orders publish",
            kind=KIND_PRODUCER,
            start=2,
            end=3,
        ),
        sp(
            "proc",
            "lost",
            service="worker",
            name="orders process",
            kind=KIND_CONSUMER,
            start=50,
            end=60,
        ),
    ]
    (b,) = an.breaks(an.assemble(spans))
    assert b.before.span_id == "send" and b.after.span_id == "proc"


def test_break_without_any_possible_sender_says_so():
    (b,) = an.breaks(an.assemble([sp("x", "lost", service="pay", name="charge")]))
    assert b.before is None and b.services == ("?", "pay")
    assert b.message.startswith(
        "(no span in this trace could have sent it) -> service 'pay' span 'charge'"
    )


def test_second_root_in_one_trace_is_a_break():
    spans = [
        sp("r1", service="a", end=100),
        sp("cl", "r1", service="a", kind=KIND_CLIENT, start=5, end=50),
        sp("r2", service="b", kind=KIND_SERVER, start=10, end=20),
    ]
    (b,) = an.breaks(an.assemble(spans))
    assert (b.kind, b.before.span_id, b.after.span_id) == ("extra_root", "cl", "r2")


def test_connected_trace_has_no_breaks():
    assert an.breaks(an.assemble([sp("a", end=9), sp("b", "a", start=1, end=2)])) == []


# ------------------------------------------------------------------------------- incomplete


@pytest.mark.parametrize("signal", [9, "SIGKILL"])  # the processes boundary writes the name
def test_pending_span_names_the_worker_death_reported_by_its_parent(signal):
    died = Event(50 * MS, WORKER_DIED, {"process.pid": 4242, "process.signal": signal})
    spans = [
        sp(
            "pool",
            service="jobs",
            name="pool.map",
            end=100,
            events=[died],
            resource={"process.pid": 1},
        ),
        sp(
            "task",
            "pool",
            service="jobs",
            name="crunch",
            start=5,
            end=5,
            attributes={PENDING: True},
            resource={"process.pid": 4242},
        ),
        sp(
            "other",
            "pool",
            service="jobs",
            name="crunch",
            start=6,
            end=6,
            attributes={PENDING: True},
            resource={"process.pid": 777},
        ),
    ]
    inc = an.incomplete(an.assemble(spans))
    assert [(i.span_id, i.pid, i.reported_by) for i in inc] == [
        ("task", 4242, "pool"),
        ("other", 777, ""),
    ]
    assert (
        inc[0].reason
        == "worker pid 4242 was killed by signal 9 (SIGKILL), seen by service 'jobs' span 'pool.map'"
    )
    assert inc[1].reason == "never ended: still running, or its worker died unseen"


def test_pending_span_with_exit_code():
    died = Event(1, WORKER_DIED, {"process.pid": 9, "process.exit_code": 3})
    spans = [
        sp("p", events=[died]),
        sp(
            "t",
            "p",
            start=1,
            end=1,
            attributes={PENDING: True},
            resource={"process.pid": 9},
        ),
    ]
    (i,) = an.incomplete(an.assemble(spans))
    assert i.reason.startswith("worker pid 9 exited with code 3")


# ---------------------------------------------------------------------------- critical path


def test_critical_path_follows_the_child_that_ends_last():
    # root 0..100; a 10..40 (with a1 15..35); b 30..90 ; c 95..99 (short tail)
    spans = [
        sp("root", end=100),
        sp("a", "root", start=10, end=40),
        sp("a1", "a", start=15, end=35),
        sp("b", "root", start=30, end=90),
        sp("c", "root", start=92, end=99),
    ]
    path = [
        (s.span_id, s.start_ns // MS, s.end_ns // MS) for s in an.critical_path(an.assemble(spans))
    ]
    assert path == [
        ("root", 0, 10),
        ("a", 10, 15),
        ("a1", 15, 30),
        ("b", 30, 90),
        ("root", 90, 92),
        ("c", 92, 99),
        ("root", 99, 100),
    ]


def test_critical_path_clamps_children_that_outlive_the_parent():
    spans = [sp("root", end=10), sp("async", "root", start=5, end=50, kind=KIND_PRODUCER)]
    path = [
        (s.span_id, s.start_ns // MS, s.end_ns // MS) for s in an.critical_path(an.assemble(spans))
    ]
    assert path == [("root", 0, 5), ("async", 5, 10)]


# ----------------------------------------------------------------------------- dependencies


def test_dependencies_count_calls_errors_and_messaging_links():
    t2 = "2" * 32
    spans = [
        sp("r", service="web", kind=KIND_SERVER, end=100),
        sp("c1", "r", service="web", kind=KIND_CLIENT, start=1, end=10),
        sp("s1", "c1", service="pay", kind=KIND_SERVER, start=2, end=9, status_code=STATUS_ERROR),
        sp("c2", "r", service="web", kind=KIND_CLIENT, start=11, end=20),
        sp("s2", "c2", service="pay", kind=KIND_SERVER, start=12, end=19),
        sp("in", "s2", service="pay", start=13, end=14),  # same service: no edge
        sp("pub", "r", service="web", kind=KIND_PRODUCER, start=30, end=31),
        # consumer in its own trace, linked to the producer
        sp(
            "con",
            service="mailer",
            kind=KIND_CONSUMER,
            start=40,
            end=45,
            trace=t2,
            links=[Link(T, "pub")],
        ),
        sp(
            "con2",
            service="mailer",
            kind=KIND_CONSUMER,
            start=46,
            end=47,
            trace=t2,
            links=[Link(T, "nowhere")],
        ),
    ]
    g = an.dependencies(spans)
    edges = {(e.parent, e.child, e.kind): (e.calls, e.errors, e.trace_ids) for e in g.edges}
    assert edges == {
        ("web", "pay", "call"): (2, 1, [T]),
        ("web", "mailer", "messaging"): (1, 0, [t2]),
    }
    assert {(n.service, n.spans, n.errors) for n in g.services} == {
        ("web", 4, 0),
        ("pay", 3, 1),
        ("mailer", 2, 0),
    }
    assert g.unresolved_links == 1


def test_producer_parent_of_consumer_is_a_messaging_edge():
    spans = [
        sp("p", service="a", kind=KIND_PRODUCER),
        sp("c", "p", service="b", kind=KIND_CONSUMER, start=20, end=30),
    ]
    assert [(e.parent, e.child, e.kind, e.calls) for e in an.dependencies(spans).edges] == [
        ("a", "b", "messaging", 1)
    ]


def test_link_edges_are_classified_as_the_store_classifies_them():
    from threadline.server.storage.duckdb import DuckDBStore

    other = "1" * 32

    def linked(n, service, kind, target_kind):
        span_id, target = f"{n:016x}", f"{n + 100:016x}"
        return [
            sp(target, service=f"src-{service}", kind=target_kind, trace=other),
            sp(span_id, service=service, kind=kind, links=[Link(other, target)]),
        ]

    spans = (
        linked(1, "to-producer", KIND_INTERNAL, KIND_PRODUCER)  # messaging
        + linked(2, "from-consumer", KIND_CONSUMER, KIND_INTERNAL)  # messaging
        + linked(3, "to-consumer", KIND_INTERNAL, KIND_CONSUMER)  # a plain link
        + linked(4, "from-producer", KIND_PRODUCER, KIND_INTERNAL)  # a plain link
    )
    graph = {(e.parent, e.child, e.kind) for e in an.dependencies(spans).edges}
    store = DuckDBStore()
    store.write(spans)
    stored = {(d.parent, d.child, d.kind) for d in store.dependencies(-1, 10**18)}
    assert (
        graph
        == stored
        == {
            ("src-to-producer", "to-producer", "messaging"),
            ("src-from-consumer", "from-consumer", "messaging"),
            ("src-to-consumer", "to-consumer", "link"),
            ("src-from-producer", "from-producer", "link"),
        }
    )


# ----------------------------------------------------------------------------- completeness


def test_completeness_shares_and_worst_broken_hops_with_examples():
    def trace(i, *, broken=False, pending=False):
        tid = f"{i:032x}"
        out = [
            sp("r", service="web", kind=KIND_SERVER, start=i * 1000, end=i * 1000 + 100, trace=tid)
        ]
        out.append(
            sp(
                "c",
                "r",
                service="web",
                kind=KIND_CLIENT,
                start=i * 1000 + 10,
                end=i * 1000 + 90,
                trace=tid,
            )
        )
        parent = "lost" if broken else "c"
        attrs = {PENDING: True} if pending else {}
        out.append(
            sp(
                "s",
                parent,
                service="pay",
                kind=KIND_SERVER,
                start=i * 1000 + 20,
                end=i * 1000 + 80,
                trace=tid,
                attributes=attrs,
            )
        )
        return out

    traces = [trace(0), trace(1, broken=True), trace(2, broken=True, pending=True), trace(3)]
    c = an.completeness(traces, start_ns=0, end_ns=4000 * MS, buckets=2)
    assert (c.traces, c.one_root, c.with_orphans, c.with_incomplete) == (4, 4, 2, 1)
    assert c.share(c.with_orphans) == 0.5
    (hop,) = c.broken_hops
    assert (hop.before, hop.after, hop.count, hop.trace_ids) == (
        "web",
        "pay",
        2,
        [f"{1:032x}", f"{2:032x}"],
    )
    assert [(b.traces, b.with_orphans, b.with_incomplete) for b in c.buckets] == [
        (2, 1, 0),
        (2, 1, 1),
    ]


def test_completeness_counts_traces_without_their_root():
    c = an.completeness([[sp("x", "lost")], [sp("a")]])
    assert (c.traces, c.one_root, c.with_orphans) == (2, 1, 1)


# ------------------------------------------------------------------------------- clock skew


def test_skew_is_off_by_default_and_reports_what_it_shifted_when_on():
    spans = [
        sp("r", service="web", kind=KIND_SERVER, end=100, resource={"host.name": "h1"}),
        sp(
            "c",
            "r",
            service="web",
            kind=KIND_CLIENT,
            start=10,
            end=50,
            resource={"host.name": "h1"},
        ),
        # the payments host's clock is 30 ms behind: its server span starts before the client
        sp(
            "s",
            "c",
            service="pay",
            kind=KIND_SERVER,
            start=-15,
            end=5,
            resource={"host.name": "h2"},
        ),
        sp("s1", "s", service="pay", start=-10, end=0, resource={"host.name": "h2"}),
    ]
    plain = an.analyse(spans)
    assert plain.shifts == [] and not plain.skew_adjusted
    assert plain.tree.nodes["s"].start_ns == -15 * MS

    fixed = an.analyse(spans, adjust_skew=True)
    (shift,) = fixed.shifts
    assert (shift.span_id, shift.service, shift.delta_ns, shift.spans_moved) == (
        "s",
        "pay",
        35 * MS,
        2,
    )
    assert (
        shift.reason
        == "started 25.000 ms before its parent started in service 'web'; moved later by 35.000 ms"
    )
    nodes = fixed.tree.nodes
    assert (nodes["s"].start_ns, nodes["s"].end_ns) == (20 * MS, 40 * MS)  # centred in 10..50
    assert (nodes["s1"].start_ns, nodes["s1"].end_ns) == (25 * MS, 35 * MS)
    assert spans[2].start_ns == -15 * MS  # the input is untouched


def test_skew_leaves_same_clock_and_async_children_that_start_later():
    spans = [
        sp("r", service="web", end=10),
        sp("in", "r", service="web", start=-5, end=20),  # same clock: never moved
        sp("p", "r", service="web", kind=KIND_PRODUCER, start=1, end=2),
        sp("c", "p", service="worker", kind=KIND_CONSUMER, start=50, end=60),  # after: fine
    ]
    assert an.adjust_clock_skew(spans)[1] == []


def test_skew_moves_events_with_their_span():
    h1, h2 = {"host.name": "h1"}, {"host.name": "h2"}
    spans = [
        sp("r", service="web", kind=KIND_SERVER, end=100, resource=h1),
        sp("c", "r", service="web", kind=KIND_CLIENT, start=10, end=50, resource=h1),
        sp("s", "c", service="pay", kind=KIND_SERVER, start=-15, end=5, resource=h2,
           events=[Event(-14 * MS, "accepted"), Event(4 * MS, "replied")]),
        sp("s1", "s", service="pay", start=-10, end=0, resource=h2,
           events=[Event(-5 * MS, "exception", {"exception.type": "Timeout"})]),
    ]  # fmt: skip
    moved, (shift,) = an.adjust_clock_skew(spans)
    assert shift.delta_ns == 35 * MS
    by_id = {s.span_id: s for s in moved}
    assert [(e.name, e.time_ns) for e in by_id["s"].events] == [
        ("accepted", 21 * MS),
        ("replied", 39 * MS),
    ]
    assert [(e.name, e.time_ns, e.attributes) for e in by_id["s1"].events] == [
        ("exception", 30 * MS, {"exception.type": "Timeout"})
    ]
    assert by_id["c"].events == [] and spans[2].events[0].time_ns == -14 * MS


def live_render(correction=-3_600_000 * MS):
    """A live page's render trace as the browser module and live.LiveSocket record it: the
    browser's spans already placed on the server's clock (times below are after correction)."""
    server = {"host.name": "app-1", "service.name": "shop", "telemetry.sdk.language": "python"}
    browser = {"service.name": "shop-browser", "telemetry.sdk.language": "webjs"}
    placed = {CLOCK_CORRECTION: correction, "threadline.clock.uncertainty_ns": 400_000}
    return [
        sp("get", service="shop", kind=KIND_SERVER, start=0, end=5, name="GET /", resource=server),
        # the navigation started before the request reached the server; the load ends later
        sp("load", "get", service="shop-browser", start=-3, end=40, name="page load",
           resource=browser, attributes=placed,
           events=[Event(-2 * MS, "requestStart"), Event(6 * MS, "responseEnd")]),
        # the page's script opens the socket after the render has ended
        sp("bconn", "get", service="shop-browser", kind=KIND_CLIENT, start=30, end=34,
           name="connect /live", resource=browser, attributes=placed),
        sp("sconn", "bconn", service="shop", kind=KIND_SERVER, start=31, end=33,
           name="connect /live", resource=server),
    ]  # fmt: skip


@pytest.mark.parametrize("correction", [-3_600_000 * MS, 0])
def test_skew_leaves_spans_the_browser_placed_on_the_server_clock(correction):
    spans = live_render(correction)
    moved, shifts = an.adjust_clock_skew(spans)
    assert shifts == []
    assert {s.span_id: (s.start_ns, s.end_ns, s.events) for s in moved} == {
        s.span_id: (s.start_ns, s.end_ns, s.events) for s in spans
    }
    view = an.analyse(spans, adjust_skew=True)
    assert view.skew_adjusted and view.shifts == []


def test_skew_treats_browser_to_server_hops_as_asynchronous():
    """Uncorrected browser spans (no clock estimate) outlive the render like any page load; one
    that starts before its parent is still moved."""
    spans = live_render()
    for s in spans:
        s.attributes.pop(CLOCK_CORRECTION, None)
    spans[2].start_ns, spans[2].end_ns = 2 * MS, 10 * MS  # outlives the render: async, kept
    moved, (shift,) = an.adjust_clock_skew(spans)
    assert (shift.span_id, shift.delta_ns, shift.spans_moved) == ("load", 3 * MS, 1)
    assert {s.span_id: s.start_ns for s in moved}["bconn"] == 2 * MS


def test_orphans_of_one_missing_parent_share_its_sender():
    spans = [
        sp("r", service="web", end=100),
        sp("cl", "r", service="web", kind=KIND_CLIENT, start=5, end=90),
        sp("x", "lost", service="pay", start=10, end=20),
        sp("y", "lost", service="pay", start=30, end=40),  # started after nothing else but cl
    ]
    found = [(b.before.span_id, b.after.span_id) for b in an.breaks(an.assemble(spans))]
    assert found == [("cl", "x"), ("cl", "y")]


def test_sender_search_is_bounded_and_says_so():
    orphans = [sp(f"x{i}", f"lost{i}", service="pay", start=10 + i, end=20 + i) for i in range(3)]
    tree = an.assemble([sp("root", service="web", end=100), *orphans])
    assert [b.before.span_id for b in an.breaks(tree)] == ["root", "root", "root"]
    limited = an.breaks(tree, search_budget=2)
    assert limited[0].before.span_id == "root"
    assert limited[1].before is None and limited[2].before is None
    assert limited[1].message.startswith(
        "(sender not searched: too many breaks in this trace) -> service 'pay'"
    )


def test_databases_and_external_services_are_nodes_with_calls_and_errors():
    from store_spans import peer_cases

    spans, _ = peer_cases(T, start=0)
    g = an.dependencies(spans)
    edges = {(e.parent, e.child, e.kind): (e.calls, e.errors, e.trace_ids) for e in g.edges}
    assert edges == {
        ("orders", "users", "external"): (1, 0, [T]),
        ("users", "api.example.net", "external"): (1, 0, [T]),
        ("users", "billing-db", "database"): (1, 0, [T]),
        ("users", "db-1:3306", "database"): (1, 0, [T]),
        ("users", "geo.Geo", "external"): (1, 0, [T]),
        ("users", "orders", "call"): (1, 0, [T]),
        ("users", "users_db", "database"): (2, 1, [T]),  # the completed twin failed
    }
    nodes = [(n.service, n.kind, n.system, n.spans, n.calls, n.errors) for n in g.services]
    assert nodes == [
        ("api.example.net", "external", "", 0, 1, 0),
        ("billing-db", "database", "postgresql", 0, 1, 0),
        ("db-1:3306", "database", "mysql", 0, 1, 0),
        ("geo.Geo", "external", "", 0, 1, 0),
        ("orders", "service", "", 3, 0, 0),
        ("users", "service", "", 10, 0, 1),  # called as a peer too: still a service
        ("users_db", "database", "postgresql", 0, 2, 1),
    ]
