"""Databases and external services in the dependency graph: the naming rule, and a users service
whose CLIENT span wraps a real PostgreSQL query, read back through every view of the graph (the
analysis API, Jaeger's /api/dependencies, the terminal map and `threadline check`)."""

from __future__ import annotations

import psycopg
import pytest
from rich.console import Console

import threadline as tl
from threadline.cli import main
from threadline.report.render import dependency_map
from threadline.server import serving
from threadline.server.client import Client
from threadline.server.peers import DATABASE, EXTERNAL, KEYS, Peer, peer_of, span_peer

PG = "host=127.0.0.1 port=5432 user=postgres"


def texts(**attrs: str) -> list[str | None]:
    return [attrs.get(k.replace(".", "_")) for k in KEYS]


def test_naming_rule():
    assert peer_of(texts(db_system_name="postgresql", db_namespace="users_db")) == Peer(
        "users_db", DATABASE, "postgresql"
    )
    assert peer_of(texts(db_system="mysql", server_address="db", server_port="3306")) == Peer(
        "db:3306", DATABASE, "mysql"
    )
    assert peer_of(
        texts(db_system_name="redis", server_address="cache", peer_service="sessions")
    ) == Peer("sessions", DATABASE, "redis")
    # a database nothing names is not drawn; its address alone is no database either
    assert peer_of(texts(db_system_name="sqlite")) is None
    assert peer_of(texts(rpc_service="pay.Payments", server_address="pay")) == Peer(
        "pay.Payments", EXTERNAL
    )
    assert peer_of(texts(server_address="api.example.net")) == Peer("api.example.net", EXTERNAL)
    assert peer_of(texts(server_port="443")) is None
    assert peer_of([None] * len(KEYS)) is None
    # over spans: CLIENT only, and values as both stores give them back as text
    attrs = {"db.system.name": "postgresql", "server.address": "pg", "server.port": 5432}
    assert span_peer(3, attrs) == Peer("pg:5432", DATABASE, "postgresql")
    assert span_peer(2, attrs) is None
    assert span_peer(3, {"server.address": ["a", "b"]}) is None


def _postgres() -> psycopg.Connection:
    try:
        admin = psycopg.connect(PG + " dbname=postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc}); .ci/run starts it")
    with admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = 'users_db'").fetchone():
            admin.execute("CREATE DATABASE users_db")
    return psycopg.connect(PG + " dbname=users_db", connect_timeout=5)


@pytest.fixture(scope="module")
def shop():
    """A users service: a request whose CLIENT span runs a real query on users_db, and one
    whose query fails."""
    conn = _postgres()
    with serving.start() as srv:
        tl.configure("users", endpoint=srv.urls.otlp_http)
        db = {
            "db.system.name": "postgresql",
            "db.namespace": "users_db",
            "server.address": "127.0.0.1",
            "server.port": 5432,
        }
        try:
            with tl.span("GET /users/{id}", kind="server") as root:
                with tl.span("SELECT", {**db, "db.operation.name": "SELECT"}, kind="client"):
                    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
                with pytest.raises(psycopg.errors.UndefinedTable):
                    with tl.span("SELECT missing", db, kind="client"):
                        conn.execute("SELECT * FROM no_such_table")
            conn.rollback()
            assert tl.flush()  # acknowledged once stored
            srv.trace_id = format(root.get_span_context().trace_id, "032x")
            yield srv
        finally:
            tl.shutdown()
            conn.close()


def test_a_users_service_query_is_an_edge_to_users_db(shop):
    client = Client(shop.urls.api)
    graph = client.get("/api/threadline/analysis/dependencies", lookback="1h")
    assert [
        (e["parent"], e["child"], e["kind"], e["calls"], e["errors"]) for e in graph["edges"]
    ] == [("users", "users_db", "database", 2, 1)]
    assert graph["edges"][0]["trace_ids"] == [shop.trace_id]
    assert graph["services"] == [
        {"service": "users", "kind": "service", "spans": 3, "errors": 1},
        {"service": "users_db", "kind": "database", "spans": 0, "errors": 1,
         "system": "postgresql", "calls": 2},
    ]  # fmt: skip
    jaeger = client.get("/api/dependencies")
    assert jaeger["data"] == [{"parent": "users", "child": "users_db", "callCount": 2}]

    console = Console(width=100, record=True, color_system=None)
    console.print(dependency_map(graph))
    assert console.export_text().splitlines() == [
        "users",
        "└── users_db (postgresql database)  2 calls, 1 error",
        "errors to a database or external service: the caller's span ended in ERROR",
    ]


def test_check_lists_databases_and_external_services(shop, capsys):
    assert main(["check", "--server", shop.urls.api]) == 0
    out = capsys.readouterr().out.splitlines()
    start = [line.strip() for line in out].index("databases and external services")
    assert [line.strip() for line in out[start + 1 : start + 3]] == [
        "name      kind                 called by  calls  errors",
        "users_db  postgresql database  users          2       1",
    ]
