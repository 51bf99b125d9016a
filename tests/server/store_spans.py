"""Spans for the store tests: one signature every engine's tests build their rows with."""

from threadline.server.model import Span

T1, T2 = "ab" * 16, "0f" * 16


def span(
    trace_id=T1, span_id="cd" * 8, parent="", name="op", service="a", start=1_000, end=2_000, **kw
):
    return Span(
        trace_id,
        span_id,
        parent,
        name,
        kw.pop("kind", 2),
        start,
        end,
        service,
        resource={"service.name": service, **kw.pop("resource", {})},
        **kw,
    )


def peer_cases(trace_id: str = T1, start: int = 1_000) -> tuple[list[Span], list[tuple]]:
    """CLIENT spans that name (or do not name) a database or external service, and the
    (parent, child, kind, calls) edges they make: the store contract and the analysis read the
    same rule (`threadline.server.peers`). One span of each case."""
    pending = {"threadline.pending": True}
    pg = {"db.system.name": "postgresql", "db.namespace": "users_db", "server.address": "10.0.0.5"}

    def s(sid, parent, service, kind, attributes=None, **kw):
        return span(trace_id, f"{sid:016x}", f"{parent:016x}" if parent else "", service=service,
                    kind=kind, start=start + sid, end=start + sid + 1,
                    attributes=attributes or {}, **kw)  # fmt: skip

    spans = [
        s(1, 0, "users", 2),
        # the case, announced (pending) and then completed: one call to users_db
        s(2, 1, "users", 3, {**pg, **pending}),
        s(2, 1, "users", 3, pg, status_code=2),
        # the older db.system, no namespace: named by the address and port
        s(3, 1, "users", 3, {"db.system": "mysql", "server.address": "db-1", "server.port": 3306}),
        # an ORM span around its driver's: only the leaf (the driver's) is the call
        s(4, 1, "users", 3, pg),
        s(5, 4, "users", 3, pg),
        # peer.service names the peer, even a database
        s(6, 1, "users", 3, {**pg, "peer.service": "billing-db"}),
        # gRPC to an uninstrumented peer: rpc.service before the address
        s(
            7,
            1,
            "users",
            3,
            {"rpc.service": "geo.Geo", "server.address": "geo", "server.port": 50051},
        ),
        # HTTP to an uninstrumented host, and to an instrumented one (its SERVER span answers)
        s(8, 1, "users", 3, {"server.address": "api.example.net"}),
        s(9, 1, "users", 3, {"server.address": "orders", "server.port": 8000}),
        s(10, 9, "orders", 2),
        # no node: a database without namespace or address, a SERVER span naming a peer
        s(11, 1, "users", 3, {"db.system.name": "sqlite"}),
        s(12, 10, "orders", 2, {"peer.service": "ghost"}),
        # a peer named as a known service joins that service's node
        s(13, 10, "orders", 3, {"peer.service": "users"}),
    ]
    edges = [
        ("orders", "users", "external", 1),
        ("users", "api.example.net", "external", 1),
        ("users", "billing-db", "database", 1),
        ("users", "db-1:3306", "database", 1),
        ("users", "geo.Geo", "external", 1),
        ("users", "orders", "call", 1),
        ("users", "users_db", "database", 2),
    ]
    return spans, edges
