"""tl.instrument() and the database drivers, against the machine's real PostgreSQL
(127.0.0.1:5432, database "test"), MariaDB (127.0.0.1:3306, database "test") and SQLite: each
query runs in a request served by a real server (uvicorn), and its CLIENT span is checked for
name, parent and attributes on the current conventions, literals taken out."""

from __future__ import annotations

import os
import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import threadline as tl
from local_services import require
from threadline.integrations import databases
from threadline.testing import hex_ids

SECRET = "card 4242"  # a literal written into the SQL: it never reaches a span
DB_KEYS = (
    "db.system.name",
    "db.namespace",
    "db.operation.name",
    "db.query.text",
    "server.address",
    "server.port",
)
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


@pytest.fixture
def instrumented(monkeypatch):
    """tl.instrument() for the test, undone after it (the opt-in variable too)."""
    monkeypatch.delenv(databases.OPT_IN, raising=False)
    tl.instrument(servers=False)
    yield
    tl.uninstrument()


def db_attributes(span) -> dict:
    return {k: span.attributes[k] for k in DB_KEYS if k in span.attributes}


def select_attributes(text: str, system: str = "postgresql", port: int = 5432) -> dict:
    """A SELECT's attributes on the current conventions, on the machine's "test" database."""
    return {
        "db.system.name": system,
        "db.namespace": "test",
        "db.operation.name": "SELECT",
        "db.query.text": text,
        "server.address": "127.0.0.1",
        "server.port": port,
    }


def assert_one_select(server, queries, text: str, system: str = "postgresql", port: int = 5432):
    """The request made one query: a SELECT CLIENT span under its server span."""
    assert [(s.name, s.kind, s.parent_id) for s in queries] == [
        ("SELECT", "CLIENT", server.span_id)
    ]
    assert db_attributes(queries[0]) == select_attributes(text, system, port)


def in_request(traces, serve_asgi, query):
    """GET /query on a Starlette app served by uvicorn, whose endpoint awaits ``query()``, from
    inside a "checkout" span. Returns (trace, the server span, the database CLIENT spans under
    it, in the order they started)."""

    async def endpoint(request):
        return JSONResponse({"rows": await query()})

    app = tl.instrument(Starlette(routes=[Route("/query", endpoint)]))
    with serve_asgi(app) as url:
        with tl.span("checkout") as root:
            r = httpx.get(f"{url}/query", timeout=30)
    assert r.status_code == 200, r.text
    trace_id, _ = hex_ids(root)
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    t = traces.trace(trace_id)
    t.assert_connected()
    server = t.find("GET /query")
    queries = sorted(
        (s for s in t if s.kind == "CLIENT" and "db.system.name" in s.attributes),
        key=lambda s: s.start_ns,
    )
    for s in queries:
        assert SECRET not in repr(s.attributes)
        assert "db.statement.parameters" not in s.attributes
    return t, server, queries, r.json()["rows"]


def test_psycopg_query_in_the_request_trace(traces, serve_asgi, instrumented):
    require(5432, "PostgreSQL")
    import psycopg

    async def query():
        with psycopg.connect(**POSTGRES) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT %s::int + 41 AS answer, '{SECRET}' AS note", (1,))
            return cur.fetchall()

    t, server, queries, rows = in_request(traces, serve_asgi, query)
    assert rows == [[42, SECRET]]
    assert_one_select(server, queries, "SELECT %s::int + ? AS answer, ? AS note")


def test_psycopg2_query_in_the_request_trace(traces, serve_asgi, instrumented):
    require(5432, "PostgreSQL")
    import psycopg2

    async def query():
        conn = psycopg2.connect(**POSTGRES)
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT %(n)s + 41 AS answer, '{SECRET}' AS note", {"n": 1})
            return cur.fetchall()
        finally:
            conn.close()

    t, server, queries, rows = in_request(traces, serve_asgi, query)
    assert rows == [[42, SECRET]]
    assert_one_select(server, queries, "SELECT %(n)s + ? AS answer, ? AS note")


