"""The ClickHouse engine on the collector's tables: values in the exporter's forms, rows the
collector wrote read everywhere, the DDL (cluster, TTL), a foreign layout refused, bad URLs."""

import subprocess
import sys
import threading
import time

import httpx
import pytest

from threadline.server.model import Event, Link, Span
from threadline.server.storage import StoreUnavailable, StoreURLError, open_store

pytest.importorskip("chdb")

from threadline.server.storage.clickhouse import (
    LayoutMismatch,
    as_string,
    create_statements,
    ttl_expr,
    typed,
)
from threadline.server.storage.clickhouse_connection import (
    ChdbConnection,
    parse_clickhouse_url,
    redact,
)

T1, T2 = "ab" * 16, "0f" * 16
NOW = time.time_ns()


@pytest.fixture
def ch(tmp_path):
    s = open_store(f"chdb:{tmp_path / 'ch'}")
    yield s
    s.close()


def test_values_are_written_as_the_exporter_writes_them(ch):
    ch.write(
        [
            Span(
                T1, "cd" * 8, "ef" * 8, "GET /", 2, 1_000, 3_500, "api", 2, "boom",
                {"i": 42, "d": 2.5, "whole": 2.0, "b": True, "by": b"\x00\xff", "arr": [1, "x"],
                 "kv": {"z": 1, "a": [True]}, "s": "42", "threadline.pending": False},
                {"service.name": "api", "host.name": "h"}, "lib", "1.2", {},
                [Event(2_000, "exception", {"exception.message": "m"}, 3)],
                [Link(T2, "11" * 8, "k=v", {"n": 1}, 0, 1)],
            )
        ]
    )  # fmt: skip
    [row] = ch._conn.rows(
        "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ParentSpanId, SpanName, "
        "SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, "
        "Duration, StatusCode, StatusMessage, arrayMap(t -> toUnixTimestamp64Nano(t), "
        "Events.Timestamp), Events.Name, Events.Attributes, Links.TraceId, Links.SpanId, "
        "Links.TraceState, Links.Attributes FROM otel.otel_traces"
    )
    assert row == [
        1_000, T1, "cd" * 8, "ef" * 8, "GET /", "SPAN_KIND_SERVER", "api",
        {"service.name": "api", "host.name": "h"}, "lib", "1.2",
        {"i": "42", "d": "2.5", "whole": "2", "b": "true", "by": "AP8=", "arr": '[1,"x"]',
         "kv": '{"a":[true],"z":1}', "s": "42", "threadline.pending": "false"},
        2_500, "STATUS_CODE_ERROR", "boom", [2_000], ["exception"],
        [{"exception.message": "m", "threadline.dropped": "3"}], [T2], ["11" * 8], ["k=v"],
        [{"n": "1", "threadline.flags": "1"}],
    ]  # fmt: skip
    # the lookup table the view fills
    assert ch._conn.rows("SELECT TraceId FROM otel.otel_traces_trace_id_ts") == [[T1]]
    # read back: types where the text tells them; what the string layout loses
    [got] = ch.get_trace(T1)
    assert got.attributes == {
        "i": 42, "d": 2.5, "whole": 2, "b": True, "by": "AP8=", "arr": [1, "x"],
        "kv": {"a": [True], "z": 1}, "s": 42, "threadline.pending": False,
    }  # fmt: skip
    assert (got.kind, got.status_code, got.end_ns, got.events[0].dropped_attributes_count) == (
        2,
        2,
        3_500,
        3,
    )
    assert (got.links[0].flags, got.links[0].attributes) == (1, {"n": 1})


def test_string_forms_follow_pdata():
    assert [as_string(v) for v in (1e21, 1e-7, -0.0, float("inf"), float("nan"), None)] == [
        "1000000000000000000000",
        "0.0000001",
        "0",
        "+Inf",
        "NaN",
        "",
    ]
    assert [typed(s) for s in ("007", "1.50", "-3", "2" * 30, "[oops", "+Inf")] == [
        "007",
        1.5,
        -3,
        "2" * 30,
        "[oops",
        float("inf"),
    ]


def _insert_as_the_collector_does(conn: ChdbConnection) -> None:
    """Rows in the exporter's forms, through plain SQL: what a collector would have written."""
    t0 = NOW - 60_000_000_000
    rows = [
        # (start offset ms, trace, span, parent, name, kind, service, attrs, dur ms, status, links)
        (0, T1, "01" * 8, "", "GET /checkout", "SPAN_KIND_SERVER", "frontend",
         "{'http.response.status_code': '200', 'user': 'ann'}", 120, "STATUS_CODE_UNSET", ""),
        (10, T1, "02" * 8, "01" * 8, "charge", "SPAN_KIND_CLIENT", "frontend",
         "{'retries': '3'}", 50, "STATUS_CODE_ERROR", ""),
        (15, T1, "03" * 8, "02" * 8, "POST /charge", "SPAN_KIND_SERVER", "payments",
         "{'amount': '12.5'}", 40, "STATUS_CODE_ERROR", ""),
        (20, T1, "04" * 8, "01" * 8, "publish", "SPAN_KIND_PRODUCER", "frontend", "{}", 1,
         "STATUS_CODE_UNSET", ""),
        (30, T2, "05" * 8, "", "process", "SPAN_KIND_CONSUMER", "mailer", "{}", 5,
         "STATUS_CODE_OK", f"'{T1}'|'{'04' * 8}'"),
    ]  # fmt: skip
    values = []
    for off, tid, sid, pid, name, kind, svc, attrs, dur, status, link in rows:
        lt, ls = link.split("|") if link else ("", "")
        lst, la = ("''", "{}") if link else ("", "")
        values.append(
            f"(fromUnixTimestamp64Nano(toInt64({t0 + off * 1_000_000})), '{tid}', '{sid}', "
            f"'{pid}', '', '{name}', '{kind}', '{svc}', {{'service.name': '{svc}'}}, "
            f"'io.opentelemetry.sdk', '1.0', {attrs}, {dur * 1_000_000}, '{status}', '', "
            f"[fromUnixTimestamp64Nano(toInt64({t0}))], ['started'], [{{'k': 'v'}}], "
            f"[{lt}], [{ls}], [{lst}], [{la}])"
        )
    conn.execute(
        "INSERT INTO otel.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, "
        "SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, "
        "SpanAttributes, Duration, StatusCode, StatusMessage, Events.Timestamp, Events.Name, "
        "Events.Attributes, Links.TraceId, Links.SpanId, Links.TraceState, Links.Attributes) "
        "VALUES " + ", ".join(values)
    )


