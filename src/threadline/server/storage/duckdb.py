"""The embedded engine: one DuckDB file (or ":memory:").

Layout, chosen for the two hot reads: trace ids are two BIGINT columns (a by-id lookup scans one
8-byte column, ~15 ms for 10M spans on one core, no index to maintain at ingest); spans append
in arrival order through Arrow (columnar, ~4x faster than parameter lists). Attribute maps are
kept as typed JSON text (layout.py), exact for every OTLP value type and searchable with
DuckDB's JSON functions; a cheap `contains` on the key runs before any JSON is parsed.

Writes to a file are durable segments first (segments.py): a write returns once its rows are in
a synced Arrow IPC file. Their rows are then loaded, read back from that file (mapped from the
page cache, so the writer's buffers are freed at once), into an in-memory table beside the
file's (`unmerged.spans`, indexed as the table is; by the background thread, or by the next
read, which must see them), and a background merge moves them into the file's table in one commit that also
records the last segment merged. Every read names `spans` and `traces`; while spans are
unmerged those become the table UNION ALL the in-memory rows (`_unmerged_sql`), so a span reads
the same before and after its merge. (DuckDB's scan of registered Arrow rows costs milliseconds
per query, which a search of many queries would pay on every read during ingest.) The window
is bounded: merging starts at MERGE_SPANS spans or after MERGE_AFTER_S, and writes wait while
MAX_UNMERGED_SPANS are unmerged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as _compute

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
    query_timeout_s,
    supersede,
)
from threadline.server.storage.layout import (
    COLUMNS,
    Rows,
    SpanColumns,
    decode_attrs,
    read_dropped,
    untag_value,
)
from threadline.server.storage.query import Filter, Query
from threadline.server.storage.segments import Segments

log = logging.getLogger("threadline.server")
pc: Any = _compute  # its kernels are made at import time: the stubs cannot name them

# The spans table: the layout's columns in DuckDB's types, with the attribute index DuckDB makes
# from attr_texts in its place: attr_kv (DuckDB's hash of each "key\0text form") and attr_sig
# (one bit per attr_kv hash: `key=value` reads it before the list).
_SQL_TYPES = {
    "int64": "BIGINT",
    "int32": "INTEGER",
    "uint32": "UINTEGER",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "list<item: string>": "VARCHAR[]",
    "list<item: double>": "DOUBLE[]",
}
TABLE = {
    **{k: _SQL_TYPES[str(t)] for k, t in COLUMNS.items() if k != "attr_texts"},
    "attr_kv": "UBIGINT[]",
    "attr_sig": "UBIGINT",
}
_MASK = (1 << 64) - 1
_HEX_ID = re.compile(r"[0-9a-fA-F]{32}:[0-9a-fA-F]{16}")
_SIGN = 1 << 63
# what a Span is read from, its ids as hex text made by the engine (cheaper than in Python)
_HEX = "lower(lpad(hex({}), 16, '0'))"
_SELECT = ", ".join(
    [
        _HEX.format("tid_hi") + " || " + _HEX.format("tid_lo"),
        _HEX.format("span_id"),
        f"CASE WHEN parent_id IS NULL THEN '' ELSE {_HEX.format('parent_id')} END",
        *list(TABLE)[4:-4],
    ]
)
# The builders hand over the index's texts ("key\0text form"); the engine hashes them, and sets
# one bit of attr_sig per hash: a 64-bit column `key=value` can rule most spans out with.
_KV = "list_transform(attr_texts, lambda t: CASE WHEN t IS NULL THEN NULL ELSE hash(t) END)"
_SIG = (
    "coalesce(list_aggregate(list_transform(list_filter(attr_kv, lambda h: h IS NOT NULL),"
    " lambda h: 1::UBIGINT << (h % 64)::INTEGER), 'bit_or'), 0)"
)
_FROM_ROWS = (  # the table's columns from layout rows (`{}`): the index made as an insert does
    "SELECT "
    + ", ".join(list(TABLE)[:-2])
    + f", attr_kv, {_SIG} FROM (SELECT *, {_KV} AS attr_kv FROM {{}})"
)
_INSERT = f"INSERT INTO spans ({', '.join(TABLE)}) " + _FROM_ROWS.format("batch")
_LOAD = f"INSERT INTO unmerged.spans ({', '.join(TABLE)}, seg) " + _FROM_ROWS.format(
    "batch"
).replace(" FROM (SELECT", ", seg FROM (SELECT", 1)

# The bounds of the unmerged window (module doc): serve_data's realistic spans take ~0.8 kB of
# Arrow until loaded, then about as much in the in-memory table: ~100 MB at most.
MERGE_SPANS = 50_000
MERGE_AFTER_S = 1.0
MAX_UNMERGED_SPANS = 100_000
UNMERGED_WAIT_S = 30.0  # a write waiting this long for the merge fails as StoreUnavailable

# What reads name as `spans` and `traces` while spans are unmerged: the table UNION ALL the
# in-memory rows (with their segment number `seg`) that the read's snapshot of the table does
# not hold yet. The merged mark is read in the same snapshot as the table, so a segment merged
# while the read runs is counted once, on one side or the other.
_MERGED = "(SELECT value::BIGINT FROM meta WHERE key = 'merged_segment')"
_UNMERGED_ROWS = f"(SELECT * FROM unmerged.spans WHERE seg > {_MERGED})"
_UNMERGED_SOURCES = {
    "spans": f"(SELECT {', '.join(TABLE)} FROM spans UNION ALL "
    f"SELECT {', '.join(TABLE)} FROM {_UNMERGED_ROWS}) spans",
    "traces": "(SELECT tid_hi, tid_lo, first_ns, last_ns FROM traces UNION ALL "
    f"SELECT tid_hi, tid_lo, min(start_ns), max(start_ns) FROM {_UNMERGED_ROWS} "
    "GROUP BY tid_hi, tid_lo) traces",
}
_SOURCE = re.compile(r"\bFROM (spans|traces)\b")


def _unmerged_only_sql(sql: str, database: str) -> str:
    """A read's SQL with its `FROM spans` reading only the unmerged rows."""
    rows = _UNMERGED_ROWS.replace("unmerged.", database + ".")
    return re.sub(r"\bFROM spans\b", f"FROM {rows} spans", sql)