def test_asyncpg_query_in_the_request_trace(traces, serve_asgi, instrumented):
    require(5432, "PostgreSQL")
    import asyncpg

    async def query():
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
        try:
            rows = await conn.fetch(f"SELECT $1::int + 41 AS answer, '{SECRET}' AS note", 1)
            return [list(r) for r in rows]
        finally:
            await conn.close()

    t, server, queries, rows = in_request(traces, serve_asgi, query)
    assert rows == [[42, SECRET]]
    assert_one_select(server, queries, "SELECT $1::int + ? AS answer, ? AS note")


def test_sqlalchemy_over_psycopg_in_the_request_trace(traces, serve_asgi, instrumented):
    """SQLAlchemy and the driver under it are both instrumented: each query is a span from
    each, side by side under the request (SQLAlchemy's span is not current while the driver's
    cursor runs). SQLAlchemy names its span after the operation and the database."""
    require(5432, "PostgreSQL")
    import sqlalchemy

    engine = sqlalchemy.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with engine.connect() as conn:  # the dialect's first-connect queries, outside the request
        conn.execute(sqlalchemy.text("SELECT 1"))

    async def query():
        with engine.connect() as conn:
            result = conn.execute(
                sqlalchemy.text(f"SELECT :n + 41 AS answer, '{SECRET}' AS note"), {"n": 1}
            )
            return [list(r) for r in result]

    try:
        t, server, queries, rows = in_request(traces, serve_asgi, query)
    finally:
        engine.dispose()
    assert rows == [[42, SECRET]]
    assert [(s.name, s.kind, s.parent_id, s.scope) for s in queries] == [
        ("connect", "CLIENT", server.span_id, "opentelemetry.instrumentation.sqlalchemy"),
        ("SELECT test", "CLIENT", server.span_id, "opentelemetry.instrumentation.sqlalchemy"),
        ("SELECT", "CLIENT", server.span_id, "opentelemetry.instrumentation.psycopg"),
    ]
    expected = select_attributes("SELECT %(n)s + ? AS answer, ? AS note")
    assert db_attributes(queries[1]) == db_attributes(queries[2]) == expected
    assert db_attributes(queries[0]) == {
        "db.system.name": "postgresql",
        "db.namespace": "test",
        "server.address": "127.0.0.1",
        "server.port": 5432,
    }


def test_pymysql_on_mariadb_in_the_request_trace(traces, serve_asgi, instrumented):
    require(3306, "MariaDB")
    import pymysql

    async def query():
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT %s + 41 AS answer, '{SECRET}' AS note", (1,))
                return [list(r) for r in cur.fetchall()]
        finally:
            conn.close()

    t, server, queries, rows = in_request(traces, serve_asgi, query)
    assert rows == [[42, SECRET]]
    # "mysql": what the contrib names MySQL and MariaDB alike
    assert_one_select(server, queries, "SELECT %s + ? AS answer, ? AS note", "mysql", 3306)


def test_sqlite3_queries_in_the_request_trace(traces, serve_asgi, instrumented, tmp_path):
    """SQLite has no server: the spans leave server.* out, and name the database after its
    file (orders.db: "orders"). Connection.execute (not a cursor's) is not traced by the
    contrib."""
    import sqlite3

    path = tmp_path / "orders.db"

    async def query():
        conn = sqlite3.connect(path)
        try:
            cur = conn.cursor()
            cur.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, price REAL)")
            cur.execute(f"INSERT INTO orders (item, price) VALUES ('{SECRET}', 9.5)")
            cur.execute("SELECT count(*) FROM orders WHERE price > ? AND id < 10", (1.0,))
            return cur.fetchall()
        finally:
            conn.close()

    t, server, queries, rows = in_request(traces, serve_asgi, query)
    assert rows == [[1]]
    assert [(s.name, s.kind, s.parent_id) for s in queries] == [
        ("CREATE", "CLIENT", server.span_id),
        ("INSERT", "CLIENT", server.span_id),
        ("SELECT", "CLIENT", server.span_id),
    ]
    assert [db_attributes(s) for s in queries] == [
        {
            "db.system.name": "sqlite",
            "db.namespace": "orders",
            "db.operation.name": "CREATE",
            "db.query.text": "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, price REAL)",
        },
        {
            "db.system.name": "sqlite",
            "db.namespace": "orders",
            "db.operation.name": "INSERT",
            "db.query.text": "INSERT INTO orders (item, price) VALUES (?, ?)",
        },
        {
            "db.system.name": "sqlite",
            "db.namespace": "orders",
            "db.operation.name": "SELECT",
            "db.query.text": "SELECT count(*) FROM orders WHERE price > ? AND id < ?",
        },
    ]