def test_rows_the_collector_wrote_show_up_in_threadline_serve(tmp_path):
    from threadline.server.serving import spawn

    path = tmp_path / "ch"
    conn = ChdbConnection(str(path))  # as a new user would: the collector's tables, its rows
    for sql in create_statements("otel", "otel_traces"):
        conn.execute(sql)
    _insert_as_the_collector_does(conn)
    conn.close()

    with (
        spawn(str(tmp_path / "unused.duckdb"), "--store", f"chdb:{path}") as srv,
        httpx.Client(base_url=srv.urls.api, timeout=30) as api,
    ):
        assert srv.db == f"chdb:{path}"
        assert api.get("/api/services").json()["data"] == ["frontend", "mailer", "payments"]
        ops = api.get("/api/operations", params={"service": "frontend"}).json()["data"]
        assert sorted((o["name"], o["spanKind"]) for o in ops) == [
            ("GET /checkout", "server"),
            ("charge", "client"),
            ("publish", "producer"),
        ]
        # Jaeger v1: search, then by id
        found = api.get("/api/traces", params={"service": "payments"}).json()["data"]
        assert [t["traceID"] for t in found] == [T1]
        [trace] = api.get(f"/api/traces/{T1}").json()["data"]
        by_id = {s["spanID"]: s for s in trace["spans"]}
        assert len(by_id) == 4 and by_id["02" * 8]["duration"] == 50_000
        tags = {t["key"]: t for t in by_id["01" * 8]["tags"]}
        assert tags["http.response.status_code"]["value"] == 200  # typed back from "200"
        assert {t["key"]: t["value"] for t in by_id["02" * 8]["tags"]}["error"] is True
        # v3: OTLP JSON, kinds and statuses back as OTLP enums
        v3 = api.get(f"/api/v3/traces/{T2}").json()["result"]["resourceSpans"]
        [s] = v3[0]["scopeSpans"][0]["spans"]
        assert (s["kind"], s["status"].get("code")) == (5, 1)
        assert s["links"][0]["traceId"] == T1
        # the filter language: numeric comparisons on the stored text, resource scope, OR
        for flt, want in (
            ("amount>12", [T1]),
            ("amount<12", []),
            ("retries>=3 OR user=nobody", [T1]),
            ("resource:service.name=mailer", [T2]),
            ("!user", [T2, T1]),
        ):
            body = api.get("/api/threadline/search", params={"filter": flt}).json()
            assert [t["trace_id"] for t in body["traces"]] == want, flt
        [summary] = api.get("/api/threadline/search", params={"service": "mailer"}).json()["traces"]
        assert (summary["span_count"], summary["root_name"]) == (1, "process")
        # dependencies: calls, and the consumer's link to its producer
        end_ms = NOW // 1_000_000 + 1
        deps = api.get("/api/dependencies", params={"endTs": end_ms, "lookback": 3_600_000})
        assert deps.json()["data"] == [
            {"parent": "frontend", "child": "mailer", "callCount": 1},
            {"parent": "frontend", "child": "payments", "callCount": 1},
        ]
        analysis = api.get(f"/api/threadline/analysis/trace/{T1}")
        assert analysis.status_code == 200
        stats = api.get("/api/threadline/stats").json()
        assert stats["store"]["spans"] == 5 if "store" in stats else stats["spans"] == 5


def test_cluster_ddl_and_ttl():
    db, traces, lookup, view, *_ = create_statements(
        "obs", "spans", "three", ttl_ns=72 * 3600 * 10**9
    )
    assert db == "CREATE DATABASE IF NOT EXISTS `obs` ON CLUSTER `three`"
    assert traces.startswith("CREATE TABLE IF NOT EXISTS `obs`.`spans` ON CLUSTER `three` (\n")
    assert "\n) ENGINE = ReplicatedMergeTree()\nPARTITION BY toDate(Timestamp)\n" in traces
    assert "TTL toDateTime(Timestamp) + toIntervalDay(3)\nSETTINGS index_granularity" in traces
    assert lookup.startswith(
        "CREATE TABLE IF NOT EXISTS `obs`.`spans_trace_id_ts` ON CLUSTER `three` ("
    )
    assert "ENGINE = ReplicatedAggregatingMergeTree()" in lookup
    assert "TTL toDateTime(Start) + toIntervalDay(3)\n" in lookup
    assert view.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `obs`.`spans_trace_id_ts_mv` ON CLUSTER `three`\n"
        "TO `obs`.`spans_trace_id_ts`\n"
    )
    single = create_statements("otel", "otel_traces")
    assert "ON CLUSTER" not in "".join(single) and "TTL" not in "".join(single)
    assert "ENGINE = MergeTree()" in single[1]
    # threadline's table by trace id: the retention's TTL when it makes the traces table too,
    # else the traces table's own, or none
    week = 7 * 86400 * 10**9
    assert (
        "TTL toDateTime(Timestamp) + toIntervalDay(7)\n"
        in create_statements("o", "t", ttl_ns=week)[4]
    )
    theirs = "toDateTime(Timestamp) + toIntervalHour(5)"
    assert (
        f"TTL {theirs}\nSETTINGS"
        in create_statements("o", "t", ttl_ns=week, by_trace_ttl=theirs)[4]
    )
    assert "TTL" not in create_statements("o", "t", ttl_ns=week, by_trace_ttl="")[4]
    assert ttl_expr("Timestamp", 90 * 60 * 10**9) == (
        "TTL toDateTime(Timestamp) + toIntervalMinute(90)\n"
    )