def _unmerged_sql(sql: str, database: str) -> str:
    """A read's SQL with its `FROM spans` and `FROM traces` also reading the unmerged rows,
    which are in the in-memory `database`."""
    return _SOURCE.sub(
        lambda m: "FROM " + _UNMERGED_SOURCES[m.group(1)].replace("unmerged.", database + "."),
        sql,
    )


def _kv_hash(key: str, value: str) -> str:
    """The SQL for attr_kv's entry of key=value."""
    return f"hash({_sql_str(key)} || chr(0) || {_sql_str(value)})"


# attr_kv again from the attribute JSON: each key's scalar as text (the JSON number text is the
# form the builders index), {"f": ...} for a non-finite double, NULL for anything else
_KEY_PATH = """'$."' || replace(replace(k, '\\', '\\\\'), '"', '\\"') || '"'"""
_REBUILT_KV = f"""list_transform(list_transform(attr_keys, lambda k: k || chr(0) || CASE
    WHEN json_type(attributes, {_KEY_PATH}) IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN')
    THEN json_extract_string(attributes, {_KEY_PATH})
    WHEN json_type(attributes, {_KEY_PATH}) = 'OBJECT'
    THEN json_extract_string(attributes, {_KEY_PATH} || '.f') END),
    lambda t: CASE WHEN t IS NULL THEN NULL ELSE hash(t) END)"""


def _enc_id(hex_id: str) -> int:
    n = int(hex_id, 16)
    return n - (1 << 64) if n & _SIGN else n


def _dec_id(n: int) -> str:
    return format(n & _MASK, "016x")


def _split_trace(trace_id: str) -> tuple[int, int]:
    return _enc_id(trace_id[:16]), _enc_id(trace_id[16:])


def _link_target(trace_id: Any, span_id: Any) -> tuple[int, int, int] | None:
    """(tid_hi, tid_lo, span_id) of the span a stored link points at; None for malformed ids
    (links written through `write` are not validated as the receiver's are)."""
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        return None
    if not _HEX_ID.fullmatch(f"{trace_id}:{span_id}"):
        return None
    return (*_split_trace(trace_id), _enc_id(span_id))


def _with_seg(rows: pa.Table, number: int) -> pa.Table:
    """A segment's rows with its number as the column `seg`."""
    return rows.append_column("seg", pa.repeat(pa.scalar(number, pa.int64()), len(rows)))