def test_an_in_memory_sqlite_database_has_no_name():
    assert databases.database_name(":memory:") is None
    assert databases.database_name("file:shop?mode=memory&cache=shared") is None
    assert databases.database_name("/var/lib/shop/users_db.sqlite") == "users_db"
    assert databases.database_name(b"orders.db") == "orders"
    assert databases.database_name("file:inventory_db.sqlite?mode=ro") == "inventory_db"


def test_uninstrument_stops_the_database_spans(traces, monkeypatch):
    import sqlite3

    monkeypatch.delenv(databases.OPT_IN, raising=False)
    tl.instrument(servers=False)
    assert os.environ[databases.OPT_IN] == "database"
    tl.uninstrument()
    assert databases.OPT_IN not in os.environ  # as it was
    with tl.span("after"):
        conn = sqlite3.connect(":memory:")
        conn.cursor().execute("SELECT 1")
        conn.close()
    assert [s.name for s in traces.settle(quiet=0.2)] == ["after"]


def test_opt_in_keeps_the_programs_own_choice(monkeypatch):
    monkeypatch.setenv(databases.OPT_IN, "http,database/dup")
    assert databases.opt_in() is None
    assert os.environ[databases.OPT_IN] == "http,database/dup"
    monkeypatch.setenv(databases.OPT_IN, "http")
    undo = databases.opt_in()
    assert os.environ[databases.OPT_IN] == "http,database"
    undo.uninstrument()
    assert os.environ[databases.OPT_IN] == "http"


@pytest.mark.parametrize(
    ("statement", "sanitised"),
    [
        ("SELECT * FROM t WHERE a = 'x' AND b = 2", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("select 'it''s', -3.5e2, $1, %s, %(n)s, :p, ?", "select ?, ?, $1, %s, %(n)s, :p, ?"),
        ('SELECT "Quoted Name", TRUE, NULL FROM "t"', 'SELECT "Quoted Name", TRUE, NULL FROM "t"'),
        ("UPDATE t SET a = 1 WHERE id IN (1, 2, 3)", "UPDATE t SET a = ? WHERE id IN (?, ?, ?)"),
    ],
)
def test_sanitise_takes_out_literals_only(statement, sanitised):
    assert databases.sanitise(statement) == sanitised


def test_normal_names_the_operation_and_the_server_on_the_current_conventions():
    got = databases.normal(
        {
            "db.query.text": "/* app */ select 1",
            "db.operation.name": "select users_db",
            "net.peer.name": "db.internal",
            "net.peer.port": 5432,
        }
    )
    assert got == {
        "db.query.text": "/* app */ select ?",
        "db.operation.name": "select",
        "server.address": "db.internal",
        "server.port": 5432,
    }


def test_without_sqlparse_the_query_text_is_left_off_and_counted(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sqlparse", None)  # import sqlparse now fails
    monkeypatch.setattr(databases, "dropped", {})
    monkeypatch.setattr(databases, "_told", [])
    databases.sanitise.cache_clear()
    try:
        got = databases.normal({"db.query.text": f"SELECT '{SECRET}'", "db.system.name": "sqlite"})
        again = databases.normal({"db.query.text": "SELECT 2"})
    finally:
        databases.sanitise.cache_clear()
    assert got == {"db.operation.name": "SELECT", "db.system.name": "sqlite"}
    assert again == {"db.operation.name": "SELECT"}
    assert databases.dropped == {"db.query.text": 2}
    warned = [r.getMessage() for r in caplog.records if r.name == "threadline"]
    assert len(warned) == 1 and warned[0].startswith("threadline: db.query.text left off the span")
