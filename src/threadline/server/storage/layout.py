"""The span table's layout: its columns, the typed JSON of attribute maps, and the rows a store
writes (`Rows`: `SpanColumns` built in Python, `ArrowColumns` already in Arrow).

Engine-neutral: an engine maps COLUMNS to its own types and reads ARROW_SCHEMA tables. Imports
only the model and the vocabulary, so the OTLP decoders may build rows in this layout.

`SpanColumns` is the one-pass builder: the production OTLP decoder fills it straight from the
protobuf messages (otlp/columns.py, no `model.Span` per span; model objects are for reads and
analysis), and `add_spans` fills it from model Spans (OTLP/JSON, direct writes). Ids are joined
into one buffer and split into signed 64-bit halves with a single struct call; resource and scope
attributes are encoded once per ResourceSpans/ScopeSpans; list columns are assembled from flat
values and offsets, so Arrow never infers a type from Python objects.

Attribute maps are typed JSON text, exact for every OTLP value type: str, int, bool, finite float
and null are plain JSON; every JSON object is a tag: {"b": base64} bytes, {"m": [[key, value],
...]} kvlist, {"f": "NaN"|"Infinity"|"-Infinity"}.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from itertools import accumulate, chain, count, repeat
from json.encoder import (  # the C accelerator, which the stubs leave out
    c_make_encoder,  # pyright: ignore[reportAttributeAccessIssue]
)
from json.encoder import encode_basestring as _encode_str
from typing import Any, Protocol

import pyarrow as pa

from threadline.semconv import PENDING
from threadline.server.model import Event, Link, Span

_ZERO16, _ZERO8 = bytes(16), bytes(8)

_I64, _I32, _TEXT = pa.int64(), pa.int32(), pa.string()
# The span table, column by column, in Arrow types: what every engine stores (each in its own
# types) and what `Rows.table()` holds. The attribute index's texts are handed over for the
# engine to index as it does best (DuckDB hashes them into attr_kv and attr_sig).
COLUMNS: dict[str, pa.DataType] = {
    "tid_hi": _I64,  # the trace id as two signed 64-bit halves
    "tid_lo": _I64,
    "span_id": _I64,
    "parent_id": _I64,  # NULL when a root
    "service": _TEXT,
    "name": _TEXT,
    "kind": _I32,  # OTLP enums are open: keep any int32 as sent
    "start_ns": _I64,
    "duration_ns": _I64,
    "status_code": _I32,
    "status_message": _TEXT,
    "pending": pa.bool_(),
    "attributes": _TEXT,
    "resource": _TEXT,
    "scope_name": _TEXT,
    "scope_version": _TEXT,
    "scope_attributes": _TEXT,
    "events": _TEXT,  # NULL when none
    "links": _TEXT,
    "trace_state": _TEXT,
    "flags": pa.uint32(),
    "dropped": _TEXT,  # dropped_text(): "attrs,events,links[,resource,scope]" counts
    "schema_urls": _TEXT,  # "resource\nscope"; NULL when both empty
    # search index over span attributes (fixed-width scans instead of parsing JSON text):
    "attr_keys": pa.list_(_TEXT),  # attribute keys, in order
    "attr_nums": pa.list_(pa.float64()),  # numeric value of the key at that position, else NULL
    "attr_texts": pa.list_(_TEXT),  # "key\0text form" of every scalar attribute, else NULL
}
ARROW_SCHEMA = pa.schema(list(COLUMNS.items()))

# ------------------------------------------------------------------------------ typed JSON

json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# a dict of str/int/bool/finite float: the C encoder made once, not once per call as dumps does
_c_plain = c_make_encoder and c_make_encoder(
    None, None, _encode_str, None, ":", ",", False, False, True
)


def _plain_json(a: dict[str, Any]) -> str:
    return "".join(_c_plain(a, 0)) if _c_plain else json_text(a)


def tag_value(v: Any) -> Any:
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return v
    if t is float:
        return (
            v
            if math.isfinite(v)
            else {"f": repr(v).replace("inf", "Infinity").replace("nan", "NaN")}
        )
    if t is bytes:
        return {"b": base64.b64encode(v).decode()}
    if t is dict:
        return {"m": [[k, tag_value(x)] for k, x in v.items()]}
    if t is list or t is tuple:
        return [tag_value(x) for x in v]
    raise TypeError(f"cannot store attribute value of type {t.__name__}")


def encode_attrs(attrs: dict[str, Any]) -> str:
    for v in attrs.values():
        t = type(v)
        if t is str or t is int or t is bool or (t is float and math.isfinite(v)):
            continue
        return json_text({k: tag_value(x) for k, x in attrs.items()})
    return json_text(attrs)


def untag_value(v: Any) -> Any:
    t = type(v)
    if t is list:
        return [untag_value(x) for x in v]
    if t is not dict:
        return v
    if "b" in v:
        return base64.b64decode(v["b"])
    if "m" in v:
        return {k: untag_value(x) for k, x in v["m"]}
    return float(v["f"].replace("Infinity", "inf"))


_raw_decode = json.JSONDecoder().raw_decode  # the stored text has no outer whitespace to skip


def decode_attrs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    attrs = _raw_decode(text)[0]
    if "[" in text or '{"' in text[1:]:  # a tagged or array value somewhere: untag those
        for k, v in attrs.items():
            if type(v) is dict or type(v) is list:
                attrs[k] = untag_value(v)
    return attrs


def text_form(v: Any) -> str | None:
    """A scalar's text as json_extract_string renders it (what `key=value` compares)."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return repr(v) if math.isfinite(v) else json.dumps(v)  # repr is what json writes
    return None