def test_cluster_ddl_adds_distributed_tables_sharded_by_trace(tmp_path):
    statements = create_statements("obs", "spans", "three")
    conn = ChdbConnection(str(tmp_path / "ch"))
    try:  # every statement is ClickHouse's syntax (parsed, not run: there is no cluster)
        for sql in statements:
            assert conn.rows("EXPLAIN AST " + sql)[0][0].startswith("CreateQuery obs")
    finally:
        conn.close()
    assert len(statements) == 9
    assert statements[4] == (
        "CREATE TABLE IF NOT EXISTS `obs`.`spans_dist` ON CLUSTER `three` AS `obs`.`spans`\n"
        "ENGINE = Distributed('three', 'obs', 'spans', cityHash64(TraceId))"
    )
    assert statements[5] == (
        "CREATE TABLE IF NOT EXISTS `obs`.`spans_trace_id_ts_dist` ON CLUSTER `three` "
        "AS `obs`.`spans_trace_id_ts`\n"
        "ENGINE = Distributed('three', 'obs', 'spans_trace_id_ts', cityHash64(TraceId))"
    )
    # names are quoted, never SQL
    odd = create_statements("o'b", "s`p", "c'l")
    assert odd[4] == (
        "CREATE TABLE IF NOT EXISTS `o'b`.`s\\`p_dist` ON CLUSTER `c'l` AS `o'b`.`s\\`p`\n"
        "ENGINE = Distributed('c\\'l', 'o\\'b', 's`p', cityHash64(TraceId))"
    )
    assert not any("Distributed" in s for s in create_statements("otel", "otel_traces"))
    # threadline's table by trace id: replicated, filled by its view on each shard, read through
    # a Distributed table sharded as the others (a trace and its copy on one shard)
    by_trace, view, dist = statements[6:]
    assert by_trace.startswith(
        "CREATE TABLE IF NOT EXISTS `obs`.`spans_threadline_by_trace` ON CLUSTER `three` (\n"
    )
    assert (
        "\n) ENGINE = ReplicatedMergeTree()\nPARTITION BY toStartOfWeek(Timestamp)\n"
        "ORDER BY (TraceId, Timestamp)\nSETTINGS index_granularity = 128" in by_trace
    )
    assert "ALIAS" not in by_trace and "INDEX" not in by_trace
    assert by_trace.endswith("\nCOMMENT 'threadline: spans of spans by trace id, complete from 0'")
    assert view.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `obs`.`spans_threadline_by_trace_mv` "
        "ON CLUSTER `three`\nTO `obs`.`spans_threadline_by_trace`\nAS SELECT Timestamp, TraceId, "
    )
    assert view.endswith("`Links.Attributes`\nFROM `obs`.`spans`")
    assert dist == (
        "CREATE TABLE IF NOT EXISTS `obs`.`spans_threadline_by_trace_dist` ON CLUSTER `three` "
        "AS `obs`.`spans_threadline_by_trace`\nENGINE = Distributed('three', 'obs', "
        "'spans_threadline_by_trace', cityHash64(TraceId))"
    )


COMPLETE = "threadline: spans of spans by trace id, complete from 0"


class _Recording:
    """A connection that answers as an empty server and keeps every statement (there is no
    cluster here: chdb has no remote_servers), to see which tables a clustered store uses."""

    engine, where = "clickhouse", "clickhouse://h:8123/otel"

    def __init__(self, existing=(), refused=()):
        self.existing, self.sql, self.inserts = list(existing), [], []
        self.refused = list(refused)  # names whose CREATE the server refuses

    def rows(self, sql, params=None):
        self.sql.append(sql)
        if "system.databases" in sql:
            return [[1 if self.existing else 0]]
        if sql.startswith("SELECT name, comment FROM system.tables"):
            return [[n, COMPLETE] for n in params["names"] if n not in self.refused]
        if "FROM system.tables" in sql:
            return [[n] for n in self.existing]
        if "system.settings" in sql:
            return [[0]]
        if sql.startswith("SELECT count()"):
            return [[1]]
        if sql.startswith("SELECT toUnixTimestamp64Nano(min(Timestamp))"):
            return [[NOW - 10**9, NOW]]
        return []

    def execute(self, sql, params=None):
        self.sql.append(sql)
        if any(f"`{name}`" in sql.split("\n")[0] for name in self.refused):
            raise RuntimeError("Code: 497. DB::Exception: threadline: Not enough privileges.")

    def insert(self, table, columns, select, structure, lines, settings=None):
        self.inserts.append((table, settings))

    def close(self):
        pass


