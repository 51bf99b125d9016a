"""Storage: where spans are kept and how they are found again.

Owns the Store interface and the one `supersede()` rule (base.py), the query language
(query.py), the engine-neutral table layout and rows (layout.py), and one module per engine
(duckdb.py; a ClickHouse engine goes beside it). Engine SQL lives only in its engine's module.

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
from threadline.server.storage.query import Filter, Query, parse_filter


def open_store(db: str | None = None) -> Store:
    """The default engine for a path (or ":memory:")."""
    from threadline.server.storage.duckdb import DuckDBStore

    return DuckDBStore(db or ":memory:")


__all__ = [
    "Dependency",
    "Filter",
    "Query",
    "Store",
    "StoreUnavailable",
    "TraceSummary",
    "open_store",
    "parse_filter",
    "supersede",
]