def dropped_text(
    attributes: int, events: int, links: int, resource: int = 0, scope: int = 0
) -> str | None:
    """The dropped column: the span's counts "attrs,events,links", then ",resource,scope" (the
    dropped attribute counts of its Resource and InstrumentationScope) when either is set; NULL
    when all are zero."""
    if resource or scope:
        return f"{attributes},{events},{links},{resource},{scope}"
    if attributes or events or links:
        return f"{attributes},{events},{links}"
    return None


def read_dropped(text: str | None) -> list[int]:
    """The five counts of a dropped column value."""
    d = [int(x) for x in text.split(",")] if text else []
    return d + [0] * (5 - len(d))


def event_row(e: Event) -> list:
    return [
        e.time_ns,
        e.name,
        tag_value(e.attributes) if e.attributes else None,
        e.dropped_attributes_count,
    ]


def link_row(lk: Link) -> list:
    a = tag_value(lk.attributes) if lk.attributes else None
    return [lk.trace_id, lk.span_id, lk.trace_state, a, lk.dropped_attributes_count, lk.flags]


# ------------------------------------------------------------------------------------- rows


class Rows(Protocol):
    """Span table rows ready to store: what `Store.write_columns` takes."""

    def __len__(self) -> int: ...

    def table(self) -> pa.Table:
        """The rows as an Arrow table of ARROW_SCHEMA."""
        ...

    def trace_ids(self) -> set[str]:
        """The hex ids of the traces the rows belong to."""
        ...