def test_a_clustered_store_reads_and_writes_through_the_distributed_tables(caplog):
    from threadline.server.storage.clickhouse import _SELECT as ch_select
    from threadline.server.storage.clickhouse import ClickHouseStore
    from threadline.server.storage.query import Query

    conn = _Recording()
    s = ClickHouseStore(conn, "obs", "spans", cluster="three")
    created = [q for q in conn.sql if q.startswith("CREATE")]
    expected = create_statements("obs", "spans", "three")
    assert created[:6] == expected[:6] and created[7:] == expected[7:]
    # made now, complete once the rows already there are copied (none here): then marked so
    assert created[6].split("COMMENT")[0] == expected[6].split("COMMENT")[0]
    assert conn.sql[-4:-2] == [
        "SELECT 1 FROM `obs`.`spans_dist` LIMIT 1",
        "ALTER TABLE `obs`.`spans_threadline_by_trace` ON CLUSTER `three` "
        f"MODIFY COMMENT '{COMPLETE}'",
    ]
    conn.sql.clear()
    s.write([Span(T1, "cd" * 8, "", "op", 2, NOW, NOW + 1, "a")])
    assert conn.inserts == [("`obs`.`spans_dist`", {"insert_distributed_sync": 1})]
    s.find_trace_ids(Query(service="a"))
    s.get_traces([T1])
    s.services()
    s.operations()
    s.spans_between(0, NOW)
    s.dependencies(0, NOW)
    reads = [q for q in conn.sql if q.startswith(("SELECT", "WITH"))]
    assert len(reads) == 7  # get_traces: one read, of the table by trace id
    assert all("`obs`.`spans_dist`" in q for q in reads if q is not reads[2])
    assert "FROM `obs`.`spans_threadline_by_trace_dist` WHERE TraceId IN" in reads[2]
    assert not any("`obs`.`spans` " in q or "`obs`.`spans_trace_id_ts` " in q for q in reads)
    s.delete_before(NOW)  # a Distributed table takes no DELETE: every shard deletes its own
    assert conn.sql[-2:] == [
        f"DELETE FROM `obs`.`{table}` ON CLUSTER `three` "
        "WHERE Timestamp < fromUnixTimestamp64Nano({ns:Int64})"
        for table in ("spans", "spans_threadline_by_trace")
    ]

    # tables someone made are used as they are: no DDL
    made = _Recording(["spans", "spans_trace_id_ts", "spans_trace_id_ts_mv", "spans_dist",
                       "spans_trace_id_ts_dist", "spans_threadline_by_trace",
                       "spans_threadline_by_trace_mv", "spans_threadline_by_trace_dist"])  # fmt: skip
    ClickHouseStore(made, "obs", "spans", cluster="three")
    assert not [q for q in made.sql if q.startswith(("CREATE", "INSERT", "ALTER"))]

    # not granted the table by trace id (or its view): a warning, and reads keep to the
    # collector's tables
    for refused in ("spans_threadline_by_trace", "spans_threadline_by_trace_mv"):
        denied = _Recording(["spans", "spans_trace_id_ts", "spans_trace_id_ts_mv"], [refused])
        with caplog.at_level("WARNING", "threadline.server"):
            s = ClickHouseStore(denied, "obs", "spans")
        assert caplog.messages[-1] == (
            "obs.spans_threadline_by_trace is not complete (Code: 497. DB::Exception: threadline: "
            "Not enough privileges.): traces it does not hold whole are read from spans"
        )
        assert s._complete_from is None
        denied.sql.clear()
        s.get_traces([T1])
        assert [q.split(" WHERE")[0] for q in denied.sql] == [
            "SELECT TraceId, toUnixTimestamp(min(Start)), toUnixTimestamp(max(End)) "
            "FROM `obs`.`spans_trace_id_ts`",
            f"SELECT {ch_select} FROM `obs`.`spans`",
        ]

    # one machine: the local tables, no insert settings
    single = _Recording()
    s = ClickHouseStore(single, "obs", "spans")
    s.write([Span(T1, "cd" * 8, "", "op", 2, NOW, NOW + 1, "a")])
    s.services()
    assert single.inserts == [("`obs`.`spans`", {})]
    assert "FROM `obs`.`spans` ORDER BY 1" in single.sql[-1]


def test_retention_becomes_the_tables_ttl(tmp_path):
    s = open_store(f"chdb:{tmp_path / 'ch'}", retention_ns=7 * 86400 * 10**9)
    try:
        [[ddl]] = s._conn.rows("SELECT create_table_query FROM system.tables "
                               "WHERE database = 'otel' AND name = 'otel_traces'")  # fmt: skip
        assert "TTL toDateTime(Timestamp) + toIntervalDay(7)" in ddl
        assert s.retention_by_ttl
    finally:
        s.close()


def test_a_table_of_another_layout_is_refused_and_left_alone(tmp_path):
    path = str(tmp_path / "ch")
    conn = ChdbConnection(path)
    conn.execute("CREATE DATABASE otel")
    # an older exporter's table: Duration was Int64 then, and no Scope columns
    conn.execute(
        "CREATE TABLE otel.otel_traces (Timestamp DateTime64(9), TraceId String, SpanId String, "
        "ParentSpanId String, TraceState String, SpanName LowCardinality(String), "
        "SpanKind LowCardinality(String), ServiceName LowCardinality(String), "
        "ResourceAttributes Map(LowCardinality(String), String), "
        "ScopeName String, ScopeVersion String, "
        "SpanAttributes Map(LowCardinality(String), String), Duration Int64) "
        "ENGINE = MergeTree ORDER BY Timestamp"
    )
    conn.close()
    with pytest.raises(
        LayoutMismatch,
        match=r"table otel.otel_traces is not the collector's layout: column 13 should be "
        r"Duration UInt64, found Duration Int64; refusing to use it",
    ):
        open_store(f"chdb:{path}")
    conn = ChdbConnection(path)
    try:
        assert conn.rows("SELECT count() FROM otel.otel_traces") == [[0]]
        assert conn.rows("EXISTS TABLE otel.otel_traces_trace_id_ts") == [[0]]  # nothing made
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("clickhouse://h:port/db", "--store: port 'port' is not a port number"),
        ("clickhouse:///db", "--store clickhouse://: the host is missing"),
        ("clickhouse://h/a/b", "--store clickhouse://: the database 'a/b' is not one name"),
        (
            "clickhouse://h/db?x=1",
            "--store clickhouse://: a query string or fragment is not accepted",
        ),
        ("mysql://h/db", "--store: unknown engine 'mysql'"),
        ("chdb:", "--store chdb: the path is missing"),
        ("duckdb:", "--store duckdb: the path is missing"),
    ],
)
def test_a_malformed_url_names_the_part_at_fault(url, message):
    with pytest.raises(StoreURLError, match="^" + message.replace("?", r"\?")):
        open_store(url)


