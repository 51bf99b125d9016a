"""The ClickHouse engine, on the OpenTelemetry Collector's own tables.

The layout is the `clickhouseexporter`'s: `otel_traces` (one row per span), the trace-id lookup
`otel_traces_trace_id_ts` (first and last second of each trace) and the materialized view
`otel_traces_trace_id_ts_mv` that fills it; database and table names are configurable. Missing
tables are created (`IF NOT EXISTS`; with a cluster named: `ON CLUSTER`, Replicated engines,
and Distributed tables `<table>_dist` and `<table>_trace_id_ts_dist` over them, sharded by
`cityHash64(TraceId)` so a trace stays on one shard, that threadline then reads and writes
through); an existing table is never altered, and one whose columns differ from this layout is
refused with the first differing column named. Retention is the tables' TTL, set when threadline
creates them. Beside them threadline keeps its own table, the same rows ordered by trace id and
filled by its own view, for reads by id (`BY_TRACE_SUFFIX`).

Values are written as the exporter writes them: ids as lowercase hex, `SPAN_KIND_SERVER` ...,
`STATUS_CODE_ERROR` ..., attribute values as strings in pdata's `AsString` forms (`true`, `42`,
`2.5`, base64 bytes, JSON arrays and maps), Duration in nanoseconds, events and links in their
Nested columns. threadline's own data rides in attribute maps, so any reader sees ordinary spans:
`threadline.pending` (pending announcements, superseded on read by `supersede()`), and OWN_KEYS
(dropped counts, flags, schema URLs, scope attributes), taken off again on read.

What the string layout loses: a value's type. Reads give types back where the text tells them
(`true`/`false` -> bool, an integer -> int, a decimal -> float, a JSON array or map -> list or
dict), so the string "42" and the int 42 read back alike, bytes read back as their base64 text,
and a double 2.0 as the int 2. Numeric filters compare `toFloat64OrNull` of the text.

Engine SQL stays here; every value of a search is a bound parameter, never SQL text.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
from decimal import Decimal
from typing import Any

from threadline.semconv import PENDING
from threadline.server import peers
from threadline.server.model import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_PRODUCER,
    STATUS_ERROR,
    Event,
    Link,
    Span,
)
from threadline.server.storage.base import (
    Dependency,
    QueryTooCostly,
    Store,
    StoreUnavailable,
    TraceSummary,
    one_per_span,
    supersede,
)
from threadline.server.storage.clickhouse_connection import Connection, settings_clause
from threadline.server.storage.layout import (
    Rows,
    SpanColumns,
    decode_attrs,
    read_dropped,
    untag_value,
)
from threadline.server.storage.query import Filter, Query

log = logging.getLogger("threadline.server")

KIND_NAMES = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
]
STATUS_NAMES = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]
# read also the short forms other writers use (pdata's String(): "Server", "Error")
_KINDS = {n: i for i, n in enumerate(KIND_NAMES)} | {
    n: i
    for i, n in enumerate(["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"])
}
_STATUSES = {n: i for i, n in enumerate(STATUS_NAMES)} | {
    n: i for i, n in enumerate(["Unset", "Ok", "Error"])
}

# threadline's data that OTLP has a field for and the layout has no column for
DROPPED = "threadline.dropped"  # "attrs,events,links[,resource,scope]" (layout.dropped_text)
FLAGS = "threadline.flags"
SCHEMA_URLS = "threadline.schema_urls"  # "resource\nscope"
SCOPE_ATTRIBUTES = "threadline.scope_attributes"  # typed JSON (layout.encode_attrs)
KIND = "threadline.kind"  # a kind or status code beyond the names above, as sent
STATUS = "threadline.status_code"
OWN_KEYS = (DROPPED, FLAGS, SCHEMA_URLS, SCOPE_ATTRIBUTES, KIND, STATUS)

_MAP = "Map(LowCardinality(String), String)"
# (name, type, codec) of otel_traces, in the exporter's order; Nested columns flattened as
# ClickHouse lists them
TRACES_COLUMNS: list[tuple[str, str]] = [
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("ParentSpanId", "String"),
    ("TraceState", "String"),
    ("SpanName", "LowCardinality(String)"),
    ("SpanKind", "LowCardinality(String)"),
    ("ServiceName", "LowCardinality(String)"),
    ("ResourceAttributes", _MAP),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("SpanAttributes", _MAP),
    ("Duration", "UInt64"),
    ("StatusCode", "LowCardinality(String)"),
    ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"),
    ("Events.Name", "Array(LowCardinality(String))"),
    ("Events.Attributes", f"Array({_MAP})"),
    ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", f"Array({_MAP})"),
    ("ResourceAttributeItems", "Array(String)"),
    ("SpanAttributeItems", "Array(String)"),
]
BY_TRACE_COLUMNS = [c for c in TRACES_COLUMNS if not c[0].endswith("AttributeItems")]
LOOKUP_COLUMNS: list[tuple[str, str]] = [
    ("TraceId", "String"),
    ("Start", "SimpleAggregateFunction(min, DateTime)"),
    ("End", "SimpleAggregateFunction(max, DateTime)"),
]

_TRACES_DDL = """CREATE TABLE IF NOT EXISTS {table}{on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{ttl}SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_LOOKUP_DDL = """CREATE TABLE IF NOT EXISTS {table}{on_cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = {engine}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
{ttl}SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_VIEW_DDL = """CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{on_cluster}
TO {lookup}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {table}
WHERE TraceId != ''
GROUP BY TraceId"""


# threadline's own table beside the collector's: the same rows ordered by trace id, so that a
# trace is read from a granule or two instead of one per (service, span name) it touches. Its
# view copies every insert into the traces table; rows that predate the view are copied once,
# in the background, newest hour first ("complete from" in the comment moves back an hour at a
# time while "older ones being copied"; 0 once that copy is done). Small granules
# and compressed blocks: a read by id decompresses little more than its trace (20 traces of
# ~120 spans: 26 ms against 59 ms with 1024-row granules, for 30% more bytes on disk).
_BY_TRACE_DDL = (
    _TRACES_DDL.split("    ResourceAttributeItems")[0].rstrip().rstrip(",")
    + """
) ENGINE = {engine}
PARTITION BY toStartOfWeek(Timestamp)
ORDER BY (TraceId, Timestamp)
{ttl}SETTINGS index_granularity = 128, min_compress_block_size = 1024, \
max_compress_block_size = 16384, ttl_only_drop_parts = 1
COMMENT {comment}"""
)

_BY_TRACE_VIEW_DDL = """CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{on_cluster}
TO {by_trace}
AS SELECT {columns}
FROM {table}"""

BY_TRACE_SUFFIX = "_threadline_by_trace"
_COMPLETE_FROM = "threadline: spans of {table} by trace id, complete from {ns}{copying}"
_COPYING = ", older ones being copied"
_COMPLETE_FROM_RE = re.compile(
    rf"threadline: spans of .* by trace id, complete from (\d+)({re.escape(_COPYING)})?$"
)
_COPY_SETTINGS = {
    "max_threads": 1,
    "max_insert_threads": 1,
    "min_insert_block_size_rows": 65536,
    "min_insert_block_size_bytes": 32 << 20,
    "max_execution_time": 0,  # an hour's spans, once: not a query a user waits for
}
# an hour's copy goes in slices of about this many spans: each insert holds a chdb session
# (and so the writer) for about a second, and close() waits for one at most
_COPY_SLICE_SPANS = 20_000
_COPY_LOG_EVERY_S = 60
# between slices: a writer waiting for the chdb session gets it (a lock is not handed over)
_COPY_PAUSE_S = 0.02
# a client clock ahead of the server's: rows inserted before the view may be stamped this late
_CLOCK_MARGIN_NS = 3600 * 10**9


def ident(name: str) -> str:
    """A quoted identifier: names come from flags, never trusted as SQL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def ttl_expr(column: str, ttl_ns: int | None) -> str:
    """The exporter's TTL clause for a retention: whole days as toIntervalDay, else the largest
    unit (hour, minute, second) that divides it; "" for none."""
    if not ttl_ns:
        return ""
    seconds = max(1, ttl_ns // 1_000_000_000)
    for unit, size in (("Day", 86400), ("Hour", 3600), ("Minute", 60), ("Second", 1)):
        if seconds % size == 0:
            return f"TTL toDateTime({column}) + toInterval{unit}({seconds // size})\n"
    raise AssertionError("unreachable: every whole second divides by 1")


def literal(text: str) -> str:
    """A quoted string literal: names come from flags, never trusted as SQL."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


DIST_SUFFIX = "_dist"


def table_names(table: str, cluster: str | None = None) -> list[str]:
    """The names `create_statements` makes, after the database, in its order: all derived from
    the traces table's name, as the exporter derives the lookup table's and view's."""
    names = [table, table + "_trace_id_ts", table + "_trace_id_ts_mv"]
    if cluster:
        names += [table + DIST_SUFFIX, table + "_trace_id_ts" + DIST_SUFFIX]
    names += [table + BY_TRACE_SUFFIX, table + BY_TRACE_SUFFIX + "_mv"]
    if cluster:
        names.append(table + BY_TRACE_SUFFIX + DIST_SUFFIX)
    return names


def create_statements(
    database: str,
    table: str,
    cluster: str | None = None,
    ttl_ns: int | None = None,
    complete_from_ns: int = 0,
    by_trace_ttl: str | None = None,
    copying: bool = False,
) -> list[str]:
    """The DDL that makes the layout: database, traces table, lookup table, view. With a cluster,
    each runs ON CLUSTER and the tables use Replicated engines (replica paths from the servers'
    default_replica_path / {replica} macros), as the exporter's cluster_name and table_engine
    options make them; then a Distributed table over each (sharded by cityHash64(TraceId): a
    trace's spans and its lookup row stay on one shard, where the view fills the lookup).
    Then threadline's own table by trace id and its view (`BY_TRACE_SUFFIX`), its comment saying
    from when it holds every span (`complete_from_ns`; `copying` while older spans are being
    copied into it), its TTL `by_trace_ttl` (the traces table's, as ClickHouse shows it) or else
    the retention's."""
    on = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    rep = "Replicated" if cluster else ""
    db = ident(database)
    traces = f"{db}.{ident(table)}"
    lookup = f"{db}.{ident(table + '_trace_id_ts')}"
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {db}{on}",
        _TRACES_DDL.format(
            table=traces,
            on_cluster=on,
            engine=f"{rep}MergeTree()",
            ttl=ttl_expr("Timestamp", ttl_ns),
        ),
        _LOOKUP_DDL.format(
            table=lookup,
            on_cluster=on,
            engine=f"{rep}AggregatingMergeTree()",
            ttl=ttl_expr("Start", ttl_ns),
        ),
        _VIEW_DDL.format(
            view=f"{db}.{ident(table + '_trace_id_ts_mv')}",
            on_cluster=on,
            lookup=lookup,
            table=traces,
        ),
    ]

    def distributed(local: str) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {db}.{ident(local + DIST_SUFFIX)}{on} "
            f"AS {db}.{ident(local)}\nENGINE = Distributed({literal(cluster or '')}, "
            f"{literal(database)}, {literal(local)}, cityHash64(TraceId))"
        )

    if cluster:
        statements += [distributed(table), distributed(table + "_trace_id_ts")]
    by_trace = f"{db}.{ident(table + BY_TRACE_SUFFIX)}"
    statements += [
        _BY_TRACE_DDL.format(
            table=by_trace,
            on_cluster=on,
            engine=f"{rep}MergeTree()",
            ttl=ttl_expr("Timestamp", ttl_ns)
            if by_trace_ttl is None
            else f"TTL {by_trace_ttl}\n" * bool(by_trace_ttl),
            comment=literal(_complete_from_comment(table, complete_from_ns, copying)),
        ),
        _BY_TRACE_VIEW_DDL.format(
            view=f"{db}.{ident(table + BY_TRACE_SUFFIX + '_mv')}",
            on_cluster=on,
            by_trace=by_trace,
            columns=_INSERT_COLUMNS,
            table=traces,
        ),
    ]
    if cluster:
        statements.append(distributed(table + BY_TRACE_SUFFIX))
    return statements