def _scalar(result: duckdb.DuckDBPyConnection) -> Any:
    """The one value of a statement that always returns one row (an aggregate, a DELETE)."""
    row = result.fetchone()
    if row is None:
        raise duckdb.InternalException("expected one row, got none")
    return row[0]


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# DuckDB's own bounds on a read: the memory the engine may use before it spills to disk (its
# temp_directory) or cancels the query; how long one query may run is storage.base's
DEFAULT_MEMORY_LIMIT = "1GB"
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def _memory_limit(value: str | None) -> str:
    value = value or os.environ.get("THREADLINE_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
    if not _MEMORY.fullmatch(value.strip()):
        raise StoreUnavailable(
            f"THREADLINE_DUCKDB_MEMORY_LIMIT: {value[:40]!r} is not a size such as 512MB or 2GB"
        )
    return value.strip()


class DuckDBStore(Store):
    def __init__(
        self,
        path: str = ":memory:",
        *,
        memory_limit: str | None = None,
        query_timeout: float | None = None,
        merge_spans: int = MERGE_SPANS,
        max_unmerged_spans: int = MAX_UNMERGED_SPANS,
        merge_after_s: float = MERGE_AFTER_S,
    ) -> None:
        self.path = path
        self.merge_spans = merge_spans
        self.merge_after_s = merge_after_s
        self.max_unmerged_spans = max_unmerged_spans
        self.memory_limit = _memory_limit(memory_limit)
        self.query_timeout = query_timeout_s(query_timeout)
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                spill = os.path.abspath(path) + ".tmp"  # DuckDB's own default for a file
            else:
                spill = os.path.join(tempfile.gettempdir(), f"threadline-duckdb-{os.getpid()}")
            self._con = duckdb.connect(
                path, config={"memory_limit": self.memory_limit, "temp_directory": spill}
            )
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc.strerror or exc}") from None
        except duckdb.IOException as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc}") from None
        cols = ", ".join(f"{k} {v}" for k, v in TABLE.items())
        self._con.execute(f"CREATE TABLE IF NOT EXISTS spans ({cols})")
        # where each trace's spans lie in time, one row per trace per commit: a lookup reads
        # this small table, then the spans scan is pruned to the row groups of that time range
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS traces (tid_hi BIGINT, tid_lo BIGINT, first_ns BIGINT, last_ns BIGINT)"
        )
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._check_index()
        # the unmerged window, guarded by _window: segments written but not loaded into
        # unmerged.spans yet, by number in write order; the last one loaded; the spans not
        # merged (loaded or not); reads running, by the merge epoch they started in
        self._unloaded: list[int] = []
        self._starts: list[tuple[int, int]] = []  # (number, earliest start_ns) of each unmerged
        self._loaded = 0
        self._unmerged_spans = 0
        self._oldest = 0.0  # when the oldest unmerged segment was written (monotonic)
        self._epoch = 0
        self._reading: dict[int, int] = {}
        self._window = threading.Condition()
        self._append_lock = threading.Lock()  # segments are numbered in the order they are written
        self._load_lock = threading.Lock()
        self._merge_lock = threading.Lock()
        self._merger: threading.Thread | None = None
        self._closing = False
        self._segments = None if path == ":memory:" else self._replay()
        if self._segments is not None:
            # named apart from the file's own database, which DuckDB names after the file
            self._mem = (
                "unmerged"
                if _scalar(self._con.execute("SELECT current_database()")) != "unmerged"
                else "unmerged_rows"
            )
            self._con.execute(f"ATTACH ':memory:' AS {self._mem}")
            self._con.execute(f"CREATE TABLE {self._mem}.spans ({cols}, seg BIGINT)")
            self._loader = self._con.cursor()

    def _replay(self) -> Segments:
        """Open the segments beside the file and merge those a crash left unmerged."""
        merged = self._con.execute("SELECT value FROM meta WHERE key = 'merged_segment'").fetchone()
        if merged is None:
            self._con.execute("INSERT INTO meta VALUES ('merged_segment', '0')")
        mark = int(merged[0]) if merged else 0
        try:
            segments = Segments(os.path.abspath(self.path) + ".segments")
            left = list(segments.unmerged(mark))
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {self.path}.segments: {exc}") from None
        except pa.ArrowInvalid as exc:  # a synced segment that does not read: never skip it
            raise StoreUnavailable(f"cannot read {self.path}.segments: {exc}") from None
        segments.last = max(segments.last, mark)
        if left:
            log.info("threadline: merging %d segment(s) written before a stop", len(left))
            self._insert(pa.concat_tables([t for _, t in left]), left[-1][0])
            segments.remove(left[-1][0])
        return segments

    def _check_index(self) -> None:
        """attr_kv holds DuckDB's hash(), which DuckDB does not promise to keep across versions:
        the file records the hash of a probe, and a file written by another hash (another DuckDB,
        or an older layout of this store) has its index rebuilt from the attribute JSON, so that
        `key=value` search stays right."""
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        probe = str(_scalar(con.execute(f"SELECT {_kv_hash('threadline', 'probe')}")))
        row = con.execute("SELECT value FROM meta WHERE key = 'attr_kv'").fetchone()
        if row and row[0] == probe:
            return
        con.execute("ALTER TABLE spans ADD COLUMN IF NOT EXISTS attr_sig UBIGINT")
        if _scalar(con.execute("SELECT count(*) FROM spans")):
            log.warning("threadline: rebuilding the attribute search index of %s", self.path)
            con.execute(f"ALTER TABLE spans ALTER attr_kv TYPE {TABLE['attr_kv']} USING NULL")
            con.execute(f"UPDATE spans SET attr_kv = {_REBUILT_KV} WHERE attr_keys IS NOT NULL")
            con.execute(f"UPDATE spans SET attr_sig = {_SIG}")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('attr_kv', ?)", [probe])

    # -- connections: one writer, a cursor per reading thread (DuckDB MVCC lets them overlap)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self._con.cursor()
        return cur

    def _rows(
        self,
        sql: str,
        params: list | None = None,
        before: int | None = None,
        apart: str | None = None,
    ) -> list[tuple]:
        """A read's rows; QueryTooCostly when it runs past the query time limit (it is
        interrupted) or needs more than the memory limit even with spilling. `before`: the
        read selects only spans starting at or before it, so it skips the unmerged rows when
        every one of them starts later (a trace read by id, older than the window). `apart`:
        the read is a top-N of `spans` alone, with this ORDER BY .. LIMIT: it runs on the
        table and on the unmerged rows apart, and the two are combined (a top-N over their
        UNION ALL cannot skip the table's row groups by the order)."""
        with self._window:
            epoch = self._epoch
            self._reading[epoch] = self._reading.get(epoch, 0) + 1
            unmerged = self._unmerged_spans > 0 and (
                before is None or before >= min(start for _, start in self._starts)
            )
            unloaded = unmerged and bool(self._unloaded)
        try:
            if unloaded:
                self._load()
            if unmerged and apart:
                fresh = _unmerged_only_sql(sql, self._mem)
                sql = f"SELECT * FROM (({sql}) UNION ALL ({fresh})) {apart}"
                return self._run(sql, (params or []) * 2)
            return self._run(_unmerged_sql(sql, self._mem) if unmerged else sql, params)
        finally:
            with self._window:
                self._reading[epoch] -= 1
                if not self._reading[epoch]:
                    del self._reading[epoch]
                    self._window.notify_all()

    def _run(self, sql: str, params: list | None) -> list[tuple]:
        cur = self._cursor()
        timer = threading.Timer(self.query_timeout, cur.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return cur.execute(sql, params or []).fetchall()
        except duckdb.InterruptException:
            raise QueryTooCostly(
                f"query cancelled after {self.query_timeout:g} s (THREADLINE_QUERY_TIMEOUT)"
            ) from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryTooCostly(
                f"query needs more than the store's {self.memory_limit} "
                f"(THREADLINE_DUCKDB_MEMORY_LIMIT): {str(exc).splitlines()[0][:200]}"
            ) from None
        finally:
            timer.cancel()

    # -- write

    def write(self, spans: list[Span]) -> None:
        self.write_columns([SpanColumns().add_spans(spans)])

    def write_columns(self, columns: list[Rows]) -> None:
        columns = [c for c in columns if len(c)]
        if not columns:
            return
        table = pa.concat_tables([c.table() for c in columns])
        if self._segments is None:  # in memory: nothing to make durable
            self._insert(table)
            return
        self._wait_for_room()
        with self._append_lock:
            try:
                number = self._segments.append(table)
            except OSError as exc:
                raise StoreUnavailable(f"cannot write {self._segments.directory}: {exc}") from exc
            start = pc.min(table["start_ns"]).as_py()
            with self._window:
                if not self._unmerged_spans:
                    self._oldest = time.monotonic()
                # The load reads the rows back from the segment (mapped from the page cache), so
                # this write's buffers are freed now and the next decode reuses them instead of
                # faulting in fresh memory.
                self._unloaded.append(number)
                self._starts.append((number, start))
                self._unmerged_spans += len(table)
                self._window.notify_all()
            if self._merger is None:
                self._merger = threading.Thread(
                    target=self._merge_loop, name="threadline-merge", daemon=True
                )
                self._merger.start()

    def _wait_for_room(self) -> None:
        """Hold a write while the unmerged window is full (the merge is behind)."""
        deadline = time.monotonic() + UNMERGED_WAIT_S
        with self._window:
            while self._unmerged_spans >= self.max_unmerged_spans:
                if self._closing or not self._window.wait(deadline - time.monotonic()):
                    raise StoreUnavailable(
                        f"{self._unmerged_spans} spans are waiting to be merged into {self.path}"
                    )

    def _load(self) -> None:
        """Load the written segments' rows into unmerged.spans, where reads see them."""
        with self._load_lock:
            with self._window:
                taken = list(self._unloaded)
            if not taken:
                return
            assert self._segments is not None  # only a file's store has unloaded segments
            batch = pa.concat_tables(_with_seg(self._segments.read(n), n) for n in taken)
            self._loader.register("batch", batch)
            try:
                self._loader.execute(_LOAD.replace("unmerged.", self._mem + ".", 1))
            finally:
                self._loader.unregister("batch")
            with self._window:
                del self._unloaded[: len(taken)]
                self._loaded = taken[-1]

    def _merge_loop(self) -> None:
        while True:
            with self._window:
                while not self._closing and not self._merge_due() and not self._load_due():
                    wait = min(self.merge_after_s / 10, threading.TIMEOUT_MAX)
                    self._window.wait(wait if self._unmerged_spans else None)
                if self._closing:
                    return
                merge = self._merge_due()
            try:
                self.merge() if merge else self._load()
            except Exception:  # the segments stay; the next round retries (logged)
                log.exception("merging segments into %s failed", self.path)
                time.sleep(min(self.merge_after_s, 60))

    def _merge_due(self) -> bool:
        return self._unmerged_spans >= self.merge_spans or bool(
            self._unmerged_spans and time.monotonic() - self._oldest >= self.merge_after_s
        )

    def _load_due(self) -> bool:
        """Rows are loaded soon after their write, so a read seldom waits for it."""
        return bool(self._unloaded) and time.monotonic() - self._oldest >= self.merge_after_s / 10

    def merge(self) -> int:
        """Move every unmerged segment's rows into the table in one commit, then drop them
        from unmerged.spans and remove the segments; returns how many spans. The background
        merge calls it; so do `checkpoint`, `delete_before` and `close`."""
        with self._merge_lock:
            if self._segments is None or not self._unmerged_spans:
                return 0  # merged meanwhile (by the background thread or a caller)
            self._load()
            with self._window:
                upto = self._loaded
            rows = f"FROM {self._mem}.spans WHERE seg > {_MERGED} AND seg <= {upto}"
            with self._transaction() as con:
                n = _scalar(con.execute(f"SELECT count(*) {rows}"))
                if not n:
                    return 0
                con.execute(f"INSERT INTO spans SELECT {', '.join(TABLE)} {rows}")
                con.execute(
                    "INSERT INTO traces SELECT tid_hi, tid_lo, min(start_ns), max(start_ns) "
                    f"{rows} GROUP BY tid_hi, tid_lo"
                )
                con.execute("UPDATE meta SET value = ? WHERE key = 'merged_segment'", [str(upto)])
            # reads that started before the commit may still read these rows from unmerged.spans
            with self._window:
                self._epoch += 1
                while any(e < self._epoch for e in self._reading):
                    self._window.wait()
                self._unmerged_spans -= n
                self._starts = [(k, start) for k, start in self._starts if k > upto]
                self._oldest = time.monotonic()
                self._window.notify_all()
            with self._load_lock:
                self._loader.execute(f"DELETE FROM {self._mem}.spans WHERE seg <= {upto}")
            self._segments.remove(upto)
            return n

    def _insert(self, batch: pa.Table, mark: int = 0) -> None:
        """Rows straight into the table in one commit (DuckDB syncs its WAL on commit), with
        `mark` as the last segment merged when they are segments' rows."""
        with self._transaction() as con:
            con.register("batch", batch.select(list(COLUMNS)))
            try:
                con.execute(_INSERT)
                con.execute(
                    "INSERT INTO traces SELECT tid_hi, tid_lo, min(start_ns), max(start_ns) "
                    "FROM batch GROUP BY tid_hi, tid_lo"
                )
            finally:  # in a failed transaction it fails too: the next insert's replaces it
                with contextlib.suppress(duckdb.Error):
                    con.unregister("batch")
            if mark:
                con.execute("UPDATE meta SET value = ? WHERE key = 'merged_segment'", [str(mark)])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN .. COMMIT on the writer connection. Any error rolls back (else the connection
        stays in the failed transaction and every later BEGIN fails); an I/O error is raised as
        StoreUnavailable."""
        with self._write_lock:
            con = self._con
            con.execute("BEGIN")
            try:
                yield con
                con.execute("COMMIT")  # durable: DuckDB syncs its WAL on commit
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
                    con.execute("ROLLBACK")
                if isinstance(exc, duckdb.IOException):
                    raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc
                raise

    # -- read

    @staticmethod
    def _spans(rows: list[tuple]) -> list[Span]:
        shared: dict[str | None, dict] = {}  # spans of one resource share one decoded dict

        def decode_shared(text: str | None) -> dict:
            d = shared.get(text)
            if d is None:
                d = shared[text] = decode_attrs(text)
            return d

        return supersede(DuckDBStore._span(r, decode_shared) for r in rows)

    @staticmethod
    def _span(row: tuple, decode_shared: Any = decode_attrs) -> Span:
        (trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status_code,
         status_message, _pending, attributes, resource, scope_name, scope_version, scope_attributes,
         events, links, trace_state, flags, dropped, schema_urls) = row  # fmt: skip
        d = read_dropped(dropped)
        urls = schema_urls.split("\n", 1) if schema_urls else ("", "")
        return Span(
            trace_id,
            span_id,
            parent_id,
            name,
            kind,
            start_ns,
            start_ns + duration_ns,
            service,
            status_code,
            status_message or "",
            decode_attrs(attributes),
            decode_shared(resource),
            scope_name,
            scope_version or "",
            decode_shared(scope_attributes),
            [
                Event(t, n, untag_value(a) if a else {}, da)
                for t, n, a, da in (json.loads(events) if events else [])
            ],
            [
                Link(t, sid, ts, untag_value(a) if a else {}, da, f)
                for t, sid, ts, a, da, f in (json.loads(links) if links else [])
            ],
            trace_state or "",
            flags,
            d[0],
            d[1],
            d[2],
            urls[0],
            urls[1],
            d[3],
            d[4],
        )

    @staticmethod
    def _keys(trace_ids: list[str]) -> list[tuple[int, int]]:
        keys = []
        for t in dict.fromkeys(t.lower() for t in trace_ids):
            if len(t) == 32:
                try:
                    keys.append(_split_trace(t))
                except ValueError:
                    continue
        return keys

    def _located(self, trace_ids: list[str]) -> list[tuple[int, int, str, int]]:
        """(tid_hi, tid_lo, SQL condition selecting the trace's spans, its latest start) for
        each known id.

        One query per trace: DuckDB applies `col = constant` and a start_ns range inside the
        scan (zone maps skip row groups; other columns are read only where rows match), while
        an IN list or OR is applied only after every column has been read."""
        keys = self._keys(trace_ids)
        if not keys:
            return []
        his = ", ".join(str(hi) for hi, _ in keys)
        where = dict(
            ((hi, lo), (a, b))
            for hi, lo, a, b in self._rows(
                f"SELECT tid_hi, tid_lo, min(first_ns), max(last_ns) FROM traces "
                f"WHERE tid_hi IN ({his}) GROUP BY tid_hi, tid_lo"
            )
        )
        return [
            (
                hi,
                lo,
                f"tid_hi = {hi} AND tid_lo = {lo} AND start_ns BETWEEN {where[hi, lo][0]} AND {where[hi, lo][1]}",
                where[hi, lo][1],
            )
            for hi, lo in keys
            if (hi, lo) in where
        ]

    def get_traces(self, trace_ids: list[str]) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for hi, lo, cond, last in self._located(trace_ids):
            rows = self._rows(f"SELECT {_SELECT} FROM spans WHERE {cond}", before=last)
            if rows:
                out[_dec_id(hi) + _dec_id(lo)] = self._spans(rows)
        return out

    # Query field -> SQL condition on one bound value
    _CONDITIONS = (
        ("service", "service = ?"),
        ("operation", "name = ?"),
        ("kind", "kind = ?"),
        ("start_ns", "start_ns >= ?"),
        ("end_ns", "start_ns < ?"),
        ("min_duration_ns", "duration_ns >= ?"),
        ("max_duration_ns", "duration_ns <= ?"),
        ("status_code", "status_code = ?"),
    )

    def _where(self, q: Query) -> tuple[str, list]:
        conds, params = ["true"], []
        for name, sql in self._CONDITIONS:
            value = getattr(q, name)
            if value is not None and value != "":
                conds.append(sql)
                params.append(value)
        for alternatives in q.filters:
            conds.append("(" + " OR ".join(self._filter_sql(f, params) for f in alternatives) + ")")
        return " AND ".join(conds), params

    @staticmethod
    def _filter_sql(f: Filter, params: list) -> str:
        """Span attributes through the list index; resource attributes through their JSON
        (one text per resource, dictionary-compressed, so cheap to scan). Every key and value
        is a bound parameter (appended to `params` in the order their `?` appear), never SQL
        text."""
        parts = []
        if f.scope in ("span", "any"):
            h = "hash(? || chr(0) || ?)"  # attr_kv's entry of key=value
            if f.op == "=":
                parts.append(
                    f"((attr_sig & (1::UBIGINT << ({h} % 64)::INTEGER)) <> 0"
                    f" AND list_contains(attr_kv, {h}))"
                )
                params.extend([f.key, str(f.value)] * 2)
            elif f.op == "!=":
                parts.append(f"(list_contains(attr_keys, ?) AND NOT list_contains(attr_kv, {h}))")
                params.extend([f.key, f.key, str(f.value)])
            elif f.op == "exists":
                parts.append("list_contains(attr_keys, ?)")
                params.append(f.key)
            elif f.op == "!exists":
                parts.append("NOT coalesce(list_contains(attr_keys, ?), false)")
                params.append(f.key)
            else:
                parts.append(f"attr_nums[list_position(attr_keys, ?)] {f.op} ?::DOUBLE")
                params.extend([f.key, f.number])
        if f.scope in ("resource", "any"):
            present, value = "contains(resource, ?)", "json_extract_string(resource, ?)"
            params.extend([json.dumps(f.key, ensure_ascii=False) + ":", _json_path(f.key)])
            if f.op == "exists":
                parts.append(f"({present} AND {value} IS NOT NULL)")
            elif f.op == "!exists":
                parts.append(f"NOT coalesce({present} AND {value} IS NOT NULL, false)")
            elif f.op in ("=", "!="):
                parts.append(f"({present} AND {value} {f.op} ?)")
                params.append(str(f.value))
            else:
                parts.append(f"({present} AND TRY_CAST({value} AS DOUBLE) {f.op} ?::DOUBLE)")
                params.append(f.number)
        joiner = " AND " if f.op == "!exists" else " OR "
        return "(" + joiner.join(parts) + ")"

    def find_trace_ids(self, query: Query) -> list[str]:
        # the latest matching spans (a top-N, cheap) rather than grouping every match by trace;
        # widen the window until it holds `limit` distinct traces or every match
        where, params = self._where(query)
        limit = int(query.limit)
        window = limit * 4
        while True:
            top = f"ORDER BY start_ns DESC LIMIT {window}"
            rows = self._rows(
                f"SELECT tid_hi, tid_lo, start_ns FROM spans WHERE {where} {top}", params, apart=top
            )
            ids = list(dict.fromkeys((h, lo) for h, lo, _ in rows))
            if len(ids) >= limit or len(rows) < window:
                return [_dec_id(h) + _dec_id(lo) for h, lo in ids[:limit]]
            window *= 8

    def summaries(self, trace_ids: list[str]) -> list[TraceSummary]:
        out = []
        for hi, lo, cond, last in self._located(trace_ids):
            rows = self._rows(
                "SELECT span_id, parent_id IS NULL, service, name, start_ns, duration_ns, "
                f"status_code, pending FROM spans WHERE {cond}",
                before=last,
            )
            kept = one_per_span(rows, lambda r: r[0], lambda r: r[7])  # by span id, pending
            if not kept:
                continue
            spans = sorted(kept, key=lambda r: r[4])
            root = next((r for r in spans if r[1]), spans[0])
            start = spans[0][4]
            out.append(
                TraceSummary(
                    trace_id=_dec_id(hi) + _dec_id(lo),
                    root_service=root[2],
                    root_name=root[3],
                    start_ns=start,
                    duration_ns=max(r[4] + r[5] for r in spans) - start,
                    span_count=len(spans),
                    services=sorted({r[2] for r in spans}),
                    error_count=sum(1 for r in spans if r[6] == STATUS_ERROR),
                    incomplete_count=sum(1 for r in spans if r[7]),
                )
            )
        return out

    def spans_between(
        self, start_ns: int, end_ns: int, service: str | None = None, limit: int | None = None
    ) -> list[Span]:
        sql = f"SELECT {_SELECT} FROM spans WHERE start_ns >= ? AND start_ns < ?"
        params: list = [start_ns, end_ns]
        if service:
            sql += " AND service = ?"
            params.append(service)
        sql += " ORDER BY start_ns"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._spans(self._rows(sql, params))

    def count_between(self, start_ns: int, end_ns: int, at_most: int) -> int:
        sql = "SELECT count(*) FROM (SELECT 1 FROM spans WHERE start_ns >= ? AND start_ns < ? LIMIT ?)"
        return self._rows(sql, [start_ns, end_ns, at_most + 1])[0][0]

    def services(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT service FROM spans ORDER BY 1")]

    def operations(
        self, service: str | None = None, kind: int | None = None
    ) -> list[tuple[str, int]]:
        sql, params = "SELECT DISTINCT name, kind FROM spans WHERE true", []
        if service:
            sql += " AND service = ?"
            params.append(service)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        return [(n, k) for n, k in self._rows(sql + " ORDER BY 1, 2", params)]

    def dependencies(self, start_ns: int, end_ns: int) -> list[Dependency]:
        # one row per span, `base.one_per_span` in SQL: a completed span supersedes its pending
        # copy (pending sorts false first), and a re-sent span counts once
        one_per_span = (
            "QUALIFY row_number() OVER (PARTITION BY tid_hi, tid_lo, span_id ORDER BY pending) = 1"
        )
        # a CLIENT span naming its peer keeps the texts `peers.peer_of` names it from: the copy
        # that counts decides (a completed copy naming none names no peer)
        keys = ", ".join(_sql_str(k) for k in peers.KEYS)
        texts = ", ".join(f"attributes->>{_sql_str(_json_path(k))}" for k in peers.KEYS)
        rows = self._rows(
            f"""
            WITH w AS (SELECT tid_hi, tid_lo, span_id, parent_id, service, kind FROM spans
                       WHERE start_ns >= ? AND start_ns < ? {one_per_span}),
                 q AS (SELECT tid_hi, tid_lo, span_id, service, [{texts}] AS peer
                       FROM (SELECT tid_hi, tid_lo, span_id, service, attr_keys, attributes
                             FROM spans WHERE start_ns >= ? AND start_ns < ?
                             AND kind = {KIND_CLIENT} {one_per_span})
                       WHERE list_has_any(attr_keys, [{keys}]))
            SELECT p.service, c.service,
                   CASE WHEN p.kind = {KIND_PRODUCER} AND c.kind = {KIND_CONSUMER}
                        THEN 'messaging' ELSE 'call' END,
                   count(*), NULL
            FROM w c JOIN w p ON c.tid_hi = p.tid_hi AND c.tid_lo = p.tid_lo AND c.parent_id = p.span_id
            WHERE c.service <> p.service
            GROUP BY 1, 2, 3
            UNION ALL  -- CLIENT spans no span answered: calls to a database or external service
            SELECT c.service, NULL, 'peer', count(*), c.peer
            FROM q c ANTI JOIN (SELECT tid_hi, tid_lo, parent_id FROM w
                                WHERE parent_id IN (SELECT span_id FROM q)) k
                ON k.tid_hi = c.tid_hi AND k.tid_lo = c.tid_lo AND k.parent_id = c.span_id
            GROUP BY c.service, c.peer
            """,
            [start_ns, end_ns, start_ns, end_ns],
        )
        deps: dict[tuple[str, str, str], int] = {}
        for p, c, k, n, texts in rows:
            if k == "peer":
                peer = peers.peer_of(texts)
                if peer is None:
                    continue
                c, k = peer.name, peer.kind
            deps[(p, c, k)] = deps.get((p, c, k), 0) + n
        # across traces: a span links to the span that caused it (a consumer to its producer)
        linked = self._rows(
            f"SELECT service, kind, links FROM spans WHERE start_ns >= ? AND start_ns < ? "
            f"AND links IS NOT NULL {one_per_span}",
            [start_ns, end_ns],
        )
        targets: dict[tuple[int, int, int], list[tuple[str, int]]] = {}
        malformed = 0
        for service, kind, links in linked:
            for lk in json.loads(links):
                target = _link_target(lk[0], lk[1])
                if target is None:
                    malformed += 1
                else:
                    targets.setdefault(target, []).append((service, kind))
        if malformed:
            log.warning("dependencies: %d link(s) with malformed ids skipped", malformed)
        if targets:
            triples = ", ".join(f"({h}, {lo}, {s})" for h, lo, s in targets)
            his = ", ".join(str(h) for h, _, _ in targets)
            for h, lo, s, service, kind in self._rows(
                f"SELECT tid_hi, tid_lo, span_id, any_value(service), any_value(kind) FROM spans "
                f"WHERE tid_hi IN ({his}) AND (tid_hi, tid_lo, span_id) IN ({triples}) GROUP BY 1, 2, 3"
            ):
                for child, child_kind in targets[(h, lo, s)]:
                    if child != service:
                        messaging = kind == KIND_PRODUCER or child_kind == KIND_CONSUMER
                        key = (service, child, "messaging" if messaging else "link")
                        deps[key] = deps.get(key, 0) + 1
        return [Dependency(p, c, n, k) for (p, c, k), n in sorted(deps.items())]

    def delete_before(self, ns: int) -> int:
        self.merge()
        with self._transaction() as con:
            deleted = _scalar(con.execute("DELETE FROM spans WHERE start_ns < ?", [ns]))
            con.execute("DELETE FROM traces WHERE last_ns < ?", [ns])
        return deleted

    def stats(self) -> dict[str, Any]:
        n = self._rows("SELECT count(*) FROM spans")[0][0]
        out: dict[str, Any] = {"engine": "duckdb", "path": self.path, "spans": n}
        if self.path != ":memory:":
            size = os.path.getsize(self.path)
            wal = self.path + ".wal"
            out["bytes_on_disk"] = size + (os.path.getsize(wal) if os.path.exists(wal) else 0)
            if self._segments is not None:
                out["bytes_on_disk"] += self._segments.bytes()
                out["unmerged_spans"] = self._unmerged_spans
        return out

    def checkpoint(self) -> None:
        self.merge()
        with self._write_lock:
            self._con.execute("CHECKPOINT")

    def close(self) -> None:
        with self._window:
            self._closing = True
            self._window.notify_all()
        if self._merger is not None:
            self._merger.join()
        try:
            self.merge()  # a clean stop leaves no segment behind
        finally:
            with self._write_lock:
                self._con.close()