def test_the_password_is_never_shown(monkeypatch):
    url = parse_clickhouse_url("clickhouse://ann:s3cret@db.example:9000/obs")
    assert (url.user, url.password, url.port, url.database) == ("ann", "s3cret", 9000, "obs")
    assert url.display == "clickhouse://ann@db.example:9000/obs"
    assert redact("clickhouse://ann:s3cret@h/obs") == "clickhouse://ann@h:8123/obs"
    monkeypatch.setenv("THREADLINE_CLICKHOUSE_PASSWORD", "fromenv")
    assert parse_clickhouse_url("clickhouse://h/obs").password == "fromenv"
    pytest.importorskip("clickhouse_connect")
    with pytest.raises(StoreUnavailable) as err:
        open_store("clickhouse://ann:s3cret@127.0.0.1:9/obs")  # nothing listens there
    assert str(err.value).startswith("cannot reach ClickHouse at 127.0.0.1:9: ")
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)


def test_serve_reports_an_unreachable_server_in_one_line(tmp_path):
    pytest.importorskip("clickhouse_connect")
    out = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "serve", "--port", "0", "--otlp-http-port",
         "0", "--otlp-grpc-port", "0", "--store", "clickhouse://ann:s3cret@127.0.0.1:9/obs"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith("threadline serve: cannot reach ClickHouse at 127.0.0.1:9: ")
    assert out.stderr.count("\n") == 1 and "s3cret" not in out.stderr + out.stdout


def test_a_lost_server_is_retry_later_and_other_errors_are_not():
    """ClickHouse gone mid-way: StoreUnavailable (ingest answers 503 + Retry-After); an error
    ClickHouse reports: a plain error (500 with the reason); neither shows the password."""
    pytest.importorskip("clickhouse_connect")
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from threadline.server.ingest.queue import not_stored
    from threadline.server.storage.clickhouse_connection import HttpConnection

    conn = object.__new__(HttpConnection)
    conn.where, conn._password = "clickhouse://ann@h:8123/otel", "s3cret"

    def fail(exc):
        def call(*a, **kw):
            raise exc

        return call

    with pytest.raises(StoreUnavailable) as lost:
        conn._call(fail(OperationalError("connection refused for ann:s3cret")))
    assert str(lost.value) == (
        "ClickHouse at clickhouse://ann@h:8123/otel: connection refused for ann:***"
    )
    assert not_stored(lost.value, 60)[0] is True  # retryable: 503
    with pytest.raises(RuntimeError) as refused:
        conn._call(fail(DatabaseError("Code: 27. Cannot parse input")))
    assert not isinstance(refused.value, OSError)
    assert not_stored(refused.value, 60) == (
        False,
        "spans not stored: ClickHouse at clickhouse://ann@h:8123/otel: Code: 27. Cannot parse input",
    )


def test_serve_on_chdb_leaves_retention_to_the_ttl(tmp_path):
    from threadline import server

    with server.start(db=f"chdb:{tmp_path / 'ch'}", retention_ns=3600 * 10**9) as srv:
        assert srv.ingest.retention_ns is None and srv.store.retention_by_ttl
        assert srv.store.stats()["engine"] == "chdb"


def test_an_insert_clickhouse_refuses_fails_that_export_only(tmp_path):
    """Someone else's constraint on the shared table refuses one export: 500 with ClickHouse's
    reason for it, 200 for the next, and ingest goes on."""
    from threadline import server
    from threadline.server.otlp.json_format import encode_json

    path = str(tmp_path / "ch")
    conn = ChdbConnection(path)
    for sql in create_statements("otel", "otel_traces"):
        conn.execute(sql)
    conn.execute("ALTER TABLE otel.otel_traces ADD CONSTRAINT no_evil CHECK SpanName != 'evil'")
    conn.close()

    def export(name: str, span_id: str) -> httpx.Response:
        body = encode_json([Span(T1, span_id, "", name, 2, NOW, NOW + 5, "api")])
        return httpx.post(srv.urls.otlp_http + "/v1/traces", json=body, timeout=30)

    with server.start(db=f"chdb:{path}") as srv:
        refused = export("evil", "01" * 8)
        assert refused.status_code == 500
        assert "no_evil" in refused.text and "VIOLATED_CONSTRAINT" in refused.text
        assert export("fine", "02" * 8).status_code == 200
        assert [s.name for s in srv.store.get_trace(T1)] == ["fine"]


def test_strings_another_writer_left_invalid_are_read_repaired(ch):
    ch._conn.execute(
        "INSERT INTO otel.otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, "
        f"SpanAttributes) VALUES (now64(9), '{T1}', '{'01' * 8}', 'bad\\xff', 'api', "
        "{'k': 'v\\xfe'})"
    )
    [span] = ch.get_trace(T1)
    assert (span.name, span.attributes) == ("bad\ufffd", {"k": "v\ufffd"})