def _complete_from_comment(table: str, ns: int, copying: bool = False) -> str:
    return _COMPLETE_FROM.format(table=table, ns=ns, copying=_COPYING if copying else "")


class LayoutMismatch(StoreUnavailable):
    """An existing table whose columns are not the exporter's layout: nothing is written to it."""


# ------------------------------------------------------------------------- value forms


def _go_float(v: float) -> str:
    """A double as Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, no exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)
    if "e" not in text:  # already the shortest digits without an exponent: "2.5", "100.0"
        text = text.removesuffix(".0")
        return "0" if text == "-0" else text
    text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _raw(v: Any) -> Any:
    """A value inside a JSON array or map as pdata's AsRaw marshals it."""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {k: _raw(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_raw(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return _go_float(v)
    return v


def as_string(v: Any) -> str:
    """An attribute value as the exporter stores it (pdata Value.AsString)."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return _go_float(v)
    if t is bytes:
        return base64.b64encode(v).decode()
    if v is None:
        return ""
    return json.dumps(_raw(v), ensure_ascii=False, separators=(",", ":"), sort_keys=t is dict)


_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
# how every form typed() gives back begins: true, false, a number, NaN, +Inf, -Inf, JSON
_TYPED_FIRST = frozenset("tf-0123456789N+[{")


def typed(s: str) -> Any:
    """A stored string back as the value it most likely was (see the module docstring)."""
    # the first character rules out most forms: no pattern runs on ordinary text
    first = s[:1]
    if not first or first not in _TYPED_FIRST:
        return s
    if s == "true":
        return True
    if s == "false":
        return False
    if _INT.fullmatch(s):
        n = int(s)
        return n if -(2**63) <= n < 2**63 else s
    if _DECIMAL.fullmatch(s):
        return float(s)
    if s in ("NaN", "+Inf", "-Inf"):
        return float(s.replace("Inf", "inf"))
    if first in ("[", "{"):
        try:
            value = json.loads(s)
        except ValueError:
            return s
        if isinstance(value, list | dict):
            return value
    return s


def _typed_map(m: dict[str, str]) -> dict[str, Any]:
    return {k: typed(v) for k, v in m.items()}


def _strings(attrs: dict[str, Any]) -> dict[str, str]:
    return {k: as_string(v) for k, v in attrs.items()}


# --------------------------------------------------------------------------- the rows

_INSERT_COLUMNS = (
    "Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, "
    "ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, "
    "StatusMessage, `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, "
    "`Links.SpanId`, `Links.TraceState`, `Links.Attributes`"
)
_INSERT_STRUCTURE = (
    "ts Int64, tid String, sid String, pid String, tstate String, name String, kind String, "
    "service String, res Map(String, String), sname String, sver String, "
    "attrs Map(String, String), dur UInt64, status String, smsg String, ets Array(Int64), "
    "en Array(String), ea Array(Map(String, String)), lt Array(String), ls Array(String), "
    "lst Array(String), la Array(Map(String, String))"
)
_INSERT_SELECT = (
    "fromUnixTimestamp64Nano(ts), tid, sid, pid, tstate, name, kind, service, res, sname, sver, "
    "attrs, dur, status, smsg, arrayMap(x -> fromUnixTimestamp64Nano(x), ets), en, ea, lt, ls, "
    "lst, la"
)
_MASK = (1 << 64) - 1


def _hex(n: int | None) -> str:
    return "" if n is None else format(n & _MASK, "016x")


# the layout's columns a row of the exporter's is made of (not the search index)
_ROW_COLUMNS = (
    "tid_hi", "tid_lo", "span_id", "parent_id", "service", "name", "kind", "start_ns",
    "duration_ns", "status_code", "status_message", "attributes", "resource", "scope_name",
    "scope_version", "scope_attributes", "events", "links", "trace_state", "flags", "dropped",
    "schema_urls",
)  # fmt: skip


def export_lines(columns: list[Rows]) -> str:
    """The rows as JSONCompactEachRow lines in _INSERT_STRUCTURE: the exporter's values."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    resources: dict[str | None, dict[str, str]] = {}
    out = []
    for rows in columns:
        table = rows.table()  # column by column: cheaper than a dict per row from Arrow
        for values in zip(*(table.column(n).to_pylist() for n in _ROW_COLUMNS), strict=True):
            r = dict(zip(_ROW_COLUMNS, values, strict=True))
            attrs = _strings(decode_attrs(r["attributes"]))
            kind, status = r["kind"], r["status_code"]
            kind_name = KIND_NAMES[kind] if 0 <= kind < len(KIND_NAMES) else ""
            if not kind_name:
                attrs[KIND] = str(kind)
            status_name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else ""
            if not status_name:
                attrs[STATUS] = str(status)
            if r["dropped"]:
                attrs[DROPPED] = r["dropped"]
            if r["flags"]:
                attrs[FLAGS] = str(r["flags"])
            if r["schema_urls"]:
                attrs[SCHEMA_URLS] = r["schema_urls"]
            if r["scope_attributes"]:
                attrs[SCOPE_ATTRIBUTES] = r["scope_attributes"]
            res = resources.get(r["resource"])
            if res is None:
                res = resources[r["resource"]] = _strings(decode_attrs(r["resource"]))
            events = json.loads(r["events"]) if r["events"] else []
            links = json.loads(r["links"]) if r["links"] else []
            event_attrs = []
            for _, _, a, dropped in events:
                m = _strings(untag_value(a)) if a else {}
                if dropped:
                    m[DROPPED] = str(dropped)
                event_attrs.append(m)
            link_attrs = []
            for _, _, _, a, dropped, flags in links:
                m = _strings(untag_value(a)) if a else {}
                if dropped:
                    m[DROPPED] = str(dropped)
                if flags:
                    m[FLAGS] = str(flags)
                link_attrs.append(m)
            out.append(
                dumps(
                    [
                        r["start_ns"],
                        _hex(r["tid_hi"]) + _hex(r["tid_lo"]),
                        _hex(r["span_id"]),
                        _hex(r["parent_id"]),
                        r["trace_state"] or "",
                        r["name"],
                        kind_name,
                        r["service"],
                        res,
                        r["scope_name"] or "",
                        r["scope_version"] or "",
                        attrs,
                        max(0, r["duration_ns"]),
                        status_name,
                        r["status_message"] or "",
                        [e[0] for e in events],
                        [e[1] for e in events],
                        event_attrs,
                        [lk[0] for lk in links],
                        [lk[1] for lk in links],
                        [lk[2] or "" for lk in links],
                        link_attrs,
                    ]
                )
            )
    return "\n".join(out)


