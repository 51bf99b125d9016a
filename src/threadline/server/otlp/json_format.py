"""OTLP/JSON <-> the server's span model.

Decodes ExportTraceServiceRequest in OTLP/JSON (ids in case-insensitive hex, 64-bit integers as
numbers or strings, enums as integers or names, unknown fields ignored) and encodes spans back to
OTLP/JSON (TracesData) for the Jaeger api_v3 and the Python client.

Malformed input raises `OTLPError` whose message names the offending field by its JSON path;
ids must be exactly 32 / 16 hex digits, AnyValues nest at most `MAX_NESTING` deep.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from threadline.server.model import Event, Link, Span
from threadline.server.otlp.decoded import Decoded, OTLPError, check_time, service_name

_HEX = re.compile(r"[0-9a-fA-F]+")
# deepest AnyValue (arrays and kvlists in arrays and kvlists) accepted; protobuf's own parser stops
# at 100 nested messages, about 50 AnyValues
MAX_NESTING = 64


def _get(obj: dict, camel: str, snake: str | None = None) -> Any:
    """A field by its OTLP/JSON name, or by its protobuf name (protobuf JSON accepts both)."""
    v = obj.get(camel)
    if v is None and snake is not None:
        v = obj.get(snake)
    return v


class _JSON:
    """Walks an OTLP/JSON request keeping the path for precise error messages."""

    @staticmethod
    def obj(v: Any, where: str) -> dict:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise OTLPError(f"{where}: expected an object, got {_jtype(v)}")
        return v

    @staticmethod
    def arr(v: Any, where: str) -> list:
        if v is None:
            return []
        if not isinstance(v, list):
            raise OTLPError(f"{where}: expected an array, got {_jtype(v)}")
        return v

    @staticmethod
    def string(v: Any, where: str) -> str:
        if v is None:
            return ""
        if not isinstance(v, str):
            raise OTLPError(f"{where}: expected a string, got {_jtype(v)}")
        if not v.isascii():
            try:
                v.encode()
            except UnicodeEncodeError as exc:  # a lone surrogate from a \uD800-style escape
                raise OTLPError(
                    f"{where}: not valid Unicode (lone surrogate at character {exc.start})"
                ) from None
        return v

    @staticmethod
    def integer(v: Any, where: str, bits: int = 64, signed: bool = False) -> int:
        if v is None:
            return 0
        if isinstance(v, bool):
            raise OTLPError(f"{where}: expected an integer, got boolean")
        if isinstance(v, int):
            n = v
        elif isinstance(v, float) and v.is_integer():
            n = int(v)
        elif isinstance(v, str):
            try:
                n = int(v, 10)
            except ValueError:
                raise OTLPError(f"{where}: expected an integer, got string {v[:40]!r}") from None
        else:
            raise OTLPError(f"{where}: expected an integer, got {_jtype(v)}")
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= n <= hi:
            raise OTLPError(
                f"{where}: {n} is out of range for a{'' if signed else 'n unsigned'} {bits}-bit integer"
            )
        return n

    @staticmethod
    def enum(v: Any, where: str, names: dict[str, int]) -> int:
        if isinstance(v, str) and v in names:
            return names[v]
        return _JSON.integer(v, where, 32, signed=True)

    @staticmethod
    def hex_id(v: Any, size: int, where: str, optional: bool = False) -> str:
        s = _JSON.string(v, where)
        if not s and optional:
            return ""
        if len(s) != size * 2:
            raise OTLPError(f"{where}: {len(s)} hex digits, expected {size * 2} ({size} bytes)")
        if not _HEX.fullmatch(s):  # not bytes.fromhex: it skips whitespace
            raise OTLPError(f"{where}: {s!r} is not hexadecimal")
        return s.lower()

    @classmethod
    def value(cls, v: Any, where: str, depth: int = 1) -> Any:
        if depth > MAX_NESTING:
            raise OTLPError(f"{where}: AnyValue nesting too deep (more than {MAX_NESTING} levels)")
        v = cls.obj(v, where)
        for key, snake in _VALUE_KEYS:
            if key in v or snake in v:
                x = _get(v, key, snake)
                at = f"{where}.{key}"
                if key == "stringValue":
                    return cls.string(x, at)
                if key == "boolValue":
                    if not isinstance(x, bool):
                        raise OTLPError(f"{at}: expected a boolean, got {_jtype(x)}")
                    return x
                if key == "intValue":
                    return cls.integer(x, at, 64, signed=True)
                if key == "doubleValue":
                    return cls.double(x, at)
                if key == "bytesValue":
                    try:
                        return base64.b64decode(cls.string(x, at), validate=True)
                    except ValueError:  # binascii.Error, or text that is not ASCII
                        raise OTLPError(f"{at}: expected base64") from None
                if key == "arrayValue":
                    vals = cls.arr(cls.obj(x, at).get("values"), at + ".values")
                    return [
                        cls.value(e, f"{at}.values[{i}]", depth + 1) for i, e in enumerate(vals)
                    ]
                if key == "kvlistValue":
                    return cls.attrs(cls.obj(x, at).get("values"), at + ".values", depth + 1)
        return None

    @staticmethod
    def double(v: Any, where: str) -> float:
        if isinstance(v, bool):
            raise OTLPError(f"{where}: expected a number, got boolean")
        if isinstance(v, int | float):
            return float(v)
        if isinstance(v, str):
            special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
            if v in special:
                return special[v]
            try:
                return float(v)
            except ValueError:
                pass
        raise OTLPError(f"{where}: expected a number, got {_jtype(v)}")

    @classmethod
    def attrs(cls, v: Any, where: str, depth: int = 1) -> dict[str, Any]:
        out = {}
        for i, kv in enumerate(cls.arr(v, where)):
            at = f"{where}[{i}]"
            kv = cls.obj(kv, at)
            key = cls.string(kv.get("key"), at + ".key")
            out[key] = cls.value(kv.get("value"), at + ".value", depth)
        return out


_VALUE_KEYS = [
    ("stringValue", "string_value"),
    ("boolValue", "bool_value"),
    ("intValue", "int_value"),
    ("doubleValue", "double_value"),
    ("bytesValue", "bytes_value"),
    ("arrayValue", "array_value"),
    ("kvlistValue", "kvlist_value"),
]
_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _jtype(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number"
    )


def decode_json(body: bytes | str | dict) -> Decoded:
    if isinstance(body, dict):
        doc = body
    else:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OTLPError(f"invalid JSON: {exc}") from None
        except RecursionError:
            raise OTLPError("invalid JSON: nesting too deep") from None
    j = _JSON
    doc = j.obj(doc, "$")
    out = Decoded()
    for ri, rs in enumerate(j.arr(_get(doc, "resourceSpans", "resource_spans"), "resourceSpans")):
        rw = f"resourceSpans[{ri}]"
        rs = j.obj(rs, rw)
        res = j.obj(rs.get("resource"), rw + ".resource")
        resource = j.attrs(res.get("attributes"), rw + ".resource.attributes")
        rdropped = _json_dropped(res, rw + ".resource")
        service = service_name(resource)
        rschema = j.string(_get(rs, "schemaUrl", "schema_url"), rw + ".schemaUrl")
        for si, ss in enumerate(j.arr(_get(rs, "scopeSpans", "scope_spans"), rw + ".scopeSpans")):
            sw = f"{rw}.scopeSpans[{si}]"
            ss = j.obj(ss, sw)
            scope = j.obj(ss.get("scope"), sw + ".scope")
            sname = j.string(scope.get("name"), sw + ".scope.name")
            sversion = j.string(scope.get("version"), sw + ".scope.version")
            sattrs = j.attrs(scope.get("attributes"), sw + ".scope.attributes")
            sdropped = _json_dropped(scope, sw + ".scope")
            sschema = j.string(_get(ss, "schemaUrl", "schema_url"), sw + ".schemaUrl")
            for pi, s in enumerate(j.arr(ss.get("spans"), sw + ".spans")):
                w = f"{sw}.spans[{pi}]"
                s = j.obj(s, w)
                status = j.obj(s.get("status"), w + ".status")
                span = Span(
                    trace_id=j.hex_id(_get(s, "traceId", "trace_id"), 16, w + ".traceId"),
                    span_id=j.hex_id(_get(s, "spanId", "span_id"), 8, w + ".spanId"),
                    parent_span_id=j.hex_id(
                        _get(s, "parentSpanId", "parent_span_id"), 8, w + ".parentSpanId", True
                    ),
                    name=j.string(s.get("name"), w + ".name"),
                    kind=j.enum(s.get("kind"), w + ".kind", _KIND_NAMES),
                    start_ns=check_time(
                        j.integer(
                            _get(s, "startTimeUnixNano", "start_time_unix_nano"),
                            w + ".startTimeUnixNano",
                        ),
                        w + ".startTimeUnixNano",
                    ),
                    end_ns=check_time(
                        j.integer(
                            _get(s, "endTimeUnixNano", "end_time_unix_nano"),
                            w + ".endTimeUnixNano",
                        ),
                        w + ".endTimeUnixNano",
                    ),
                    service=service,
                    status_code=j.enum(status.get("code"), w + ".status.code", _STATUS_NAMES),
                    status_message=j.string(status.get("message"), w + ".status.message"),
                    attributes=j.attrs(s.get("attributes"), w + ".attributes"),
                    resource=resource,
                    scope_name=sname,
                    scope_version=sversion,
                    scope_attributes=sattrs,
                    events=[
                        _json_event(e, f"{w}.events[{i}]")
                        for i, e in enumerate(j.arr(s.get("events"), w + ".events"))
                    ],
                    links=[
                        _json_link(lk, f"{w}.links[{i}]")
                        for i, lk in enumerate(j.arr(s.get("links"), w + ".links"))
                    ],
                    trace_state=j.string(_get(s, "traceState", "trace_state"), w + ".traceState"),
                    flags=j.integer(s.get("flags"), w + ".flags", 32),
                    dropped_attributes_count=j.integer(
                        _get(s, "droppedAttributesCount", "dropped_attributes_count"),
                        w + ".droppedAttributesCount",
                        32,
                    ),
                    dropped_events_count=j.integer(
                        _get(s, "droppedEventsCount", "dropped_events_count"),
                        w + ".droppedEventsCount",
                        32,
                    ),
                    dropped_links_count=j.integer(
                        _get(s, "droppedLinksCount", "dropped_links_count"),
                        w + ".droppedLinksCount",
                        32,
                    ),
                    resource_schema_url=rschema,
                    scope_schema_url=sschema,
                    resource_dropped_attributes_count=rdropped,
                    scope_dropped_attributes_count=sdropped,
                )
                out.accept(span, ri, si, pi)
    return out


def _json_dropped(obj: dict, w: str) -> int:
    return _JSON.integer(
        _get(obj, "droppedAttributesCount", "dropped_attributes_count"),
        w + ".droppedAttributesCount",
        32,
    )


def _json_event(e: Any, w: str) -> Event:
    j = _JSON
    e = j.obj(e, w)
    return Event(
        time_ns=j.integer(_get(e, "timeUnixNano", "time_unix_nano"), w + ".timeUnixNano"),
        name=j.string(e.get("name"), w + ".name"),
        attributes=j.attrs(e.get("attributes"), w + ".attributes"),
        dropped_attributes_count=_json_dropped(e, w),
    )


def _json_link(lk: Any, w: str) -> Link:
    j = _JSON
    lk = j.obj(lk, w)
    return Link(
        trace_id=j.hex_id(_get(lk, "traceId", "trace_id"), 16, w + ".traceId"),
        span_id=j.hex_id(_get(lk, "spanId", "span_id"), 8, w + ".spanId"),
        trace_state=j.string(_get(lk, "traceState", "trace_state"), w + ".traceState"),
        attributes=j.attrs(lk.get("attributes"), w + ".attributes"),
        dropped_attributes_count=_json_dropped(lk, w),
        flags=j.integer(lk.get("flags"), w + ".flags", 32),
    )


# --------------------------------------------------------------------------- encode to JSON


def json_value(v: Any) -> dict[str, Any]:
    """An OTLP/JSON AnyValue for a Python attribute value."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        if math.isfinite(v):
            return {"doubleValue": v}
        return {"doubleValue": "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    if isinstance(v, list | tuple):
        return {"arrayValue": {"values": [json_value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": json_attrs(v)}}
    return {}


def json_attrs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": json_value(v)} for k, v in attrs.items()]


def _json_span(s: Span) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": s.trace_id,
        "spanId": s.span_id,
        "parentSpanId": s.parent_span_id,
        "traceState": s.trace_state,
        "flags": s.flags,
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": str(s.start_ns),
        "endTimeUnixNano": str(s.end_ns),
        "attributes": json_attrs(s.attributes),
        "droppedAttributesCount": s.dropped_attributes_count,
        "events": [
            {
                "timeUnixNano": str(e.time_ns),
                "name": e.name,
                "attributes": json_attrs(e.attributes),
                "droppedAttributesCount": e.dropped_attributes_count,
            }
            for e in s.events
        ],
        "droppedEventsCount": s.dropped_events_count,
        "links": [
            {
                "traceId": lk.trace_id,
                "spanId": lk.span_id,
                "traceState": lk.trace_state,
                "attributes": json_attrs(lk.attributes),
                "droppedAttributesCount": lk.dropped_attributes_count,
                "flags": lk.flags,
            }
            for lk in s.links
        ],
        "droppedLinksCount": s.dropped_links_count,
        "status": {"code": s.status_code, "message": s.status_message},
    }
    return out


def encode_json(spans: Iterable[Span]) -> dict[str, Any]:
    """OTLP/JSON TracesData: spans grouped by resource, then by instrumentation scope."""
    groups: dict[str, tuple[Span, dict[str, tuple[Span, list]]]] = {}
    for s in spans:
        rkey = json.dumps(
            [s.resource_schema_url, s.resource_dropped_attributes_count, _canon(s.resource)],
            sort_keys=True,
            default=repr,
        )
        skey = json.dumps(
            [
                s.scope_name,
                s.scope_version,
                s.scope_schema_url,
                s.scope_dropped_attributes_count,
                _canon(s.scope_attributes),
            ],
            sort_keys=True,
            default=repr,
        )
        scopes = groups.setdefault(rkey, (s, {}))[1]
        scopes.setdefault(skey, (s, []))[1].append(_json_span(s))
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": json_attrs(first.resource),
                    "droppedAttributesCount": first.resource_dropped_attributes_count,
                },
                "schemaUrl": first.resource_schema_url,
                "scopeSpans": [
                    {
                        "scope": {
                            "name": sf.scope_name,
                            "version": sf.scope_version,
                            "attributes": json_attrs(sf.scope_attributes),
                            "droppedAttributesCount": sf.scope_dropped_attributes_count,
                        },
                        "schemaUrl": sf.scope_schema_url,
                        "spans": items,
                    }
                    for sf, items in scopes.values()
                ],
            }
            for first, scopes in groups.values()
        ]
    }


def _canon(v: Any) -> Any:
    """A JSON-able, type-tagged form of an attribute value, for grouping equal values only."""
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    if isinstance(v, bytes):
        return ["b", v.hex()]
    return [type(v).__name__, v if not isinstance(v, float) or math.isfinite(v) else repr(v)]
