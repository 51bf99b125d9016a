"""`threadline serve` ingest: OTLP protobuf export batches (1k and 10k realistic spans) decoded
and durably committed to the DuckDB file, on one core (DuckDB limited to one thread).

Goal: >= 250k spans/s. Anchor: Jaeger on ClickHouse, 52k spans/s on 4 cores (13k per core).
Rows: the store path (decode + commit, no HTTP) and the full HTTP path (POST /v1/traces to a
running server, answered after commit)."""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from serve_data import make_request  # noqa: E402

GOAL = 250_000
JAEGER_PER_CORE = 52_000 / 4


def _store_path(n: int, rounds: int) -> float:
    from threadline.server.duckdb_store import DuckDBStore
    from threadline.server.otlp import decode_protobuf

    bodies = [make_request(n, seed=i).SerializeToString() for i in range(rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(os.path.join(tmp, "bench.duckdb"))
        store._con.execute("SET threads = 1")
        store.write(decode_protobuf(make_request(100, seed=999).SerializeToString()).spans)  # warm
        started = time.perf_counter()
        for body in bodies:
            store.write(decode_protobuf(body).spans)
        elapsed = time.perf_counter() - started
        store.close()
    return n * rounds / elapsed


def _http_path(n: int, rounds: int) -> float:
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
            started = time.perf_counter()
            for body in bodies:
                assert client.post("/v1/traces", content=body, headers=headers).status_code == 200
            elapsed = time.perf_counter() - started
    return n * rounds / elapsed


def run() -> list[dict]:
    rows = []
    for n, rounds in ((1_000, 20), (10_000, 4)):
        rate = _store_path(n, rounds)
        rows.append(
            {
                "name": f"ingest {n // 1000}k-span batches: decode + commit",
                "value": rate,
                "unit": "spans/s",
                "baseline": JAEGER_PER_CORE,
                "ratio_to": "Jaeger/ClickHouse per core",
                "note": f"goal {GOAL:,}: {rate / GOAL:.2f}x",
            }
        )
    rate = _http_path(10_000, 4)
    rows.append(
        {
            "name": "ingest 10k-span batches over OTLP/HTTP, ack after commit",
            "value": rate,
            "unit": "spans/s",
            "baseline": JAEGER_PER_CORE,
            "ratio_to": "Jaeger/ClickHouse per core",
            "note": f"goal {GOAL:,}: {rate / GOAL:.2f}x",
        }
    )
    return rows