def test_tables_that_exist_are_not_created_again(tmp_path):
    """A reader without the grant to create tables can use tables the collector made."""
    from threadline.server.storage.clickhouse import ClickHouseStore

    path = str(tmp_path / "ch")
    open_store(f"chdb:{path}").close()
    ran: list[str] = []

    def opened() -> ClickHouseStore:
        conn = ChdbConnection(path)
        execute = conn.execute

        def recording(sql, params=None):
            ran.append(sql)
            execute(sql, params)

        conn.execute = recording  # type: ignore[method-assign]
        return ClickHouseStore(conn)

    store = opened()
    assert ran == []  # every table there: no DDL at all
    store._conn.execute("DROP VIEW otel.otel_traces_trace_id_ts_mv")
    store.close()
    ran.clear()
    store = opened()  # only what is missing is made
    store.close()
    assert [sql.split("\n")[0] for sql in ran if sql.startswith("CREATE")] == [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `otel`.`otel_traces_trace_id_ts_mv`"
    ]


def test_an_acknowledged_export_survives_kill_9(tmp_path):
    from threadline.server.otlp.json_format import encode_json
    from threadline.server.serving import spawn

    path = tmp_path / "ch"
    srv = spawn(str(tmp_path / "unused.duckdb"), "--store", f"chdb:{path}")
    try:
        body = encode_json([Span(T1, "01" * 8, "", "GET /", 2, NOW, NOW + 5, "api")])
        r = httpx.post(srv.urls.otlp_http + "/v1/traces", json=body, timeout=30)
        assert r.status_code == 200
    finally:
        srv.kill()  # SIGKILL right after the 200: no shutdown, no flush
    store = open_store(f"chdb:{path}")
    try:
        assert [s.name for s in store.get_trace(T1)] == ["GET /"]
    finally:
        store.close()


def test_a_query_past_the_memory_bound_is_cancelled_and_too_costly(tmp_path, monkeypatch):
    from threadline.server.storage.base import QueryTooCostly

    monkeypatch.setenv("THREADLINE_CLICKHOUSE_MAX_MEMORY", "2000000")
    s = open_store(f"chdb:{tmp_path / 'ch'}")
    try:
        assert s._conn.rows("SELECT getSetting('max_memory_usage')") == [[2000000]]
        assert s._conn.rows("SELECT getSetting('max_execution_time')") == [[30]]
        with pytest.raises(QueryTooCostly, match=r"\(MEMORY_LIMIT_EXCEEDED\)"):
            s._conn.rows("SELECT length(groupArray(toString(number))) FROM numbers(10000000)")
        assert s._conn.rows("SELECT count() FROM numbers(10)") == [[10]]  # and it goes on
    finally:
        s.close()


def test_the_query_bounds_come_from_the_environment(monkeypatch):
    from threadline.server.storage.clickhouse_connection import _cancelled, query_limits

    monkeypatch.setenv("THREADLINE_QUERY_TIMEOUT", "2.4")
    monkeypatch.delenv("THREADLINE_CLICKHOUSE_MAX_MEMORY", raising=False)
    assert query_limits() == {"max_execution_time": 2, "max_memory_usage": 10**9}
    monkeypatch.setenv("THREADLINE_CLICKHOUSE_MAX_MEMORY", "lots")
    with pytest.raises(StoreURLError, match="THREADLINE_CLICKHOUSE_MAX_MEMORY: 'lots' is not a"):
        query_limits()
    timed_out = _cancelled("Code: 159. DB::Exception: Timeout exceeded: (TIMEOUT_EXCEEDED)")
    assert timed_out is not None and "TIMEOUT_EXCEEDED" in str(timed_out)
    assert _cancelled("Code: 60. DB::Exception: Unknown table (UNKNOWN_TABLE)") is None


def _span(trace_id: str, n: int, start: int) -> Span:
    return Span(trace_id, f"{n:016x}", "", f"op{n}", 2, start, start + 1000, "api")


def _by_trace_count(store, trace_id: str) -> int:
    return store._conn.rows(
        "SELECT count() FROM otel.otel_traces_threadline_by_trace WHERE TraceId = {t:String}",
        {"t": trace_id},
    )[0][0]


def test_rows_already_there_are_copied_once_into_the_table_by_trace_id(tmp_path):
    path = str(tmp_path / "ch")
    conn = ChdbConnection(path)  # the collector's tables (with its TTL) and rows, from before
    for sql in create_statements("otel", "otel_traces", ttl_ns=3 * 86400 * 10**9)[:4]:
        conn.execute(sql)
    _insert_as_the_collector_does(conn)
    conn.close()

    s = open_store(f"chdb:{path}")
    try:
        s._copier.join()  # the copy runs once the store is open
        assert (_by_trace_count(s, T1), _by_trace_count(s, T2)) == (4, 1)
        [[comment, ddl]] = s._conn.rows(
            "SELECT comment, create_table_query FROM system.tables "
            "WHERE name = 'otel_traces_threadline_by_trace'"
        )
        assert comment == "threadline: spans of otel_traces by trace id, complete from 0"
        assert "TTL toDateTime(Timestamp) + toIntervalDay(3) " in ddl  # the collector's TTL
        assert s._complete_from == 0
        # what is written from now on is copied by the view
        s.write([_span("cc" * 16, 1, NOW), _span("cc" * 16, 2, NOW + 5)])
        assert _by_trace_count(s, "cc" * 16) == 2
        # reads by id use it: the collector's rows of T1 gone, the trace still reads whole
        s._conn.execute(f"DELETE FROM otel.otel_traces WHERE TraceId = '{T1}'")
        assert sorted(x.span_id for x in s.get_trace(T1)) == [
            "01" * 8,
            "02" * 8,
            "03" * 8,
            "04" * 8,
        ]
        [summary] = s.summaries(["cc" * 16])
        assert (summary.span_count, summary.duration_ns) == (2, 1005)
    finally:
        s.close()
    # opened again: nothing copied twice
    s = open_store(f"chdb:{path}")
    try:
        assert s._copier is None
        assert (_by_trace_count(s, T1), _by_trace_count(s, "cc" * 16)) == (4, 2)
    finally:
        s.close()