_SELECT = (
    "TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, "
    "ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, "
    "toUnixTimestamp64Nano(Timestamp), Duration, StatusCode, StatusMessage, "
    "arrayMap(t -> toUnixTimestamp64Nano(t), `Events.Timestamp`), `Events.Name`, "
    "`Events.Attributes`, `Links.TraceId`, `Links.SpanId`, `Links.TraceState`, "
    "`Links.Attributes`"
)
_PENDING_SQL = f"SpanAttributes['{PENDING}'] = 'true'"
_SUMMARY_COLUMNS = (
    "TraceId, SpanId, ParentSpanId, ServiceName, SpanName, toUnixTimestamp64Nano(Timestamp), "
    "Duration, StatusCode"
)
_SUMMARY_SELECT = f"{_SUMMARY_COLUMNS}, {_PENDING_SQL}, SpanAttributes['{STATUS}']"
# whether a row holds either attribute a summary reads: the map's keys alone, far less to read
# than its values
_SUMMARY_FLAGGED = (
    f"{_SUMMARY_COLUMNS}, has(SpanAttributes.keys, '{PENDING}') "
    f"OR has(SpanAttributes.keys, '{STATUS}'), ''"
)


def _status(name: str, own: str) -> int:
    """A status code from its column and threadline's own attribute (codes beyond the names)."""
    return int(own) if _INT.fullmatch(own) else _STATUSES.get(name, 0)