class ArrowColumns:
    """Rows already in Arrow (what otlp/arrow.py decodes; SpanColumns builds them in Python)."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __len__(self) -> int:
        return self._table.num_rows

    def table(self) -> pa.Table:
        return self._table

    def trace_ids(self) -> set[str]:
        pairs = zip(
            self._table.column("tid_hi").to_pylist(),
            self._table.column("tid_lo").to_pylist(),
            strict=True,
        )
        m = (1 << 64) - 1
        return {format(hi & m, "016x") + format(lo & m, "016x") for hi, lo in set(pairs)}


class SpanColumns:
    """Rows of the span table, column by column; `table()` makes the Arrow table to insert."""

    def __init__(self) -> None:
        self.tids: list[bytes] = []  # raw 16-byte trace ids, split into tid_hi/tid_lo at the end
        self.sids: list[bytes] = []
        self.pids: list[bytes] = []  # b"" for a root
        self.cols: dict[str, list] = {
            k: []
            for k, t in COLUMNS.items()
            if not pa.types.is_list(t) and k not in _IDS + SCOPE_COLUMNS
        }
        self.scopes: list[tuple] = []  # SCOPE_COLUMNS values, one tuple per run of spans
        self.scope_counts: list[int] = []
        self.key_counts: list[int] = []  # attributes per span: offsets of the attr_* lists
        self.no_attrs: list[bool] = []
        self.keys: list[str] = []
        self.nums: list[float | None] = []
        self.texts: list[str | None] = []  # "key\0text form" of scalars: the store hashes them

    def __len__(self) -> int:
        return len(self.sids)

    def trace_ids(self) -> set[str]:
        return {t.hex() for t in self.tids}

    def add_attributes(self, a: dict[str, Any]) -> None:
        """The attributes column, pending flag and the index entries of one span."""
        keys, nums, texts = self.keys, self.nums, self.texts
        plain = True
        for k, v in a.items():
            keys.append(k)
            t = type(v)
            if t is str or t is int:
                nums.append(None if t is str else float(v))
                texts.append(f"{k}\x00{v}")
            elif t is float:
                nums.append(v)
                if not math.isfinite(v):
                    plain = False
                texts.append(f"{k}\x00{text_form(v)}")
            elif t is bool:
                nums.append(None)
                texts.append(f"{k}\x00{'true' if v else 'false'}")
            else:
                nums.append(None)
                texts.append(None)
                plain = False
        self.add_attribute_row(a, plain)

    def add_attribute_row(self, a: dict[str, Any], plain: bool) -> None:
        """`plain`: no value needs a JSON tag."""
        c = self.cols
        if not a:
            c["attributes"].append(None)
            c["pending"].append(False)
            self.key_counts.append(0)
            self.no_attrs.append(True)  # NULL lists
            return
        self.key_counts.append(len(a))
        self.no_attrs.append(False)
        c["attributes"].append(_plain_json(a) if plain else encode_attrs(a))
        c["pending"].append(bool(a[PENDING]) if PENDING in a else False)

    def add_spans(self, spans: list[Span]) -> SpanColumns:
        c = self.cols
        resource_json: dict[int, str] = {}  # spans of one export share their resource dict
        scope_json: dict[int, str | None] = {}
        for s in spans:
            self.tids.append(bytes.fromhex(s.trace_id))
            self.sids.append(bytes.fromhex(s.span_id))
            self.pids.append(bytes.fromhex(s.parent_span_id))
            c["name"].append(s.name)
            c["kind"].append(s.kind)
            c["start_ns"].append(s.start_ns)
            c["duration_ns"].append(s.end_ns - s.start_ns)
            c["status_code"].append(s.status_code)
            c["status_message"].append(s.status_message or None)
            self.add_attributes(s.attributes)
            r = resource_json.get(id(s.resource))
            if r is None:
                r = resource_json[id(s.resource)] = encode_attrs(s.resource)
            sa = s.scope_attributes
            j = scope_json.get(id(sa))
            if j is None:
                j = scope_json[id(sa)] = encode_attrs(sa) if sa else None
            urls = (
                f"{s.resource_schema_url}\n{s.scope_schema_url}"
                if s.resource_schema_url or s.scope_schema_url
                else None
            )
            self.add_scope((s.service, r, s.scope_name, s.scope_version or None, j, urls), 1)
            c["events"].append(json_text([event_row(e) for e in s.events]) if s.events else None)
            c["links"].append(json_text([link_row(lk) for lk in s.links]) if s.links else None)
            c["trace_state"].append(s.trace_state or None)
            c["flags"].append(s.flags)
            c["dropped"].append(
                dropped_text(
                    s.dropped_attributes_count,
                    s.dropped_events_count,
                    s.dropped_links_count,
                    s.resource_dropped_attributes_count,
                    s.scope_dropped_attributes_count,
                )
            )
        return self

    def add_scope(self, values: tuple, n: int) -> None:
        """The next n spans' SCOPE_COLUMNS values (a run: the spans of one ScopeSpans)."""
        if self.scopes and self.scopes[-1] == values:
            self.scope_counts[-1] += n
        else:
            self.scopes.append(values)
            self.scope_counts.append(n)

    def table(self) -> pa.Table:
        n = len(self.sids)
        ids = struct.unpack(f">{2 * n}q", b"".join(self.tids))
        # a root's parent is NULL; an absent parent is b"", padded to keep positions aligned
        parents = struct.unpack(f">{n}q", b"".join(p or _ZERO8 for p in self.pids))
        arrays: dict[str, Any] = {
            "tid_hi": pa.array(ids[0::2], pa.int64()),
            "tid_lo": pa.array(ids[1::2], pa.int64()),
            "span_id": pa.array(struct.unpack(f">{n}q", b"".join(self.sids)), pa.int64()),
            "parent_id": pa.array(
                parents, pa.int64(), mask=pa.array([not p for p in self.pids], pa.bool_())
            ),
        }
        for k, v in self.cols.items():
            arrays[k] = pa.array(v, COLUMNS[k])
        # one value per ScopeSpans, spread over its spans by Arrow rather than per span in Python
        which = pa.array(chain.from_iterable(map(repeat, count(), self.scope_counts)), pa.int32())
        for i, k in enumerate(SCOPE_COLUMNS):
            arrays[k] = pa.array([v[i] for v in self.scopes], pa.string()).take(which)
        off = pa.array(accumulate(self.key_counts, initial=0), pa.int32())
        valid = pa.array(self.no_attrs, pa.bool_())
        for k, values, t in (
            ("attr_keys", self.keys, pa.string()),
            ("attr_nums", self.nums, pa.float64()),
            ("attr_texts", self.texts, pa.string()),
        ):
            arrays[k] = pa.ListArray.from_arrays(off, pa.array(values, t), mask=valid)
        return pa.Table.from_arrays([arrays[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


_IDS = ("tid_hi", "tid_lo", "span_id", "parent_id")  # made from the joined raw ids
SCOPE_COLUMNS = (
    "service", "resource", "scope_name", "scope_version", "scope_attributes", "schema_urls"
)  # fmt: skip