def test_traces_older_than_a_copy_that_did_not_finish_are_read_from_the_traces_table(tmp_path):
    path = str(tmp_path / "ch")
    s = open_store(f"chdb:{path}")
    old, new = "aa" * 16, "bb" * 16
    s.write([_span(old, 1, NOW - 7200 * 10**9), _span(new, 1, NOW)])
    # a copy interrupted: the comment still says from when the table holds every span
    s._conn.execute(
        "ALTER TABLE otel.otel_traces_threadline_by_trace MODIFY COMMENT "
        f"'threadline: spans of otel_traces by trace id, complete from {NOW - 3600 * 10**9}'"
    )
    s.close()
    s = open_store(f"chdb:{path}")
    try:
        assert s._complete_from == NOW - 3600 * 10**9
        # each read from one table only: the old trace from the traces table, the new one not
        s._conn.execute(f"DELETE FROM otel.otel_traces_threadline_by_trace WHERE TraceId = '{old}'")
        s._conn.execute(f"DELETE FROM otel.otel_traces WHERE TraceId = '{new}'")
        found = s.get_traces([old, new, "dd" * 16])
        assert {t: [x.start_ns for x in spans] for t, spans in found.items()} == {
            old: [NOW - 7200 * 10**9],
            new: [NOW],
        }
        # a comment it cannot read: every trace from the traces table
        s._conn.execute(
            "ALTER TABLE otel.otel_traces_threadline_by_trace MODIFY COMMENT 'someone else'"
        )
        assert s._by_trace_state()[0] is None
        s._complete_from = None
        assert list(s.get_traces([old, new])) == [old]
        # complete, but its view gone (it would miss what comes next): not used either
        s._conn.execute(
            "ALTER TABLE otel.otel_traces_threadline_by_trace MODIFY COMMENT "
            "'threadline: spans of otel_traces by trace id, complete from 0'"
        )
        assert s._by_trace_state()[0] == 0
        s._conn.execute("DROP VIEW otel.otel_traces_threadline_by_trace_mv")
        assert s._by_trace_state()[0] is None
        gone = _span("ee" * 16, 1, NOW)  # written while the view is gone: not in the table
        s.write([gone])
    finally:
        s.close()
    before = time.time_ns()
    s = open_store(f"chdb:{path}")  # the view made again: complete only from now on
    try:
        assert before + 3600 * 10**9 <= s._complete_from <= time.time_ns() + 3600 * 10**9
        assert _by_trace_count(s, "ee" * 16) == 0
        assert [x.span_id for x in s.get_trace("ee" * 16)] == [gone.span_id]
        s.write([_span("ff" * 16, 1, NOW)])
        assert _by_trace_count(s, "ff" * 16) == 1
    finally:
        s.close()


def test_a_search_reads_back_in_slices_until_it_has_its_traces(ch):
    from threadline.server.storage.query import Query

    hour = 3600 * 10**9
    traces = {f"{i:032x}": NOW - ago for i, ago in enumerate([0, 2 * hour, 30 * hour, 900 * hour])}
    ch.write([_span(t, 1, start) for t, start in traces.items()])
    newest_first = list(traces)
    for limit in (1, 2, 3, 4, 9):
        assert ch.find_trace_ids(Query(service="api", limit=limit)) == newest_first[:limit]
    # within the query's own bounds, the slices stop at its start
    found = ch.find_trace_ids(Query(service="api", start_ns=NOW - 40 * hour, end_ns=NOW, limit=9))
    assert found == newest_first[1:3]
    assert ch.find_trace_ids(Query(service="api", start_ns=NOW + 1, limit=9)) == []
    assert ch.find_trace_ids(Query(service="other", limit=9)) == []
    # the slices read: an hour back from the newest span, then 8 hours, then 64
    cuts = []
    rows = ch._conn.rows

    def recording(sql, params=None):
        if sql.startswith("SELECT TraceId FROM"):
            cuts.append(list(params.values())[-1])  # the slice's start, added last
        return rows(sql, params)

    ch._conn.rows = recording
    assert ch.find_trace_ids(Query(service="api", limit=3)) == newest_first[:3]
    assert [NOW + 1 - c for c in cuts] == [hour, 8 * hour, 64 * hour]