def _count(m: dict[str, Any], key: str) -> int:
    try:
        return int(m.pop(key, 0) or 0)
    except (TypeError, ValueError):
        return 0


def read_span(row: list[Any], resources: dict[Any, dict[str, Any]] | None = None) -> Span:
    (trace_id, span_id, parent_id, trace_state, name, kind_name, service, resource, scope_name,
     scope_version, attributes, start_ns, duration_ns, status_name, status_message, event_times,
     event_names, event_attrs, link_traces, link_spans, link_states, link_attrs) = row  # fmt: skip
    raw = dict(attributes)
    own = {k: raw.pop(k) for k in OWN_KEYS if k in raw}
    attrs = _typed_map(raw)
    kind = _KINDS.get(kind_name, 0)
    if KIND in own:
        kind = int(own[KIND]) if _INT.fullmatch(own[KIND]) else kind
    status = _STATUSES.get(status_name, 0)
    if STATUS in own:
        status = int(own[STATUS]) if _INT.fullmatch(own[STATUS]) else status
    d = read_dropped(own.get(DROPPED))
    urls = own[SCHEMA_URLS].split("\n", 1) if SCHEMA_URLS in own else ["", ""]
    if len(urls) < 2:
        urls.append("")
    # spans of one resource carry the same map in the same order; another order only costs
    # another entry
    key = tuple(resource.items()) if resources is not None else None
    res = resources.get(key) if resources is not None else None
    if res is None:
        res = _typed_map(resource)
        if resources is not None:
            resources[key] = res
    events = []
    for t, n, a in zip(event_times, event_names, event_attrs, strict=False):
        a = dict(a)
        dropped = _count(a, DROPPED)
        events.append(Event(t, n, _typed_map(a), dropped))
    links = []
    for t, s, ts, a in zip(link_traces, link_spans, link_states, link_attrs, strict=False):
        a = dict(a)
        dropped, flags = _count(a, DROPPED), _count(a, FLAGS)
        links.append(Link(t, s, ts, _typed_map(a), dropped, flags))
    return Span(
        trace_id.lower(),
        span_id.lower(),
        parent_id.lower(),
        name,
        kind,
        start_ns,
        start_ns + duration_ns,
        service,
        status,
        status_message,
        attrs,
        res,
        scope_name,
        scope_version,
        decode_attrs(own.get(SCOPE_ATTRIBUTES)),
        events,
        links,
        trace_state,
        int(own[FLAGS]) if _INT.fullmatch(own.get(FLAGS, "")) else 0,
        d[0],
        d[1],
        d[2],
        urls[0],
        urls[1],
        d[3],
        d[4],
    )


# the first slice a search reads back from its end; each next one is 8 times longer
_FIRST_SLICE_NS = 3600 * 10**9


def _from_sql(ns: int, p: _Params) -> str:
    return f"Timestamp >= fromUnixTimestamp64Nano({p.add(ns, 'Int64')})"


