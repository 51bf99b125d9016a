"""The production OTLP protobuf decoder's fast path: exports decoded straight into the span
table's Arrow columns.

ptars (Rust) reads the serialized ExportTraceServiceRequest into one Arrow record batch in the
request's own nested shape; Arrow compute kernels flatten it to a row per span and build every
stored column, attribute JSON included, with no Python object per span or attribute. What the
kernels cannot write — strings that need JSON escapes, bytes, nested arrays and maps, non-finite
doubles, links — is finished in Python for just those values.

A request this path does not take as it is (not decodable, ids of the wrong size, all-zero ids,
times beyond int64, a repeated attribute key, a nested value deeper than `FAST_MAX_DEPTH` or
that does not parse, a panic inside ptars) makes `decode` return None: the message-by-message
path (columns.py) then stores it, or says exactly what is wrong with it; `ingest.decode` is the
one place that chooses. So both paths accept and refuse exactly the same requests. Both paths build the same table (tests/server/otlp/test_arrow.py holds
them together).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _compute

from threadline.seam import any_value
from threadline.semconv import PENDING
from threadline.server.model import Link
from threadline.server.otlp.decoded import Decoded, service_name
from threadline.server.storage.layout import (
    ARROW_SCHEMA,
    SCOPE_COLUMNS,
    ArrowColumns,
    encode_attrs,
    json_text,
    link_row,
    tag_value,
    text_form,
)

# pyarrow.compute makes its kernels at import time, so its stubs cannot name them
pc: Any = _compute

_INT64_MAX = (1 << 63) - 1
# deepest nested AnyValue this path reads itself; deeper ones (rare) go to the message path,
# whose protobuf parser decides (it stops at 100 nested messages, about 47 AnyValues)
FAST_MAX_DEPTH = 32
log = logging.getLogger("threadline.server")
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


@cache
def _handler() -> Any:
    """ptars' decoder for ExportTraceServiceRequest, or None when ptars is not installed."""
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
        from ptars import HandlerPool
    except ImportError:
        return None
    pool = HandlerPool([ExportTraceServiceRequest.DESCRIPTOR.file])
    return pool.get_for_message(ExportTraceServiceRequest.DESCRIPTOR)


def available() -> bool:
    """Whether this path can run (ptars is installed)."""
    return _handler() is not None


class _Fallback(Exception):
    """This request goes through the message-by-message path."""


def decode(body: bytes) -> Decoded | None:
    """The spans of an OTLP protobuf export as `Decoded.columns`, or None when this path does
    not take the request as it is (or ptars is not installed): the message-by-message path
    must decode it instead."""
    handler = _handler()
    if handler is None:
        return None
    try:
        table = _spans_table(handler.list_to_record_batch([body]))
    except _Fallback:
        return None
    except Exception as exc:  # noqa: BLE001 - the other path parses it again and names the fault
        log.debug("OTLP export left to the message path: %r", exc)
        return None
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        # a Rust panic inside ptars (pyo3's PanicException is a BaseException): the request is
        # malformed in a way ptars does not check; the message path refuses it precisely
        log.debug("ptars panicked on an OTLP export; left to the message path: %s", exc)
        return None
    return Decoded(columns=ArrowColumns(table))


def _is_panic(exc: BaseException) -> bool:
    """pyo3's PanicException, which cannot be imported by name."""
    return type(exc).__name__ == "PanicException"


# ------------------------------------------------------------------------------------ values


def _field(arr: pa.Array, name: str) -> pa.Array:
    # the child as it is where no struct is NULL; else the kernel, which makes those rows NULL
    return arr.field(name) if not arr.null_count else pc.struct_field(arr, name)


def _rebased(lists: pa.ListArray) -> pa.Array:
    """The offsets of `lists`, counted from its first value (as `flatten()` returns them)."""
    offsets = lists.offsets
    return pc.subtract(offsets, offsets[0]) if len(offsets) and offsets[0].as_py() else offsets


