"""`threadline serve` ingest: OTLP protobuf export batches (1k and 10k realistic spans) decoded
and durably committed to the DuckDB file, on one core (DuckDB limited to one thread).

Goal: >= 250k spans/s. Anchor: Jaeger on ClickHouse, 52k spans/s on 4 cores (13k per core).
Rows: the store path (decode + commit, no HTTP) and the full HTTP path (POST /v1/traces to a
running server, answered after commit); with the clickhouse extra, the same into chdb (the
collector's tables, embedded ClickHouse, using its own threads). The figure is spans per CPU-second of this process with
DuckDB on one thread, i.e. on one core, which stays meaningful on a shared, busy machine; the
wall-clock rate is in the note."""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from serve_data import make_request

GOAL = 250_000
JAEGER_PER_CORE = 52_000 / 4


def _store_path(n: int, rounds: int, part: str = "all") -> tuple[float, float]:
    """Spans per CPU-second and per second through decode ("decode"), the store alone
    ("store"), or both ("all"). Enough rounds that DuckDB checkpoints its WAL into the file
    along the way, and a last checkpoint inside the timing: the cost of keeping spans, not only
    of acknowledging them."""
    from threadline.server.ingest.decode import decode_protobuf_export
    from threadline.server.storage.duckdb import DuckDBStore

    bodies = [make_request(n, seed=i).SerializeToString() for i in range(rounds)]
    decoded = [decode_protobuf_export(b).columns for b in bodies] if part == "store" else None
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(os.path.join(tmp, "bench.duckdb"))
        store._con.execute("SET threads = 1")
        warm = make_request(100, seed=999).SerializeToString()
        store.write_columns([decode_protobuf_export(warm).columns])
        wall, cpu = time.perf_counter(), time.process_time()
        for i, body in enumerate(bodies):  # what the receiver does: protobuf to columns, commit
            columns = decoded[i] if decoded else decode_protobuf_export(body).columns
            if part != "decode":
                store.write_columns([columns])
        if part != "decode":
            store._con.execute("CHECKPOINT")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        store.close()
    return n * rounds / cpu, n * rounds / wall


def _chdb_path(n: int, rounds: int, part: str = "all") -> tuple[float, float]:
    """Spans per CPU-second (every thread of this process: chdb runs inside it) and per second
    into the collector's tables on embedded ClickHouse: decode + insert ("all") or the insert
    alone ("store"), each insert acknowledged once stored, with the work of both views (the
    collector's lookup and threadline's table by trace id)."""
    from threadline.server.ingest.decode import decode_protobuf_export
    from threadline.server.storage import open_store

    bodies = [make_request(n, seed=i).SerializeToString() for i in range(rounds)]
    decoded = [decode_protobuf_export(b).columns for b in bodies] if part == "store" else None
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"chdb:{os.path.join(tmp, 'ch')}")
        store.write_columns(
            [decode_protobuf_export(make_request(100, seed=999).SerializeToString()).columns]
        )
        wall, cpu = time.perf_counter(), time.process_time()
        for i, body in enumerate(bodies):
            store.write_columns([decoded[i] if decoded else decode_protobuf_export(body).columns])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        store.close()
    return n * rounds / cpu, n * rounds / wall


def _http_path(n: int, rounds: int) -> tuple[float, float]:
    import httpx

    from threadline import server

    bodies = [make_request(n, seed=100 + i).SerializeToString() for i in range(rounds)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        server.start(db=os.path.join(tmp, "bench.duckdb")) as srv,
    ):
        srv.store._con.execute("SET threads = 1")
        with httpx.Client(base_url=srv.urls.otlp_http, timeout=120) as client:
            headers = {"content-type": "application/x-protobuf"}
            client.post(
                "/v1/traces",
                content=make_request(100, seed=998).SerializeToString(),
                headers=headers,
            )
            wall, cpu = time.perf_counter(), time.process_time()
            for body in bodies:
                assert client.post("/v1/traces", content=body, headers=headers).status_code == 200
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n * rounds / cpu, n * rounds / wall


def run() -> list[dict]:
    import os as _os

    def row(name: str, rates: tuple[float, float]) -> dict:
        cpu, wall = rates
        return {
            "name": name,
            "value": cpu,
            "unit": "spans/CPU-s",
            "baseline": JAEGER_PER_CORE,
            "ratio_to": "Jaeger/ClickHouse per core",
            "note": f"goal {GOAL:,}: {cpu / GOAL:.2f}x; wall {wall:,.0f} spans/s at load {_os.getloadavg()[0]:.1f}",
        }

    return [
        row("ingest 1k-span batches: decode + commit + checkpoint", _store_path(1_000, 100)),
        row("ingest 10k-span batches: decode + commit + checkpoint", _store_path(10_000, 10)),
        row("  of which decode (protobuf -> Arrow columns)", _store_path(10_000, 10, "decode")),
        row("  of which DuckDB (commit + checkpoint)", _store_path(10_000, 10, "store")),
        row("ingest 10k-span batches over OTLP/HTTP, ack after commit", _http_path(10_000, 4)),
        *(
            [
                row("chdb: ingest 10k-span batches: decode + insert", _chdb_path(10_000, 10)),
                row("  of which chdb (the collector's tables)", _chdb_path(10_000, 10, "store")),
            ]
            if _has_chdb()
            else []
        ),
    ]


def _has_chdb() -> bool:
    import importlib.util

    return importlib.util.find_spec("chdb") is not None
