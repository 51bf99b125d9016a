"""Storage: where spans are kept and how they are found again.

Owns the Store interface and the one `supersede()` rule (base.py), the query language
(query.py), the engine-neutral table layout and rows (layout.py), and one module per engine
(duckdb.py, the default; clickhouse.py on the OpenTelemetry Collector's tables, with its
connections in clickhouse_connection.py). Engine SQL lives only in its engine's module.

May import: `threadline.server.model` and `threadline.semconv`. Never the decoders, ingest,
analysis or web (the OTLP decoders import layout.py to build rows, not the other way round).
Engines are imported on first use, by `open_store`.
"""

from __future__ import annotations

from threadline.server.storage.base import (
    Dependency,
    Store,
    StoreUnavailable,
    TraceSummary,
    supersede,
)
from threadline.server.storage.clickhouse_connection import StoreURLError
from threadline.server.storage.query import Filter, Query, parse_filter


def open_store(
    url: str | None = None,
    *,
    retention_ns: int | None = None,
    clickhouse_database: str | None = None,
    clickhouse_table: str = "otel_traces",
    clickhouse_cluster: str | None = None,
) -> Store:
    """The engine a --store URL names: `duckdb:PATH` (or a bare path, or ":memory:"; the
    default), `chdb:PATH` (ClickHouse embedded, a data directory) or
    `clickhouse://[user[:password]@]host[:port]/database`. A malformed URL raises StoreURLError
    naming the part at fault. `retention_ns` becomes the ClickHouse tables' TTL when threadline
    creates them (engines with `retention_by_ttl`); DuckDB ignores it (ingest deletes instead).
    The database defaults to the URL's, else "otel"."""
    url = url or ":memory:"
    scheme, sep, rest = url.partition(":")
    if not sep or scheme == "" or len(scheme) == 1 or url == ":memory:":
        scheme, rest = "duckdb", url  # a bare path (or a Windows drive letter)
    if scheme == "duckdb":
        from threadline.server.storage.duckdb import DuckDBStore

        if not rest:
            raise StoreURLError("--store duckdb: the path is missing (duckdb:PATH)")
        return DuckDBStore(rest)
    if scheme not in ("chdb", "clickhouse"):
        if "/" in scheme or "\\" in scheme:
            from threadline.server.storage.duckdb import DuckDBStore

            return DuckDBStore(url)  # a path with a colon in it
        raise StoreURLError(
            f"--store: unknown engine {scheme!r} (expected duckdb:PATH, chdb:PATH or "
            "clickhouse://host:port/database)"
        )
    from threadline.server.storage.clickhouse import ClickHouseStore
    from threadline.server.storage.clickhouse_connection import (
        ChdbConnection,
        Connection,
        HttpConnection,
        parse_clickhouse_url,
    )

    conn: Connection
    database = clickhouse_database
    if scheme == "chdb":
        if not rest or rest.startswith("//"):
            raise StoreURLError("--store chdb: the path is missing (chdb:PATH, a directory)")
        conn = ChdbConnection(rest)
    else:
        parsed = parse_clickhouse_url(url)
        database = database or parsed.database
        conn = HttpConnection(parsed)
    return ClickHouseStore(
        conn,
        database=database or "otel",
        table=clickhouse_table,
        cluster=clickhouse_cluster,
        ttl_ns=retention_ns,
    )


__all__ = [
    "Dependency",
    "Filter",
    "Query",
    "Store",
    "StoreURLError",
    "StoreUnavailable",
    "TraceSummary",
    "open_store",
    "parse_filter",
    "supersede",
]