class _Params:
    """Bound parameters of one statement: `add` returns the placeholder of a value."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, type_: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{type_}}}"


def _names_of(code: int, table: dict[str, int]) -> list[str]:
    return [n for n, c in table.items() if c == code]


class ClickHouseStore(Store):
    """Spans in the exporter's tables, through a Connection (embedded chdb or HTTP)."""

    retention_by_ttl = True

    def __init__(
        self,
        conn: Connection,
        database: str = "otel",
        table: str = "otel_traces",
        cluster: str | None = None,
        ttl_ns: int | None = None,
    ) -> None:
        self._conn = conn
        self.database, self.table, self.cluster = database, table, cluster
        # on a cluster, reads and writes go through the Distributed tables (all shards); a
        # write waits until its shard has stored it, so acknowledged still means stored
        dist = DIST_SUFFIX if cluster else ""
        self._local = f"{ident(database)}.{ident(table)}"
        self._t = f"{ident(database)}.{ident(table + dist)}"
        self._lookup = f"{ident(database)}.{ident(table + '_trace_id_ts' + dist)}"
        self._by_trace_local = f"{ident(database)}.{ident(table + BY_TRACE_SUFFIX)}"
        self._by_trace = f"{ident(database)}.{ident(table + BY_TRACE_SUFFIX + dist)}"
        self._insert_settings = {"insert_distributed_sync": 1} if cluster else {}
        self._on_cluster = f" ON CLUSTER {ident(cluster)}" if cluster else ""
        self._closing = threading.Event()
        self._copier: threading.Thread | None = None
        try:
            self._check_layout()
            self._create_missing(ttl_ns)
            self._complete_from, copying = self._by_trace_state()
            # a CTE read once for all its uses (ClickHouse 25.x on): dependencies use it
            self._materialized_cte = bool(
                conn.rows(
                    "SELECT count() FROM system.settings WHERE name = 'enable_materialized_cte'"
                )[0][0]
            )
        except BaseException:
            conn.close()
            raise
        if copying and self._complete_from:  # older spans to copy (the view is there)
            self._copier = threading.Thread(
                target=self._copy_older, name="threadline-by-trace-copy", daemon=True
            )
            self._copier.start()

    def _create_missing(self, ttl_ns: int | None) -> None:
        """Run the DDL of what does not exist yet: a reader that may not create tables can use
        tables someone else made (IF NOT EXISTS alone would still ask for the grant)."""
        db = {"db": self.database}
        has_db = self._conn.rows(
            "SELECT count() FROM system.databases WHERE name = {db:String}", db
        )
        existing = {
            r[0]
            for r in self._conn.rows(
                "SELECT name FROM system.tables WHERE database = {db:String}", db
            )
        }
        names = [None, *table_names(self.table, self.cluster)]
        by_trace = self.table + BY_TRACE_SUFFIX
        from_now = time.time_ns() + _CLOCK_MARGIN_NS
        statements = create_statements(
            self.database,
            self.table,
            self.cluster,
            ttl_ns,
            # until the rows already there are copied: from now on (and a clock's margin)
            complete_from_ns=from_now,
            copying=True,
            # the traces table's own TTL when someone else made it: the copy lives as long
            by_trace_ttl=self._traces_ttl() if self.table in existing else None,
        )
        steps = list(zip(names, statements, strict=True))
        # the collector's tables first, then threadline's own (the last names)
        ours = [(n, q) for n, q in steps if n is not None and n.startswith(by_trace)]
        for name, sql in steps[: len(steps) - len(ours)]:
            if not (has_db[0][0] if name is None else name in existing):
                self._conn.execute(sql)
        try:
            for name, sql in ours:
                if name not in existing:
                    self._conn.execute(sql)
            if by_trace not in existing:
                # nothing to copy: complete at once (the view holds all that comes after);
                # else the copy runs once the store is open (`_copy_older`)
                if not self._conn.rows(f"SELECT 1 FROM {self._t} LIMIT 1"):
                    self._mark_complete_from(0)
            elif by_trace + "_mv" not in existing:  # what was written while it was gone is not
                self._mark_complete_from(from_now)  # in it: older traces from the traces table
        except (RuntimeError, QueryTooCostly) as exc:
            # not granted, say: reads keep to the collector's tables
            self._warn_incomplete(exc)

    def _warn_incomplete(self, exc: BaseException) -> None:
        """Once, when the table by trace id cannot be made or filled: reads keep to the
        collector's tables (all, or the traces older than a copy that did not finish)."""
        log.warning(
            "%s.%s is not complete (%s): traces it does not hold whole are read from %s",
            self.database,
            self.table + BY_TRACE_SUFFIX,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            self.table,
        )

    def _traces_ttl(self) -> str:
        """The TTL expression of the traces table as ClickHouse shows it, "" for none."""
        rows = self._conn.rows(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} "
            "AND name = {t:String}",
            {"db": self.database, "t": self.table},
        )
        found = re.search(r"\bTTL (.+?)(?: SETTINGS |$)", rows[0][0]) if rows else None
        return found.group(1) if found else ""

    def _copy_older(self) -> None:
        """Copy the spans older than the table's "complete from" into it, newest hour first,
        moving that mark back to each hour's start once the hour is in, then to 0. It runs
        beside the store: reads take from this table the traces that begin at or after the
        mark, the others from the traces table, and a restart resumes from the mark. Rows
        inserted meanwhile may be copied twice: reads keep one row per span (`supersede`)."""
        name = f"{self.database}.{self.table}{BY_TRACE_SUFFIX}"
        try:
            hours = self._conn.rows(
                f"SELECT toUnixTimestamp(toStartOfHour(Timestamp)) AS h, count() FROM {self._t} "
                "WHERE Timestamp < fromUnixTimestamp64Nano({since:Int64}) GROUP BY h ORDER BY h DESC",
                {"since": self._complete_from or 0},
            )
            total, done, logged = sum(n for _, n in hours), 0, time.monotonic()
            log.info("%s: copying %d older spans, newest hour first", name, total)
            for hour, spans in hours:
                if not self._copy_hour(hour, spans):
                    return
                self._mark_complete_from(hour * 10**9, copying=True)
                done += spans
                if time.monotonic() - logged >= _COPY_LOG_EVERY_S:
                    logged = time.monotonic()
                    log.info(
                        "%s: %d of %d spans copied, complete from %s",
                        name,
                        done,
                        total,
                        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(hour)),
                    )
            self._mark_complete_from(0)
            log.info("%s: complete (%d spans copied)", name, total)
        except Exception as exc:  # noqa: BLE001 - any failure: reads fall back, serving goes on
            if not self._closing.is_set():
                self._warn_incomplete(exc)

    def _copy_hour(self, hour: int, spans: int) -> bool:
        """Copy the hour from `hour` (Unix seconds) in slices of whole seconds, newest first,
        each a short insert; False when the store closes meanwhile."""
        step = math.ceil(3600 / max(1, math.ceil(spans / _COPY_SLICE_SPANS)))
        # one thread and small blocks: the copy stays well inside the query memory bound
        settings = settings_clause({**self._insert_settings, **_COPY_SETTINGS})
        for end in range(hour + 3600, hour, -step):
            if self._closing.wait(_COPY_PAUSE_S):
                return False
            self._conn.execute(
                f"INSERT INTO {self._by_trace}{settings} SELECT {_INSERT_COLUMNS} FROM {self._t} "
                "WHERE Timestamp >= fromUnixTimestamp({lo:Int64}) "
                "AND Timestamp < fromUnixTimestamp({hi:Int64})",
                {"lo": max(hour, end - step), "hi": end},
            )
        return True

    def _mark_complete_from(self, ns: int, copying: bool = False) -> None:
        comment = _complete_from_comment(self.table, ns, copying)
        self._conn.execute(
            f"ALTER TABLE {self._by_trace_local}{self._on_cluster} "
            f"MODIFY COMMENT {literal(comment)}"
        )
        self._complete_from = ns

    def _by_trace_state(self) -> tuple[int | None, bool]:
        """From when the table by trace id holds every span (0: always; None when it cannot
        tell, or the view that fills it is missing), and whether older spans are being
        copied into it."""
        name = self.table + BY_TRACE_SUFFIX
        found = dict(
            self._conn.rows(
                "SELECT name, comment FROM system.tables WHERE database = {db:String} "
                "AND name IN {names:Array(String)}",
                {"db": self.database, "names": [name, name + "_mv"]},
            )
        )
        complete = _COMPLETE_FROM_RE.match(found.get(name, ""))
        if not complete or name + "_mv" not in found:
            return None, False
        return int(complete.group(1)), bool(complete.group(2))

    def _check_layout(self) -> None:
        """Refuse tables that exist with other columns (before anything is created or written)."""
        layouts = [
            (self.table, TRACES_COLUMNS),
            (self.table + "_trace_id_ts", LOOKUP_COLUMNS),
            (self.table + BY_TRACE_SUFFIX, BY_TRACE_COLUMNS),
        ]
        if self.cluster:
            layouts += [(name + DIST_SUFFIX, columns) for name, columns in layouts]
        for name, expected in layouts:
            have = self._conn.rows(
                "SELECT name, type FROM system.columns WHERE database = {db:String} "
                "AND table = {t:String} ORDER BY position",
                {"db": self.database, "t": name},
            )
            if not have:
                continue
            for i, want in enumerate(expected):
                got = tuple(have[i]) if i < len(have) else None
                if got != want:
                    found = f"{got[0]} {got[1]}" if got else "nothing"
                    raise LayoutMismatch(
                        f"table {self.database}.{name} is not the collector's layout: column "
                        f"{i + 1} should be {want[0]} {want[1]}, found {found}; refusing to use it"
                    )
            if len(have) > len(expected):
                extra = have[len(expected)]
                raise LayoutMismatch(
                    f"table {self.database}.{name} is not the collector's layout: extra column "
                    f"{extra[0]} {extra[1]}; refusing to use it"
                )

    # -- write

    def write(self, spans: list[Span]) -> None:
        self.write_columns([SpanColumns().add_spans(spans)])

    def write_columns(self, columns: list[Rows]) -> None:
        columns = [c for c in columns if len(c)]
        if not columns:
            return
        # one synchronous insert: acknowledged once ClickHouse has stored it
        self._conn.insert(
            self._t,
            _INSERT_COLUMNS,
            _INSERT_SELECT,
            _INSERT_STRUCTURE,
            export_lines(columns),
            self._insert_settings,
        )

    # -- read

    def _spans(self, sql: str, params: dict[str, Any]) -> list[Span]:
        resources: dict[Any, dict[str, Any]] = {}
        return supersede(read_span(r, resources) for r in self._conn.rows(sql, params))

    def _trace_rows(self, ids: list[str], select: str = _SELECT) -> list[list[Any]]:
        """Rows of the given traces (`select`, TraceId first), from the table by trace id for
        traces it holds whole; the others (they began before it was complete) from the traces
        table, the lookup table bounding the scan in time, ids it does not know (rows written
        before its view existed) by id alone. The mark is read once: a copy moves it back."""
        since = self._complete_from
        if since == 0:
            return self._by_trace_rows(ids, select)
        known = self._conn.rows(
            f"SELECT TraceId, toUnixTimestamp(min(Start)), toUnixTimestamp(max(End)) "
            f"FROM {self._lookup} WHERE TraceId IN {{ids:Array(String)}} GROUP BY TraceId",
            {"ids": ids},
        )
        whole = {k[0] for k in known if since is not None and k[1] * 1_000_000_000 >= since}
        older = [k for k in known if k[0] not in whole]
        rows = self._by_trace_rows(sorted(whole), select) if whole else []
        if older:
            rows += self._conn.rows(
                f"SELECT {select} FROM {self._t} WHERE TraceId IN {{ids:Array(String)}} "
                "AND Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) "
                "AND Timestamp < fromUnixTimestamp64Nano({hi:Int64})",
                {
                    "ids": [k[0] for k in older],
                    "lo": min(k[1] for k in older) * 1_000_000_000,
                    "hi": (max(k[2] for k in older) + 1) * 1_000_000_000,
                },
            )
        rest = sorted(set(ids) - {k[0] for k in known})
        if rest:
            rows += self._conn.rows(
                f"SELECT {select} FROM {self._t} WHERE TraceId IN {{ids:Array(String)}}",
                {"ids": rest},
            )
        return rows

    def _by_trace_rows(self, ids: list[str], select: str) -> list[list[Any]]:
        return self._conn.rows(
            f"SELECT {select} FROM {self._by_trace} WHERE TraceId IN {{ids:Array(String)}}",
            {"ids": ids},
        )

    def get_traces(self, trace_ids: list[str]) -> dict[str, list[Span]]:
        ids = [t for t in dict.fromkeys(t.lower() for t in trace_ids) if _is_hex(t, 32)]
        if not ids:
            return {}
        by_trace: dict[str, list[list[Any]]] = {}
        for r in self._trace_rows(ids):
            by_trace.setdefault(r[0].lower(), []).append(r)
        out = {}
        for t in ids:
            if t in by_trace:
                resources: dict[Any, dict[str, Any]] = {}
                out[t] = supersede(read_span(r, resources) for r in by_trace[t])
        return out

    def _where(self, q: Query, p: _Params) -> str:
        conds = ["1"]
        if q.service:
            conds.append(f"ServiceName = {p.add(q.service, 'String')}")
        if q.operation:
            conds.append(f"SpanName = {p.add(q.operation, 'String')}")
        if q.kind is not None:
            conds.append(f"SpanKind IN {p.add(_names_of(q.kind, _KINDS), 'Array(String)')}")
        if q.start_ns is not None:
            conds.append(f"Timestamp >= fromUnixTimestamp64Nano({p.add(q.start_ns, 'Int64')})")
        if q.end_ns is not None:
            conds.append(f"Timestamp < fromUnixTimestamp64Nano({p.add(q.end_ns, 'Int64')})")
        if q.min_duration_ns is not None:
            conds.append(f"Duration >= {p.add(max(0, q.min_duration_ns), 'UInt64')}")
        if q.max_duration_ns is not None:
            conds.append(f"toInt64(Duration) <= {p.add(q.max_duration_ns, 'Int64')}")
        if q.status_code is not None:
            names = _names_of(q.status_code, _STATUSES)
            conds.append(f"StatusCode IN {p.add(names, 'Array(String)')}")
        for alternatives in q.filters:
            conds.append("(" + " OR ".join(self._filter_sql(f, p) for f in alternatives) + ")")
        return " AND ".join(conds)

    @staticmethod
    def _filter_sql(f: Filter, p: _Params) -> str:
        """`=`/`!=` compare the stored text (the value's text form); `<`... compare
        toFloat64OrNull of it; `!=` needs the key (as the Filter contract says)."""
        key = p.add(f.key, "String")
        parts = []
        for column, scope in (("SpanAttributes", "span"), ("ResourceAttributes", "resource")):
            if f.scope not in (scope, "any"):
                continue
            present = f"mapContains({column}, {key})"
            if f.op == "exists":
                parts.append(present)
            elif f.op == "!exists":
                parts.append(f"NOT {present}")
            elif f.op in ("=", "!="):
                value = p.add(str(f.value), "String")
                parts.append(f"({present} AND {column}[{key}] {f.op} {value})")
            else:
                number = p.add(f.number, "Float64")
                parts.append(f"(toFloat64OrNull({column}[{key}]) {f.op} {number})")
        joiner = " AND " if f.op == "!exists" else " OR "
        return "(" + joiner.join(parts) + ")"

    def find_trace_ids(self, query: Query) -> list[str]:
        # the latest matching spans, in time slices back from the newest (each reads only its
        # days' partitions), widening the slice until it holds `limit` traces: every span older
        # than a slice sorts after every span in it, so its first `limit` traces are the answer
        p = _Params()
        where = self._where(query, p)
        limit = int(query.limit)
        first, last = self._conn.rows(
            f"SELECT toUnixTimestamp64Nano(min(Timestamp)), "
            f"toUnixTimestamp64Nano(max(Timestamp)) FROM {self._t}"
        )[0]
        lo = first if query.start_ns is None else max(first, query.start_ns)
        hi = last + 1 if query.end_ns is None else min(last + 1, query.end_ns)
        if lo >= hi:
            return []
        span = _FIRST_SLICE_NS
        while True:
            cut = max(lo, hi - span)
            ids = self._latest_trace_ids(f"{where} AND {_from_sql(cut, p)}", p.values, limit)
            if len(ids) >= limit or cut <= lo:
                return ids
            span *= 8

    def _latest_trace_ids(self, where: str, params: dict[str, Any], limit: int) -> list[str]:
        """The first `limit` traces of the matching spans, newest first: the latest few spans,
        more until they hold `limit` traces or all were read."""
        window = limit * 4
        while True:
            rows = self._conn.rows(
                f"SELECT TraceId FROM {self._t} WHERE {where} "
                f"ORDER BY Timestamp DESC, TraceId DESC LIMIT {int(window)}",
                params,
            )
            ids = list(dict.fromkeys(r[0].lower() for r in rows))
            if len(ids) >= limit or len(rows) < window:
                return ids[:limit]
            window *= 8

    def summaries(self, trace_ids: list[str]) -> list[TraceSummary]:
        # the few columns a summary needs, not the attribute maps, events and links
        ids = [t for t in dict.fromkeys(t.lower() for t in trace_ids) if _is_hex(t, 32)]
        if not ids:
            return []
        rows = self._trace_rows(ids, _SUMMARY_FLAGGED)
        flagged = {r[0] for r in rows if r[8]}
        if flagged:  # traces with pending spans or own status codes: read those values
            rows = [r for r in rows if r[0] not in flagged]
            rows += self._trace_rows(sorted(flagged), _SUMMARY_SELECT)
        by_trace: dict[str, list[list[Any]]] = {}
        for r in rows:
            by_trace.setdefault(r[0].lower(), []).append(r)
        out = []
        for t in ids:
            # one row per span (`base.one_per_span`): a completed span supersedes its pending copy
            kept = one_per_span(by_trace.get(t, []), lambda r: r[1].lower(), lambda r: bool(r[8]))
            if not kept:
                continue
            spans = sorted(kept, key=lambda r: r[5])
            root = next((r for r in spans if not r[2]), spans[0])
            start = spans[0][5]
            out.append(
                TraceSummary(
                    trace_id=t,
                    root_service=root[3],
                    root_name=root[4],
                    start_ns=start,
                    duration_ns=max(r[5] + r[6] for r in spans) - start,
                    span_count=len(spans),
                    services=sorted({r[3] for r in spans}),
                    error_count=sum(1 for r in spans if _status(r[7], r[9]) == STATUS_ERROR),
                    incomplete_count=sum(1 for r in spans if r[8]),
                )
            )
        return out

    def spans_between(
        self, start_ns: int, end_ns: int, service: str | None = None, limit: int | None = None
    ) -> list[Span]:
        p = _Params()
        sql = (
            f"SELECT {_SELECT} FROM {self._t} "
            f"WHERE Timestamp >= fromUnixTimestamp64Nano({p.add(start_ns, 'Int64')}) "
            f"AND Timestamp < fromUnixTimestamp64Nano({p.add(end_ns, 'Int64')})"
        )
        if service:
            sql += f" AND ServiceName = {p.add(service, 'String')}"
        sql += " ORDER BY Timestamp"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._spans(sql, p.values)

    def count_between(self, start_ns: int, end_ns: int, at_most: int) -> int:
        p = _Params()
        sql = (
            f"SELECT count() FROM (SELECT 1 FROM {self._t} "
            f"WHERE Timestamp >= fromUnixTimestamp64Nano({p.add(start_ns, 'Int64')}) "
            f"AND Timestamp < fromUnixTimestamp64Nano({p.add(end_ns, 'Int64')}) "
            f"LIMIT {int(at_most) + 1})"
        )
        return int(self._conn.rows(sql, p.values)[0][0])

    def services(self) -> list[str]:
        return [
            r[0] for r in self._conn.rows(f"SELECT DISTINCT ServiceName FROM {self._t} ORDER BY 1")
        ]

    def operations(
        self, service: str | None = None, kind: int | None = None
    ) -> list[tuple[str, int]]:
        p = _Params()
        sql = f"SELECT DISTINCT SpanName, SpanKind, SpanAttributes['{KIND}'] FROM {self._t} WHERE 1"
        if service:
            sql += f" AND ServiceName = {p.add(service, 'String')}"
        found = set()
        for name, kind_name, own_kind in self._conn.rows(sql, p.values):
            k = int(own_kind) if _INT.fullmatch(own_kind) else _KINDS.get(kind_name, 0)
            if kind is None or k == kind:
                found.add((name, k))
        return sorted(found)

    def dependencies(self, start_ns: int, end_ns: int) -> list[Dependency]:
        window = {"lo": start_ns, "hi": end_ns}
        client = "('" + "', '".join(_names_of(KIND_CLIENT, _KINDS)) + "')"
        keys = "['" + "', '".join(peers.KEYS) + "']"
        flags = "['" + "', '".join((PENDING, *peers.KEYS)) + "']"
        # a CLIENT span naming its peer keeps the texts `peers.peer_of` names it from
        texts = ", ".join(f"SpanAttributes['{k}']" for k in peers.KEYS)
        narrow = (
            "TraceId, SpanId, ParentSpanId, ServiceName, SpanKind, Links.TraceId AS lt, "
            "Links.SpanId AS ls"
        )
        in_window = (
            "Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) "
            "AND Timestamp < fromUnixTimestamp64Nano({hi:Int64})"
        )
        # attribute values are most of the read, and only rows carrying a key in `flags` (a
        # pending flag, a peer's name) need them: those rows are read apart, with their values,
        # found through the index on the map's keys (`mapKeys(...)` is the form it matches); the
        # rest read the keys alone (`.keys` reads no values; the window is tested first)
        spans = (
            f"SELECT {narrow}, toUInt8(0) AS pending, CAST([], 'Array(String)') AS peer "
            f"FROM {self._t} PREWHERE {in_window} "
            f"WHERE NOT arrayExists(k -> k IN {flags}, SpanAttributes.keys) "
            f"UNION ALL SELECT {narrow}, toUInt8({_PENDING_SQL}) AS pending, "
            f"if(SpanKind IN {client} AND hasAny(mapKeys(SpanAttributes), {keys}), [{texts}], "
            f"[]) AS peer FROM {self._t} "
            f"WHERE {in_window} AND hasAny(mapKeys(SpanAttributes), {flags})"
        )
        # one row per span, `base.one_per_span` in SQL: a completed span supersedes its pending
        # copy (pending sorts false first), and a re-sent span counts once
        spans = f"SELECT * FROM ({spans}) ORDER BY pending LIMIT 1 BY TraceId, SpanId"
        producer, consumer = (
            "('" + "', '".join(_names_of(k, _KINDS)) + "')" for k in (KIND_PRODUCER, KIND_CONSUMER)
        )
        # one statement: the calls within traces, then the spans that link (across traces, a
        # span links to the span that caused it, a consumer to its producer); where the engine
        # can, the window's spans are read and sorted once for both, not once per use
        cte, settings = (
            ("w AS MATERIALIZED", " SETTINGS enable_materialized_cte = 1")
            if self._materialized_cte
            else ("w AS", "")
        )
        rows = self._conn.rows(
            f"WITH {cte} ({spans}) "
            "SELECT 'call', p.ServiceName, c.ServiceName, "
            f"if(p.SpanKind IN {producer} AND c.SpanKind IN {consumer}, 'messaging', 'call'), "
            "count(), [], [] FROM w AS c INNER JOIN w AS p "
            "ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId "
            "WHERE c.ServiceName != p.ServiceName GROUP BY 2, 3, 4 "
            "UNION ALL SELECT 'link', ServiceName, SpanKind, '', 0, lt, ls FROM w "
            "WHERE notEmpty(lt) "
            # CLIENT spans no span answered: calls to a database or external service
            "UNION ALL SELECT 'peer', c.ServiceName, '', '', count(), c.peer, [] "
            "FROM w AS c LEFT ANTI JOIN w AS k "
            "ON k.TraceId = c.TraceId AND k.ParentSpanId = c.SpanId "
            f"WHERE notEmpty(c.peer) GROUP BY c.ServiceName, c.peer{settings}",
            window,
        )
        deps: dict[tuple[str, str, str], int] = {
            (p, c, k): n for what, p, c, k, n, _, _ in rows if what == "call"
        }
        for what, service, _, _, n, texts, _ in rows:
            peer = peers.peer_of(texts) if what == "peer" else None
            if peer is not None:
                key = (service, peer.name, peer.kind)
                deps[key] = deps.get(key, 0) + n
        linked = [(r[1], r[2], r[5], r[6]) for r in rows if r[0] == "link"]
        targets: dict[tuple[str, str], list[tuple[str, int]]] = {}
        malformed = 0
        for service, kind_name, lts, lss in linked:
            for t, s in zip(lts, lss, strict=False):
                if _is_hex(t, 32) and _is_hex(s, 16):
                    targets.setdefault((t.lower(), s.lower()), []).append(
                        (service, _KINDS.get(kind_name, 0))
                    )
                else:
                    malformed += 1
        if malformed:
            log.warning("dependencies: %d link(s) with malformed ids skipped", malformed)
        if targets:
            found = self._conn.rows(
                f"SELECT TraceId, SpanId, any(ServiceName), any(SpanKind) FROM {self._t} "
                "WHERE TraceId IN {tids:Array(String)} AND (TraceId, SpanId) IN "
                "(SELECT tupleElement(x, 1), tupleElement(x, 2) "
                "FROM (SELECT arrayJoin(arrayZip({tids2:Array(String)}, {sids:Array(String)})) AS x)) "
                "GROUP BY TraceId, SpanId",
                {
                    "tids": sorted({t for t, _ in targets}),
                    "tids2": [t for t, _ in targets],
                    "sids": [s for _, s in targets],
                },
            )
            for t, s, service, kind_name in found:
                kind = _KINDS.get(kind_name, 0)
                for child, child_kind in targets.get((t.lower(), s.lower()), []):
                    if child != service:
                        messaging = kind == KIND_PRODUCER or child_kind == KIND_CONSUMER
                        key = (service, child, "messaging" if messaging else "link")
                        deps[key] = deps.get(key, 0) + 1
        return [Dependency(p, c, n, k) for (p, c, k), n in sorted(deps.items())]

    def delete_before(self, ns: int) -> int:
        """Retention is the tables' TTL; this deletes at once (a lightweight DELETE), for callers
        that ask for it."""
        params = {"ns": ns}
        cond = "Timestamp < fromUnixTimestamp64Nano({ns:Int64})"
        n = self._conn.rows(f"SELECT count() FROM {self._t} WHERE {cond}", params)[0][0]
        if n:  # a Distributed table takes no DELETE: delete on every shard's table
            for table in (self._local, self._by_trace_local):
                self._conn.execute(f"DELETE FROM {table}{self._on_cluster} WHERE {cond}", params)
        return n

    def stats(self) -> dict[str, Any]:
        n = self._conn.rows(f"SELECT count() FROM {self._t}")[0][0]
        size = self._conn.rows(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE active "
            "AND database = {db:String} AND table IN {t:Array(String)}",
            {"db": self.database, "t": [self.table, self.table + BY_TRACE_SUFFIX]},
        )
        out: dict[str, Any] = {
            "engine": self._conn.engine,
            "path" if self._conn.engine == "chdb" else "url": self._conn.where,
            "table": f"{self.database}.{self.table}",
            "spans": n,
        }
        if size and size[0][0] is not None:
            out["bytes_on_disk"] = int(size[0][0])
        return out

    def close(self) -> None:
        self._closing.set()
        if self._copier is not None:  # ends after its insert: the connection outlives it
            self._copier.join()
        self._conn.close()


def _is_hex(s: Any, n: int) -> bool:
    if not isinstance(s, str) or len(s) != n:
        return False
    try:
        int(s, 16)
    except ValueError:
        return False
    return True