HOUR = 3600 * 10**9
H0 = (NOW // HOUR - 3) * HOUR  # the start of an hour, three hours before this one


def _older_rows(path: str) -> tuple[list[str], list[Span]]:
    """A store's rows over four hours, then its table by trace id dropped: rows it must copy.
    One trace per hour and one across the boundary at H0 + 2h (a span on each side)."""
    ids = [f"{i + 1:02x}" * 16 for i in range(5)]
    spans = [_span(ids[i], n, H0 + i * HOUR + n * 10**9) for i in range(4) for n in (1, 2)]
    spans += [_span(ids[4], 1, H0 + 2 * HOUR - 10**10), _span(ids[4], 2, H0 + 2 * HOUR + 10**10)]
    s = open_store(f"chdb:{path}")
    s.write(spans)
    s._conn.execute("DROP VIEW otel.otel_traces_threadline_by_trace_mv")
    s._conn.execute("DROP TABLE otel.otel_traces_threadline_by_trace")
    s.close()
    return ids, spans


def _answers(s, ids: list[str]):
    traces = {t: sorted((x.span_id, x.start_ns) for x in v) for t, v in s.get_traces(ids).items()}
    return traces, [(x.trace_id, x.span_count, x.duration_ns) for x in s.summaries(ids)]


def _comment(s) -> str:
    return s._conn.rows(
        "SELECT comment FROM system.tables WHERE name = 'otel_traces_threadline_by_trace'"
    )[0][0]


def test_the_copy_runs_after_the_store_opens_newest_hour_first(tmp_path, monkeypatch, caplog):
    from threadline.server.storage import clickhouse

    path = str(tmp_path / "ch")
    ids, spans = _older_rows(path)
    expected = (
        {t: sorted((x.span_id, x.start_ns) for x in spans if x.trace_id == t) for t in ids},
        [(t, 2, 1000 + 10**9 if t != ids[4] else 1000 + 2 * 10**10) for t in ids],
    )
    monkeypatch.setattr(clickhouse, "_COPY_SLICE_SPANS", 1)  # several inserts an hour
    gate, seen = threading.Event(), []
    copy_hour = clickhouse.ClickHouseStore._copy_hour

    def observed(self, hour, n):  # in the copy's thread, before each hour
        assert gate.wait(30)
        seen.append((hour, self._complete_from, _comment(self), _answers(self, ids)))
        return copy_hour(self, hour, n)

    monkeypatch.setattr(clickhouse.ClickHouseStore, "_copy_hour", observed)
    before = time.time_ns()
    with caplog.at_level("INFO", "threadline.server"):
        s = open_store(f"chdb:{path}")
        try:
            # open, nothing copied yet: every trace read whole from the traces table
            assert s._copier.is_alive() and _by_trace_count(s, ids[3]) == 0
            assert before + HOUR <= s._complete_from <= time.time_ns() + HOUR
            assert _answers(s, ids) == expected
            gate.set()
            s._copier.join()
            # newest hour first, the mark at each hour's start once it is in; the trace across
            # H0 + 2h read from the traces table until its older half is in
            assert [x[0] * 10**9 for x in seen] == [H0 + i * HOUR for i in (3, 2, 1, 0)]
            assert [x[1] for x in seen[1:]] == [H0 + i * HOUR for i in (3, 2, 1)]
            assert seen[2][2] == (
                "threadline: spans of otel_traces by trace id, complete from "
                f"{H0 + 2 * HOUR}, older ones being copied"
            )
            assert all(x[3] == expected for x in seen)
            assert s._complete_from == 0 and _answers(s, ids) == expected
            assert _comment(s) == "threadline: spans of otel_traces by trace id, complete from 0"
            assert [_by_trace_count(s, t) for t in ids] == [2] * 5  # each span once
        finally:
            s.close()
    assert caplog.messages[-2:] == [
        "otel.otel_traces_threadline_by_trace: copying 10 older spans, newest hour first",
        "otel.otel_traces_threadline_by_trace: complete (10 spans copied)",
    ]


def test_a_copy_stops_at_close_and_resumes_from_its_mark(tmp_path, monkeypatch, caplog):
    from threadline.server.storage import clickhouse

    path = str(tmp_path / "ch")
    ids, _ = _older_rows(path)
    reached, hours = threading.Event(), []
    copy_hour = clickhouse.ClickHouseStore._copy_hour

    def stopping(self, hour, n):  # the third hour waits for close()
        hours.append(hour * 10**9)
        if len(hours) == 3:
            reached.set()
            assert self._closing.wait(30)
        return copy_hour(self, hour, n)

    monkeypatch.setattr(clickhouse.ClickHouseStore, "_copy_hour", stopping)
    s = open_store(f"chdb:{path}")
    assert reached.wait(30)
    s.close()  # returns once the copy has stopped, before its third hour
    assert not s._copier.is_alive()
    assert hours == [H0 + 3 * HOUR, H0 + 2 * HOUR, H0 + HOUR]

    hours.clear()
    with caplog.at_level("INFO", "threadline.server"):
        s = open_store(f"chdb:{path}")  # opened again: the hours older than the mark remain
        try:
            assert s._complete_from == H0 + 2 * HOUR
            s._copier.join()
            assert hours == [H0 + HOUR, H0]
            assert s._complete_from == 0
            assert [_by_trace_count(s, t) for t in ids] == [2] * 5
        finally:
            s.close()
    assert "copying 5 older spans" in caplog.messages[-2]


def test_a_copy_that_fails_warns_once_and_reads_fall_back(tmp_path, monkeypatch, caplog):
    from threadline.server.storage import clickhouse

    path = str(tmp_path / "ch")
    ids, _ = _older_rows(path)
    copy_hour = clickhouse.ClickHouseStore._copy_hour

    def failing(self, hour, n):
        if hour * 10**9 == H0 + HOUR:
            raise RuntimeError("Code: 241. DB::Exception: Memory limit exceeded\nstack")
        return copy_hour(self, hour, n)

    # the mark set back as a copy that stopped at H0 + 3h leaves it
    s = open_store(f"chdb:{path}")
    try:
        s._copier.join()
        expected = _answers(s, ids)
        s._conn.execute(
            "DELETE FROM otel.otel_traces_threadline_by_trace "
            f"WHERE Timestamp < fromUnixTimestamp64Nano({H0 + 3 * HOUR})"
        )
        s._mark_complete_from(H0 + 3 * HOUR, copying=True)
    finally:
        s.close()
    monkeypatch.setattr(clickhouse.ClickHouseStore, "_copy_hour", failing)
    with caplog.at_level("WARNING", "threadline.server"):
        s = open_store(f"chdb:{path}")
        try:
            s._copier.join()
            assert caplog.messages == [
                "otel.otel_traces_threadline_by_trace is not complete (Code: 241. "
                "DB::Exception: Memory limit exceeded): traces it does not hold whole are read "
                "from otel_traces"
            ]
            assert s._complete_from == H0 + 2 * HOUR
            assert _answers(s, ids) == expected
        finally:
            s.close()
