"""`threadline serve` queries with many realistic spans stored (10 services, trees of 1-500
spans, HTTP attributes), DuckDB and (with the clickhouse extra) chdb side by side in one run:
ingest per CPU-second, trace by id, Jaeger search returning 20 traces, a rare attribute value,
dependencies over an hour, bytes on disk per span.

1M spans by default; THREADLINE_BENCH_SPANS=10000000 for the 10M figures. A base of 100k spans
goes through the real write path (timed: the ingest rows); the rest are copies made inside each
engine with fresh trace and span ids, an hour later each (same layout, built in minutes). chdb
holds the collector's tables and threadline's table by trace id, filled by its view;
THREADLINE_BENCH_CHDB_SPANS sets its size apart.

Goals at 10M: trace by id <= 20 ms, searches <= 200 ms. Anchor: Jaeger on ClickHouse, 52k
spans/s on 4 cores, 101 ms by id and 1,769 ms for search."""

from __future__ import annotations

import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from serve_data import make_request

JAEGER_BY_ID_MS, JAEGER_SEARCH_MS = 101.0, 1769.0
JAEGER_INGEST_PER_CORE = 52_000 / 4
BASE = 100_000


def _write_base(store, total: int) -> tuple[int, float]:
    """Up to BASE spans through the receiver's path (protobuf decoded to columns, one commit per
    10k-span export): (spans written, CPU seconds of this process, every thread)."""
    from threadline.server.ingest.decode import decode_protobuf_export

    made, seed = 0, 0
    bodies = []
    while made < min(BASE, total):
        n = min(10_000, min(BASE, total) - made)
        start = 1_700_000_000_000_000_000 + seed * 600 * 10**9
        bodies.append(make_request(n, seed=seed, start_ns=start).SerializeToString())
        made += n
        seed += 1
    cpu = time.process_time()
    for body in bodies:
        store.write_columns([decode_protobuf_export(body).columns])
    return made, time.process_time() - cpu


def _fill(store, total: int) -> float:
    """BASE spans through the real write path, then copies made by DuckDB (fresh trace and span
    ids, an hour later each). Returns the CPU seconds of the write path."""
    made, cpu = _write_base(store, total)
    store.merge()  # the copies below are made from the table
    copies = (total - made + made - 1) // made
    base_traces = store._rows("SELECT count(*) FROM traces")[0][0]
    for k in range(1, copies + 1):  # one copy at a time keeps each trace's rows together
        store._con.execute(
            f"""INSERT INTO spans SELECT * REPLACE (
                xor(tid_hi, {k * 7919}) AS tid_hi, xor(tid_lo, {k}) AS tid_lo,
                xor(span_id, {k}) AS span_id, xor(parent_id, {k}) AS parent_id,
                start_ns + {k * 3600 * 10**9} AS start_ns)
            FROM spans WHERE rowid < {made}"""
        )
        store._con.execute(
            f"""INSERT INTO traces SELECT xor(tid_hi, {k * 7919}), xor(tid_lo, {k}),
                first_ns + {k * 3600 * 10**9}, last_ns + {k * 3600 * 10**9}
            FROM traces WHERE rowid < {base_traces}"""
        )
    store._con.execute(f"DELETE FROM spans WHERE rowid >= {total}")  # exactly `total` spans
    store.checkpoint()
    return cpu


def _timed(fn, runs: int) -> tuple[float, float, float]:
    """(median CPU ms, median wall ms, p95 wall ms). With DuckDB on one thread the CPU time is
    the query's work on one core, which a busy shared machine does not inflate the way it
    inflates wall time."""
    fn()  # warm
    cpu, wall = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    wall.sort()
    return statistics.median(cpu), statistics.median(wall), wall[max(0, int(len(wall) * 0.95) - 1)]


def _row(name: str, timing: tuple[float, float, float], baseline: float, goal: str) -> dict:
    cpu, wall, p95 = timing
    return {
        "name": name,
        "value": cpu,
        "unit": "ms (1 core)",
        "baseline": baseline,
        "ratio_to": "Jaeger/ClickHouse",
        "note": f"goal {goal}; wall median {wall:.1f} ms, p95 {p95:.1f} ms at load {os.getloadavg()[0]:.1f}",
    }


