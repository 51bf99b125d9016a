"""What the hostile single GETs of a query-cost attack cost `threadline serve`: each one against a
fresh server over a store of realistic spans, the server's added memory (peak RSS over its RSS
when ready) and the time to answer.

    python benchmarks/bench_hostile_queries.py [--spans 600000] [--db PATH]

The store is made once at --db (default under the system temp directory) and reused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(__file__))

GETS = [
    "/api/v3/traces?query.num_traces=1000000000000",
    "/api/v3/traces?query.num_traces=1500",
    "/api/threadline/analysis/dependencies?lookback=99999d",
    # the stored spans start in November 2023: a window of 360 days over them
    "/api/threadline/analysis/dependencies?start=1699990000000000&end=1731000000000000",
    "/api/traces?limit=1000000000000",
    "/api/traces?limit=1500",
]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def make_store(path: str, spans: int) -> None:
    from bench_serve_query import _fill
    from threadline.server.storage.duckdb import DuckDBStore

    store = DuckDBStore(path)
    _fill(store, spans)
    store.close()


def measure(db: str, get: str) -> dict:
    from threadline.server import spawn

    with spawn(db) as srv:
        pid = srv.proc.pid
        base = rss_kib(pid)
        t0 = time.perf_counter()
        try:
            resp = httpx.get(srv.urls.api + get, timeout=600)
            status, size = resp.status_code, len(resp.content)
        except httpx.HTTPError as exc:
            status, size = type(exc).__name__, 0
        seconds = time.perf_counter() - t0
        peak = rss_kib(pid, "VmHWM")
    return {
        "get": get,
        "status": status,
        "bytes": size,
        "added_mb": round((peak - base) / 1024),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=600_000)
    parser.add_argument("--db", default=None)
    parser.add_argument("--only", default=None, help="just the GETs holding this text")
    args = parser.parse_args()
    db = args.db or os.path.join(tempfile.gettempdir(), f"threadline-hostile-{args.spans}.duckdb")
    if not os.path.exists(db):
        print(f"making {args.spans} spans in {db} ...", flush=True)
        make_store(db, args.spans)
    for get in GETS:
        if args.only and args.only not in get:
            continue
        row = measure(db, get)
        print(
            f"{row['status']!s:>4}  +{row['added_mb']:>5} MB  {row['seconds']:>7.2f} s  "
            f"{row['bytes']:>11} B  {row['get']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