def _python_value(v: dict | None) -> Any:
    """A ptars AnyValue (a dict) as the Python value; nested values arrive as protobuf bytes.
    _Fallback when they do not parse or nest deeper than FAST_MAX_DEPTH."""
    if v is None:
        return None
    for k in ("string_value", "bool_value", "int_value", "double_value", "bytes_value"):
        x = v.get(k)
        if x is not None:
            return x
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    try:
        if v.get("array_value") is not None:
            values = [AnyValue.FromString(b) for b in v["array_value"]["values"]]
            _check(all(_depth(x) < FAST_MAX_DEPTH for x in values))
            return [any_value(x) for x in values]
        if v.get("kvlist_value") is not None:
            kvs = [KeyValue.FromString(b) for b in v["kvlist_value"]["values"]]
            _check(all(_depth(kv.value) < FAST_MAX_DEPTH for kv in kvs))
            return {kv.key: any_value(kv.value) for kv in kvs}
    except DecodeError:
        raise _Fallback from None
    return None


def _depth(v: Any) -> int:
    """How deep an AnyValue message nests (1 for a scalar); stops counting past FAST_MAX_DEPTH."""
    depth, level = 1, [v]
    while level and depth <= FAST_MAX_DEPTH:
        nxt = []
        for x in level:
            which = x.WhichOneof("value")
            if which == "array_value":
                nxt += x.array_value.values
            elif which == "kvlist_value":
                nxt += [kv.value for kv in x.kvlist_value.values]
        if not nxt:
            return depth
        level, depth = nxt, depth + 1
    return depth


def _python_attrs(kvs: list[dict]) -> dict[str, Any]:
    return {kv["key"]: _python_value(kv["value"]) for kv in kvs}


def _json_strings(s: pa.Array, before: str = "", after: str = "") -> pa.Array:
    """Each string as JSON text (between `before` and `after`), worked out once per distinct
    string; escaped in Python only where it needs escapes."""
    coded = pc.dictionary_encode(s)
    distinct = coded.dictionary
    out = pc.binary_join_element_wise(before + '"', distinct, '"' + after, "")
    special = pc.match_substring_regex(distinct, _NEEDS_ESCAPE)
    if pc.any(special).as_py():
        fixed = [before + json_text(x) + after for x in pc.filter(distinct, special).to_pylist()]
        out = pc.replace_with_mask(out, special, pa.array(fixed, pa.string()))
    return out.take(coded.indices)