def run() -> list[dict]:
    from threadline.server.storage import Query, parse_filter
    from threadline.server.storage.duckdb import DuckDBStore

    total = int(os.environ.get("THREADLINE_BENCH_SPANS", "1000000"))
    label = f"{total / 1e6:g}M"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.duckdb")
        store = DuckDBStore(path)
        started = time.perf_counter()
        ingest_cpu = _fill(store, total)
        stored = store.stats()
        build_s = time.perf_counter() - started
        rows.append(_ingest_row("duckdb", min(BASE, total), ingest_cpu))
        rng = random.Random(7)
        sample = store._rows(
            "SELECT tid_hi, tid_lo, count(*) FROM spans GROUP BY 1, 2 ORDER BY random() LIMIT 200"
        )
        ids = [
            format(h & (2**64 - 1), "016x") + format(lo & (2**64 - 1), "016x")
            for h, lo, _ in sample
        ]
        sizes = {
            format(h & (2**64 - 1), "016x") + format(lo & (2**64 - 1), "016x"): c
            for h, lo, c in sample
        }

        store._con.execute("SET threads = 1")
        avg_spans = statistics.mean(sizes.values())
        rows.append(
            _row(
                f"trace by id, {label} spans stored ({avg_spans:.0f} spans/trace avg)",
                _timed(lambda: store.get_trace(rng.choice(ids)), 50),
                JAEGER_BY_ID_MS,
                "20 ms",
            )
        )
        big = max(sizes, key=sizes.get)
        rows.append(
            _row(
                f"trace by id, largest sampled trace ({sizes[big]} spans)",
                _timed(lambda: store.get_trace(big), 10),
                JAEGER_BY_ID_MS,
                "20 ms",
            )
        )

        last = store._rows("SELECT max(start_ns) FROM spans")[0][0]
        # a user.id that is stored (each base value recurs once per copy): a rare value, found
        rare = store._rows(
            "SELECT json_extract_string(attributes, '$.\"user.id\"') FROM spans "
            "WHERE attributes IS NOT NULL LIMIT 1 OFFSET 4242"
        )[0][0]
        searches = {
            **_searches(store, last, rare),
            "attribute search: numeric range OR": lambda: store.search(
                Query(
                    filters=[
                        parse_filter("http.status_code>=500 OR duration_bucket<0.001"),
                        parse_filter("resource:host.name=auth-7f9c"),
                    ],
                    limit=20,
                )
            ),
        }
        for name, fn in searches.items():
            rows.append(_row(f"{name}, {label}", _timed(fn, 7), JAEGER_SEARCH_MS, "200 ms"))
        rows.append(
            _row(
                f"dependencies over an hour, {label}",
                _timed(lambda: store.dependencies(last - 3600 * 10**9, last + 1), 3),
                JAEGER_SEARCH_MS,
                "200 ms",
            )
        )
        rows += _unmerged_rows(store, last, rare, label)
        rows.append(
            {
                "name": f"bytes on disk per span ({label})",
                "value": stored["bytes_on_disk"] / stored["spans"],
                "unit": "B",
                "note": f"{stored['spans']:,} spans, built in {build_s:.0f}s",
            }
        )
        store.close()
    if importlib.util.find_spec("chdb") is not None:
        chdb_total = int(os.environ.get("THREADLINE_BENCH_CHDB_SPANS", str(total)))
        rows += _chdb_rows(chdb_total)
    return rows


def _unmerged_rows(store, last: int, rare: str, label: str) -> list[dict]:
    """The same reads with the unmerged window full (MAX_UNMERGED_SPANS spans written after the
    rest, not merged yet): what a read pays for spans acknowledged but not yet in the table."""
    from threadline.server.ingest.decode import decode_protobuf_export
    from threadline.server.storage import Query
    from threadline.server.storage.duckdb import MAX_UNMERGED_SPANS

    store.merge_spans, store.merge_after_s = 10**12, 10**9  # held unmerged while timed
    seed = 500
    while store.stats()["unmerged_spans"] + 10_000 <= MAX_UNMERGED_SPANS:
        body = make_request(10_000, seed=seed, start_ns=last + seed * 10**9).SerializeToString()
        store.write_columns([decode_protobuf_export(body).columns])
        seed += 1
    window = f"{store.stats()['unmerged_spans'] // 1000}k unmerged"
    fresh = store.find_trace_ids(Query(limit=1))  # the most recent trace: an unmerged one
    newest = store._rows("SELECT max(start_ns) FROM spans")[0][0]
    rows = [
        _row(
            f"trace by id, {label} + {window} (an unmerged trace)",
            _timed(lambda: store.get_trace(fresh[0]), 20),
            JAEGER_BY_ID_MS,
            "20 ms",
        )
    ]
    for name, fn in _searches(store, newest, rare).items():
        rows.append(_row(f"{name}, {label} + {window}", _timed(fn, 5), JAEGER_SEARCH_MS, "200 ms"))
    store.merge()
    return rows