def _may_need_escapes(s: pa.Array) -> bool:
    """Whether any byte of the strings' text is one JSON escapes (a scan of the raw buffer, many
    times quicker than a match per string)."""
    if not len(s):
        return False
    offsets = np.frombuffer(s.buffers()[1], np.int32, len(s) + 1, s.offset * 4)
    text = np.frombuffer(s.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    return bool((text < 0x20).any() or (text == ord('"')).any() or (text == ord("\\")).any())


_NULL_TEXT = pa.scalar(None, pa.string())


def _with_validity(s: pa.Array, valid: np.ndarray) -> pa.Array:
    """The strings `s` (offset 0) with only those where `valid` valid, sharing their buffers."""
    _, offsets, data = s.buffers()
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(len(s), offsets, data, bitmap)


def _valid(x: pa.Array) -> np.ndarray:
    return x.is_valid().to_numpy(zero_copy_only=False)


def _spread(dense: pa.Array, at: np.ndarray) -> pa.Array:
    """The strings `dense`, one per True in `at`, laid out at those positions and NULL elsewhere,
    sharing their bytes (a kernel writes the text of a column with many NULLs several times
    slower than that of its values alone)."""
    starts = np.frombuffer(dense.buffers()[1], np.int32, len(dense) + 1, dense.offset * 4)
    lengths = np.zeros(len(at) + 1, np.int32)
    lengths[0] = starts[0]
    lengths[1:][at] = np.diff(starts)
    valid = at.copy()
    if dense.null_count:
        valid[at] = _valid(dense)
    return pa.StringArray.from_buffers(
        len(at),
        pa.py_buffer(np.cumsum(lengths, dtype=np.int32)),
        dense.buffers()[2],
        pa.py_buffer(np.packbits(valid, bitorder="little")),
    )


def _ends(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per value of the lists with these offsets: 1 for the first (the last) of its list."""
    some = offsets[:-1] < offsets[1:]
    first = np.zeros(offsets[-1], np.int64)
    first[offsets[:-1][some]] = 1
    last = np.zeros(offsets[-1], np.int64)
    last[offsets[1:][some] - 1] = 1
    return first, last


def _cut(pieces: pa.Array, offsets: np.ndarray, empty: pa.Array) -> pa.Array:
    """The text of each list (`offsets` into `pieces`) as its pieces run together, NULL where
    `empty`: the pieces carry their list's punctuation, so each list's text is already a run of
    the joined pieces' buffer and is cut from it without a copy."""
    starts = np.frombuffer(pieces.buffers()[1], np.int32, len(pieces) + 1, pieces.offset * 4)
    valid = pc.invert(pc.fill_null(empty, True))
    return pa.StringArray.from_buffers(
        len(offsets) - 1,
        pa.py_buffer(starts[offsets]),
        pieces.buffers()[2],
        valid.buffers()[1] if not pc.all(valid).as_py() else None,
    )


_COMMA, _EMPTY = pa.scalar(","), pa.scalar("")


class _Attributes:
    """The stored columns of one list<KeyValue> per row: attribute JSON text (NULL when empty),
    and the flat keys, numbers and "key\\0text" texts of the search index. The JSON is an object
    for span attributes, the tagged kvlist {"m": [[key, value], ...]} for events' (layout.py)."""

    def __init__(self, lists: pa.ListArray, tagged: bool = False) -> None:
        kvs = lists.flatten()
        self.offsets = _rebased(lists)
        self.empty = pc.equal(pc.list_value_length(lists), 0)
        self.keys = _field(kvs, "key")
        self.owner = pc.list_parent_indices(lists)  # the row of each attribute
        coded = pc.dictionary_encode(self.keys)
        self.key_codes, self.names = coded.indices, coded.dictionary.to_pylist()
        names = self.names
        value = _field(kvs, "value")
        s = _field(value, "string_value")
        b = _field(value, "bool_value")
        i = _field(value, "int_value")
        d = _field(value, "double_value")
        self.nums = pc.coalesce(pc.cast(i, pa.float64(), safe=False), d)
        # the value's text: at most one of them is set per value; those set nowhere are left
        # out of the joins
        typed = [s] if s.null_count < len(s) else []
        if i.null_count < len(i):
            typed.append(_spread(pc.cast(pc.drop_null(i), pa.string()), _valid(i)))
        if d.null_count < len(d):
            typed += self._reprs(d)
        if b.null_count < len(b):
            typed.append(pc.if_else(b, "true", "false"))
        key_nul = pa.array([k + "\x00" for k in names], pa.string()).take(self.key_codes)
        self.texts = pc.binary_join_element_wise(key_nul, *typed, "", null_handling="skip")
        # Python writes the JSON of bytes, arrays, maps, non-finite doubles, strings that need
        # escapes and values with nothing set; the kernels write the rest
        scalar = pc.or_(pc.or_(pc.is_valid(s), pc.is_valid(i)), pc.is_valid(b))
        python = pc.invert(pc.or_(scalar, pc.and_kleene(pc.is_valid(d), pc.is_finite(d))))
        if _may_need_escapes(s):
            special = pc.match_substring_regex(s, _NEEDS_ESCAPE)
            python = pc.or_(python, pc.and_kleene(pc.is_valid(s), special))
        if pc.any(none := pc.invert(pc.or_(scalar, pc.is_valid(d)))).as_py():
            self.texts = pc.if_else(none, _NULL_TEXT, self.texts)  # no text to search
        self.json = self._objects(
            names, tagged, pc.and_not(pc.is_valid(s), python), python, value, typed
        )

    def _objects(
        self,
        names: list,
        tagged: bool,
        quoted: pa.Array,
        python: pa.Array,
        value: pa.Array,
        typed: list,
    ) -> pa.Array:
        """Each row's attributes as one JSON text. Every attribute is written as one piece that
        carries its row's punctuation (the opening brace or a comma before it, the closing one
        after the last), for `_cut`."""
        offsets = self.offsets.to_numpy(zero_copy_only=False)
        first, last = (2 * x for x in _ends(offsets))
        quote = quoted.to_numpy(zero_copy_only=False).astype(np.int64)
        if tagged:
            key_json = [f"[{json_text(k)}," for k in names]
            openers, closers = (",", '{"m":['), ("]", "]]}")
        else:
            key_json = [f"{json_text(k)}:" for k in names]
            openers, closers = (",", "{"), ("", "}")
        heads = [o + k + q for k in key_json for o in openers for q in ("", '"')]
        tails = [q + c for c in closers for q in ("", '"')]
        codes = self.key_codes.to_numpy(zero_copy_only=False).astype(np.int64)
        head = pa.array(heads, pa.string()).take(pa.array(codes * 4 + first + quote))
        tail = pa.array(tails, pa.string()).take(pa.array(last + quote))
        pieces = pc.binary_join_element_wise(head, *typed, tail, "", null_handling="skip")
        if pc.any(python).as_py():
            where = np.flatnonzero(python.to_numpy(zero_copy_only=False))
            finished = [
                h + json_text(tag_value(_python_value(v))) + t
                for h, v, t in zip(
                    head.take(where).to_pylist(),
                    value.take(where).to_pylist(),
                    tail.take(where).to_pylist(),
                    strict=True,
                )
            ]
            pieces = pc.replace_with_mask(pieces, python, pa.array(finished, pa.string()))
        return _cut(pieces, offsets, self.empty)

    @staticmethod
    def _reprs(d: pa.Array) -> pa.Array:
        """Doubles as Python's repr writes them (what JSON and `key=value` search use). Arrow's
        cast writes the same shortest digits, in the same plain notation where it writes a
        "." and no exponent for |x| >= 1e-4: Python writes the rest (whole numbers, which Arrow
        writes without ".0", tiny and huge ones, NaN and the infinities)."""
        at = _valid(d)
        d = pc.drop_null(d)
        texts = pc.cast(d, pa.string())
        odd = pc.or_(
            pc.or_(pc.invert(pc.match_substring(texts, ".")), pc.match_substring(texts, "e")),
            pc.less(pc.abs(d), 1e-4),
        )
        if not pc.any(odd).as_py():
            return [_spread(texts, at)]
        # few: Python's texts go in a column of their own, Arrow's there left out
        odd = odd.to_numpy(zero_copy_only=False)
        fixed = pa.array(map(text_form, pc.filter(d, odd).to_pylist()), pa.string())
        python = np.zeros(len(at), bool)
        python[np.flatnonzero(at)[odd]] = True
        return [_spread(_with_validity(texts, ~odd), at), _spread(fixed, python)]
        odd = pc.or_(
            pc.or_(pc.invert(pc.match_substring(texts, ".")), pc.match_substring(texts, "e")),
            pc.less(pc.abs(d), 1e-4),
        )
        odd = pc.fill_null(odd, False)
        if pc.any(odd).as_py():
            fixed = list(map(text_form, pc.filter(d, odd).to_pylist()))
            texts = pc.replace_with_mask(texts, odd, pa.array(fixed, pa.string()))
        return texts

    def unique_keys(self) -> bool:
        """No row repeats a key (the other path keeps the last value of a repeated key)."""
        if len(self.keys) < 2:
            return True
        codes = self.key_codes.to_numpy(zero_copy_only=False)
        if codes.max() >= 64:  # more distinct keys than one bit each in a word: count pairs
            width = int(codes.max()) + 1
            pairs = pc.add(pc.multiply(self.owner, width), pc.cast(self.key_codes, pa.int64()))
            return pc.count_distinct(pairs).as_py() == len(self.keys)
        # a bit per key, OR-ed over each row: as many bits set as the row has keys
        offsets = self.offsets.to_numpy(zero_copy_only=False)
        lengths = np.diff(offsets)
        some = lengths > 0
        bits = np.left_shift(np.uint64(1), codes.astype(np.uint64))
        seen = np.bitwise_or.reduceat(bits, offsets[:-1][some])
        return bool((np.bitwise_count(seen) == lengths[some]).all())

    def lists(self, values: pa.Array) -> pa.Array:
        """`values` (one per attribute) as one list per row; NULL for a row without any."""
        return pa.ListArray.from_arrays(self.offsets, values, mask=self.empty)


# ------------------------------------------------------------------------------------ spans


def _ids(arr: pa.Array, size: int) -> np.ndarray:
    """Binary ids of `size` bytes each (checked; empty ones skipped) as signed big-endian 64-bit
    halves, a row of size // 8 per id, read straight from the array's buffer."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    data = np.frombuffer(arr.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    return data.view(">i8").astype(np.int64).reshape(-1, size // 8)


def _check(cond: Any) -> None:
    if not cond:
        raise _Fallback


def _spans_table(batch: pa.RecordBatch) -> pa.Table:
    rs_list = batch.column(0)
    resources = rs_list.flatten()
    ss_list = _field(resources, "scope_spans")
    scopes = ss_list.flatten()
    sp_list = _field(scopes, "spans")
    spans = sp_list.flatten()
    n = len(spans)
    if not n:
        return ARROW_SCHEMA.empty_table()

    tid, sid, pid = (_field(spans, k) for k in ("trace_id", "span_id", "parent_span_id"))
    tlen, slen, plen = (pc.binary_length(a) for a in (tid, sid, pid))
    _check(pc.all(pc.equal(tlen, 16)).as_py() and pc.all(pc.equal(slen, 8)).as_py())
    roots = pc.equal(plen, 0)
    _check(pc.all(pc.or_(roots, pc.equal(plen, 8))).as_py())
    _check(not pc.any(pc.equal(tid, pa.scalar(bytes(16)))).as_py())
    _check(not pc.any(pc.equal(sid, pa.scalar(bytes(8)))).as_py())
    start, end = _field(spans, "start_time_unix_nano"), _field(spans, "end_time_unix_nano")
    _check(max(pc.max(start).as_py(), pc.max(end).as_py()) <= _INT64_MAX)

    attrs = _Attributes(_field(spans, "attributes"))
    _check(attrs.unique_keys())
    trace_halves = _ids(tid, 16)
    is_root = roots.to_numpy(zero_copy_only=False)
    parent_id = np.zeros(n, np.int64)
    parent_id[~is_root] = _ids(pid, 8)[:, 0]  # a root's is empty: its bytes hold the others'

    status = _field(spans, "status")
    start64, end64 = pc.cast(start, pa.int64()), pc.cast(end, pa.int64())
    dropped = [
        pc.fill_null(_field(spans, k), 0)
        for k in ("dropped_attributes_count", "dropped_events_count", "dropped_links_count")
    ]
    scope_of_span = pc.list_parent_indices(sp_list)
    per_scope = _scope_columns(resources, ss_list, scopes)
    arrays: dict[str, Any] = {
        "tid_hi": pa.array(trace_halves[:, 0]),
        "tid_lo": pa.array(trace_halves[:, 1]),
        "span_id": pa.array(_ids(sid, 8)[:, 0]),
        "parent_id": pa.array(parent_id, mask=is_root),
        "name": _field(spans, "name"),
        "kind": _field(spans, "kind"),
        "start_ns": start64,
        "duration_ns": pc.subtract(end64, start64),
        "status_code": pc.fill_null(_field(status, "code"), 0),
        "status_message": _empty_null(_field(status, "message")),
        "pending": _pending(attrs, n),
        "attributes": attrs.json,
        "events": _events(_field(spans, "events")),
        "links": _links(_field(spans, "links")),
        "trace_state": _empty_null(_field(spans, "trace_state")),
        "flags": pc.fill_null(_field(spans, "flags"), 0),
        "dropped": _dropped(dropped, per_scope.pop("dropped").take(scope_of_span)),
        "attr_keys": attrs.lists(attrs.keys),
        "attr_nums": attrs.lists(attrs.nums),
        "attr_texts": attrs.lists(attrs.texts),
    }
    for k, column in per_scope.items():
        arrays[k] = column.take(scope_of_span)
    return pa.Table.from_arrays(
        [arrays[f.name].cast(f.type) for f in ARROW_SCHEMA], schema=ARROW_SCHEMA
    )


def _empty_null(s: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(pc.fill_null(s, ""), ""), pa.scalar(None, s.type), s)


def _pending(attrs: _Attributes, n: int) -> pa.Array:
    if PENDING not in attrs.names:
        return pa.array(np.zeros(n, bool))
    marked = pc.and_(pc.equal(attrs.keys, PENDING), pc.equal(attrs.texts, _PENDING_TRUE))
    rows = pc.unique(pc.filter(attrs.owner, pc.fill_null(marked, False)))
    return pc.is_in(pa.array(range(n), pa.int64()), value_set=rows.cast(pa.int64()))


_PENDING_TRUE = f"{PENDING}\x00true"


def _dropped(counts: list[pa.Array], outer: pa.Array) -> pa.Array:
    """layout.dropped_text() of each span; `outer` is ",resource,scope" or NULL per span."""
    a, e, lk = counts
    zero = pa.scalar(0, a.type)
    none = pc.and_(pc.and_(pc.equal(a, zero), pc.equal(e, zero)), pc.equal(lk, zero))
    none = pc.and_(none, pc.is_null(outer))
    if pc.all(none).as_py():
        return pa.nulls(len(a), pa.string())
    text = pc.binary_join_element_wise(*(pc.cast(x, pa.string()) for x in counts), _COMMA)
    text = pc.binary_join_element_wise(text, pc.fill_null(outer, _EMPTY), _EMPTY)
    return pc.if_else(none, _NULL_TEXT, text)


def _events(lists: pa.ListArray) -> pa.Array:
    """Each span's events as JSON rows [time, name, attributes | null, dropped]; NULL if none."""
    events = lists.flatten()
    if not len(events):
        return pa.nulls(len(lists), pa.string())
    attrs = _Attributes(_field(events, "attributes"), tagged=True)
    offsets = _rebased(lists).to_numpy(zero_copy_only=False)
    first, last = _ends(offsets)
    dropped = pc.fill_null(_field(events, "dropped_attributes_count"), 0)
    if pc.all(pc.equal(dropped, 0)).as_py():
        tail = pa.array([",0]", ",0]]"]).take(pa.array(last))
    else:
        closer = pa.array(["]", "]]"]).take(pa.array(last))
        tail = pc.binary_join_element_wise(",", pc.cast(dropped, pa.string()), closer, "")
    rows = pc.binary_join_element_wise(
        pa.array([",[", "[["]).take(pa.array(first)),
        pc.cast(_field(events, "time_unix_nano"), pa.string()),
        _json_strings(_field(events, "name"), ",", ","),
        pc.fill_null(attrs.json, "null"),
        tail,
        "",
    )
    return _cut(rows, offsets, pc.equal(pc.list_value_length(lists), 0))


def _links(lists: pa.ListArray) -> pa.Array:
    """Links are few: each span that has some gets its JSON in Python."""
    has = pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False)
    if not pc.any(has).as_py():
        return pa.nulls(len(lists), pa.string())
    texts = []
    for links in pc.filter(lists, has).to_pylist():
        rows = []
        for lk in links:
            t, s = lk["trace_id"], lk["span_id"]
            _check(len(t) == 16 and len(s) == 8)
            link = Link(
                t.hex(),
                s.hex(),
                lk["trace_state"],
                _python_attrs(lk["attributes"]),
                lk["dropped_attributes_count"],
                lk["flags"],
            )
            rows.append(link_row(link))
        texts.append(json_text(rows))
    return pc.replace_with_mask(pa.nulls(len(lists), pa.string()), has, pa.array(texts))


def _scope_columns(resources: pa.Array, ss_list: pa.ListArray, scopes: pa.Array) -> dict:
    """The columns that hold one value per ScopeSpans (service, resource, scope, schema URLs, the
    resource's and scope's dropped counts), made in Python: an export has few of them."""
    resource_rows = _field(resources, "resource").to_pylist()
    resource_urls = _field(resources, "schema_url").to_pylist()
    resource_of_scope = pc.list_parent_indices(ss_list).to_pylist()
    made = []
    for res in resource_rows:
        attrs = _python_attrs(res["attributes"]) if res else {}
        made.append(
            (
                service_name(attrs),
                encode_attrs(attrs),
                (res or {}).get("dropped_attributes_count") or 0,
            )
        )
    cols: dict[str, list] = {k: [] for k in (*SCOPE_COLUMNS, "dropped")}
    scope_rows = _field(scopes, "scope").to_pylist()
    scope_urls = _field(scopes, "schema_url").to_pylist()
    for ri, scope, url in zip(resource_of_scope, scope_rows, scope_urls, strict=True):
        service, rjson, rdropped = made[ri]
        scope = scope or {}
        sdropped = scope.get("dropped_attributes_count") or 0
        sattrs = _python_attrs(scope.get("attributes") or [])
        rurl = resource_urls[ri] or ""
        cols["service"].append(service)
        cols["resource"].append(rjson)
        cols["scope_name"].append(scope.get("name") or "")
        cols["scope_version"].append(scope.get("version") or None)
        cols["scope_attributes"].append(encode_attrs(sattrs) if sattrs else None)
        cols["schema_urls"].append(f"{rurl}\n{url}" if rurl or url else None)
        cols["dropped"].append(f",{rdropped},{sdropped}" if rdropped or sdropped else None)
    return {k: pa.array(v, pa.string()) for k, v in cols.items()}