def _searches(store, last: int, rare: str) -> dict:
    """The searches every engine is timed on: Jaeger's by service and tag over the last hour and
    over all time, and a rare attribute value."""
    from threadline.server.storage import Query, parse_filter

    tag = parse_filter("http.status_code=500")
    return {
        "Jaeger search, last hour: service + tag, 20 traces": lambda: store.find_traces(
            Query(
                service="payments",
                filters=[tag],
                start_ns=last - 3600 * 10**9,
                end_ns=last + 1,
                limit=20,
            )
        ),
        "Jaeger search, all time: service + tag, 20 traces": lambda: store.find_traces(
            Query(service="payments", filters=[tag], limit=20)
        ),
        "attribute search: rare value (user.id=)": lambda: store.search(
            Query(filters=[parse_filter(f"user.id={rare}")], limit=20)
        ),
    }


def _ingest_row(engine: str, spans: int, cpu_s: float) -> dict:
    return {
        "name": f"{engine}: ingest 10k-span exports (decode + write), {spans:,} spans",
        "value": spans / cpu_s,
        "unit": "spans/CPU-s",
        "baseline": JAEGER_INGEST_PER_CORE,
        "ratio_to": "Jaeger/ClickHouse per core",
        "note": "CPU of every thread of this process",
    }


def _fill_chdb(store, total: int) -> float:
    """BASE spans through the store's own insert, then copies made by ClickHouse from a snapshot
    of them (fresh trace and span ids, an hour later each, as `_fill` makes for DuckDB), each
    copied into threadline's table by trace id by its view as any insert is. Returns the CPU
    seconds of the write path."""
    made, cpu = _write_base(store, total)
    conn, t = store._conn, store._t
    base = f"{store.database}.bench_base"
    conn.execute(f"CREATE TABLE {base} ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM {t}")
    base_n = made
    k = 1
    while made < total:
        n = min(base_n, total - made)
        conn.execute(
            f"INSERT INTO {t} SELECT * REPLACE ("
            f"concat('{k:06x}', substring(TraceId, 7)) AS TraceId, "
            f"concat('{k:04x}', substring(SpanId, 5)) AS SpanId, "
            f"if(ParentSpanId = '', '', concat('{k:04x}', substring(ParentSpanId, 5))) "
            f"AS ParentSpanId, Timestamp + toIntervalSecond({k * 3600}) AS Timestamp) "
            f"FROM {base} LIMIT {n}"
        )
        made += n
        k += 1
    conn.execute(f"DROP TABLE {base}")
    for table in (t, store._by_trace):  # what background merges come to, at once
        conn.execute(f"OPTIMIZE TABLE {table} FINAL")
    return cpu


def _chdb_rows(total: int) -> list[dict]:
    from threadline.server.storage import open_store

    label = f"{total / 1e6:g}M"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"chdb:{os.path.join(tmp, 'ch')}")
        started = time.perf_counter()
        ingest_cpu = _fill_chdb(store, total)
        build_s = time.perf_counter() - started
        stored = store.stats()
        rows.append(_ingest_row("chdb", min(BASE, total), ingest_cpu))
        conn, t = store._conn, store._t
        sample = conn.rows(
            f"SELECT TraceId, count() FROM {t} GROUP BY TraceId ORDER BY rand() LIMIT 200"
        )
        ids = [r[0] for r in sample]
        rng = random.Random(7)
        rows.append(
            _row(
                f"chdb: trace by id, {label} spans ({statistics.mean(r[1] for r in sample):.0f} "
                "spans/trace avg)",
                _timed(lambda: store.get_trace(rng.choice(ids)), 30),
                JAEGER_BY_ID_MS,
                "20 ms",
            )
        )
        last = conn.rows(f"SELECT toUnixTimestamp64Nano(max(Timestamp)) FROM {t}")[0][0]
        rare = conn.rows(f"SELECT SpanAttributes['user.id'] FROM {t} LIMIT 1 OFFSET 4242")[0][0]
        searches = {
            **{f"chdb: {name}": fn for name, fn in _searches(store, last, rare).items()},
            "chdb: dependencies over an hour": lambda: store.dependencies(
                last - 3600 * 10**9, last + 1
            ),
        }
        for name, fn in searches.items():
            rows.append(_row(f"{name}, {label}", _timed(fn, 5), JAEGER_SEARCH_MS, "200 ms"))
        rows.append(
            {
                "name": f"chdb: bytes on disk per span ({label})",
                "value": stored["bytes_on_disk"] / stored["spans"],
                "unit": "B",
                "note": f"{stored['spans']:,} spans, built in {build_s:.0f}s",
            }
        )
        store.close()
    return rows
