"""OTLP protobuf encoding of spans, written straight to the wire format.

The same bytes as the SDK's encode_spans(spans).SerializeToString() (tests/core/
test_otlp_encoder.py holds the two together), without building a protobuf object per span,
event, link, attribute and value first: encoding is most of what exporting a span costs.

Where the SDK's encoder would lose data, one bad value never costs the batch: an integer outside
OTLP's int64 is sent as its decimal string (logged once per key), and text that is not valid
Unicode (a lone surrogate, as os.fsdecode makes of undecodable file names) has the offending
characters replaced by "?"."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from struct import Struct
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace.span import DEFAULT_TRACE_STATE as _NO_STATE

from threadline._tracer import _NONE as _NO_EVENTS  # a lean span's events and links until any
from threadline._tracer import _UNSET as _STATUS_UNSET
from threadline._tracer import LeanSpan

log = logging.getLogger("threadline")

OWN = frozenset((LeanSpan, SdkSpan, ReadableSpan))  # span classes whose fields are read directly

_double = Struct("<d").pack
_fixed64 = Struct("<Q").pack
_fixed32 = Struct("<I").pack
_SMALL = [bytes((n,)) for n in range(128)]


_INT64 = 1 << 63
_warned_keys: set[str] = set()
_keys: dict[str, bytes] = {}


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if 0 < n < 16384:  # two bytes: most lengths and many counts
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message)."""
    return tag + _varint(len(payload)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue message's body. Its oneof members are written even when zero."""
    if value is None:
        return b""
    if value is True:
        return b"\x10\x01"
    if value is False:
        return b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise OverflowError("outside int64")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _value(v)) for v in value]))
    if isinstance(value, Mapping):
        items = b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()])
        return _field(b"\x32", items)
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return (_field(b"\x0a", key.encode()) if key else b"") + _field(b"\x12", _value(value))


def _key(key: str) -> bytes:
    """A KeyValue's key field; the few distinct keys of a process are encoded once."""
    field = _keys.get(key)
    if field is None:
        field = _field(b"\x0a", key.encode()) if key else b""
        if len(_keys) < 4096:
            _keys[key] = field
    return field


# A KeyValue's value field (tag 2) holding an AnyValue: for a text of n < 124 bytes, everything
# before the text; for an integer 0 <= i < 128 or a boolean, all of it.
_TEXT_VALUE = [b"\x12" + _SMALL[n + 2] + b"\x0a" + _SMALL[n] for n in range(124)]
_SMALL_INT_VALUE = [b"\x12\x02\x18" + _SMALL[i] for i in range(128)]
_INT_VALUE = [b"\x12" + _SMALL[n + 1] + b"\x18" for n in range(11)]  # before a varint of n bytes
_BOOL_VALUE = {False: b"\x12\x02\x10\x00", True: b"\x12\x02\x10\x01"}


def _attributes(tag: bytes, attributes: Any) -> bytes:
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        kind = type(value)
        field = _keys.get(key)
        if field is None and type(key) is str and key.isascii():  # other keys: _attribute()
            field = _key(key)
        if field is not None and len(field) < 60:  # the common cases, lengths of one byte each
            if kind is str:
                try:
                    text = value.encode()
                except UnicodeEncodeError:
                    text = None
                if text is not None and len(text) < 64:
                    out.append(
                        tag
                        + _SMALL[len(field) + len(text) + 4]
                        + field
                        + _TEXT_VALUE[len(text)]
                        + text
                    )
                    continue
            elif kind is int and 0 <= value < _INT64:
                if value < 128:
                    out.append(tag + _SMALL[len(field) + 4] + field + _SMALL_INT_VALUE[value])
                else:
                    v = _varint(value)
                    out.append(tag + _SMALL[len(field) + len(v) + 3] + field + _INT_VALUE[len(v)] + v)  # fmt: skip
                continue
            elif kind is bool:
                out.append(tag + _SMALL[len(field) + 4] + field + _BOOL_VALUE[value])
                continue
            elif kind is float:
                out.append(tag + _SMALL[len(field) + 11] + field + b"\x12\x09\x21" + _double(value))
                continue
        out.append(_attribute(tag, key, value, kind))
    return b"".join(out)


def _attribute(tag: bytes, key: str, value: Any, kind: type) -> bytes:
    """One attribute (a KeyValue field with `tag`), in general; b"" for a value that cannot be
    encoded (logged)."""
    try:
        if kind is str:
            v = value.encode()
            n = len(v)
            v = b"\x0a" + (_SMALL[n] if n < 128 else _varint(n)) + v
        elif kind is int and -_INT64 <= value < _INT64:
            v = b"\x18" + (_SMALL[value] if 0 <= value < 128 else _varint(value))
        else:
            v = _value(value)
        n = len(v)
        kv = _key(key) + b"\x12" + (_SMALL[n] if n < 128 else _varint(n)) + v
        n = len(kv)
        return tag + (_SMALL[n] if n < 128 else _varint(n)) + kv
    except (OverflowError, UnicodeEncodeError):
        if key not in _warned_keys and len(_warned_keys) < 1000:
            _warned_keys.add(key)
            log.warning(
                "threadline: attribute %r holds an integer outside OTLP's 64-bit range or "
                "text that is not valid Unicode: exported as text (logged once per key)",
                _text(key),
            )
        return _field(tag, _key_value(_text(key), _exportable(value)))
    except Exception as error:  # noqa: BLE001 - the SDK encoder skips such a value too
        log.warning("threadline: could not encode attribute %s: %s", key, error)
        return b""


def _text(text: str) -> str:
    """text, with what UTF-8 cannot carry (lone surrogates) replaced by "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _exportable(value: Any) -> Any:
    """value, with integers outside int64 as decimal strings and text made valid Unicode."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, Sequence):
        return [_exportable(v) for v in value]
    if isinstance(value, Mapping):
        return {_text(str(k)): _exportable(v) for k, v in value.items()}
    return value


def _flags(parent: Any) -> bytes:
    return b"\x85\x01" + _fixed32(0x300 if parent is not None and parent.is_remote else 0x100)


def _uint(tag: bytes, n: int) -> bytes:
    return tag + _varint(n) if n else b""


def _string(tag: bytes, text: str | None) -> bytes:
    if not text:
        return b""
    try:
        return _field(tag, text.encode())
    except UnicodeEncodeError:
        return _field(tag, text.encode("utf-8", "replace"))


def _time(tag: bytes, ns: int | None) -> bytes:
    return tag + _fixed64(ns) if ns else b""


def _trace_state(state: Any) -> str | None:
    return ",".join([f"{k}={v}" for k, v in state.items()]) if state is not None else None


# The end of a Span message for the common case: no events, links or drops, status unset, a
# local or remote parent (flags).
_PLAIN_TAIL = {
    remote: b"\x7a\x00\x85\x01" + _fixed32(0x300 if remote else 0x100) for remote in (False, True)
}
_KIND_FIELDS = [b"\x30" + _SMALL[n + 1] for n in range(5)]  # by SpanKind value
# Ids are written big-endian, a 128-bit trace id as two halves, each after its field's tag and
# length (two bytes, big-endian too); start and end times little-endian, each after its tag.
_IDS = Struct(">HQQHQ").pack
_IDS_PARENT = Struct(">HQQHQHQ").pack
_TRACE_ID, _SPAN_ID, _PARENT_ID = 0x0A10, 0x1208, 0x2208
_LOW64 = (1 << 64) - 1
_TIMES = Struct("<BQBQ").pack
_names: dict[str, bytes] = {}  # span names, encoded once: a process has few


def encode_span(span: Any) -> bytes:
    """One Span message's body."""
    if type(span) in OWN:
        return _own_span(span)
    return _any_span(span)


def _own_span(span: Any) -> bytes:
    """encode_span for the span classes whose fields are known (threadline's, the SDK's): read
    directly rather than through a property each; the same bytes (test_otlp_encoder.py)."""
    ctx = span._context  # noqa: SLF001 - a SpanContext: (trace_id, span_id, is_remote, flags, state, valid)
    parent = span._parent  # noqa: SLF001
    attributes = span._attributes  # noqa: SLF001
    events, links = span._events, span._links  # noqa: SLF001
    if type(attributes) is BoundedAttributes:
        dropped = attributes.dropped
        attributes = attributes._dict  # noqa: SLF001
    else:
        dropped = 0
    state = ctx[4]
    trace_id = ctx[0]
    if state is _NO_STATE or not state:  # ids, then parent (field 3, the trace state, is empty)
        if parent:
            ids = _IDS_PARENT(_TRACE_ID, trace_id >> 64, trace_id & _LOW64, _SPAN_ID, ctx[1], _PARENT_ID, parent[1])  # fmt: skip
        else:
            ids = _IDS(_TRACE_ID, trace_id >> 64, trace_id & _LOW64, _SPAN_ID, ctx[1])
    else:
        ids = (
            _IDS(_TRACE_ID, trace_id >> 64, trace_id & _LOW64, _SPAN_ID, ctx[1])
            + _string(b"\x1a", _trace_state(state))
            + (b"\x22\x08" + parent[1].to_bytes(8, "big") if parent else b"")
        )
    name = span._name  # noqa: SLF001
    name_field = _names.get(name)
    if name_field is None:
        name_field = _string(b"\x2a", name) if name else b""
        if len(_names) < 4096:
            _names[name] = name_field
    start, end = span._start_time, span._end_time  # noqa: SLF001
    times = _TIMES(0x39, start, 0x41, end) if start and end else _time(b"\x39", start) + _time(b"\x41", end)  # fmt: skip
    head = (
        ids
        + name_field
        + _KIND_FIELDS[span._kind._value_]  # noqa: SLF001
        + times
        + (_attributes(b"\x4a", attributes) if attributes else b"")
    )
    if (
        not dropped
        and span._status is _STATUS_UNSET  # noqa: SLF001
        and (
            (events is _NO_EVENTS and links is _NO_EVENTS)
            or (
                type(events) is BoundedList
                and type(links) is BoundedList
                and not events._dq  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue] - the SDK's stub omits it
                and not links._dq  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue] - the SDK's stub omits it
                and not events.dropped
                and not links.dropped
            )
        )
    ):
        return head + _PLAIN_TAIL[parent is not None and parent[2]]
    return head + _span_tail(span, parent)


def _any_span(span: Any) -> bytes:
    ctx = span.get_span_context()
    parent = span.parent
    parts = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
        _string(b"\x1a", _trace_state(ctx.trace_state)),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent else b"",
        _string(b"\x2a", span.name),
        _uint(b"\x30", span.kind.value + 1),
        _time(b"\x39", span.start_time),
        _time(b"\x41", span.end_time),
        _attributes(b"\x4a", span.attributes),
    ]
    return b"".join(parts) + _span_tail(span, parent)


def _span_tail(span: Any, parent: Any) -> bytes:
    """A Span message's fields after its attributes: drops, events, links, status and flags."""
    parts = [_uint(b"\x50", span.dropped_attributes)]
    for event in span.events:
        body = (
            _time(b"\x09", event.timestamp)
            + _string(b"\x12", event.name)
            + _attributes(b"\x1a", event.attributes)
            + _uint(b"\x20", event.dropped_attributes)
        )
        parts.append(_field(b"\x5a", body))
    parts.append(_uint(b"\x60", span.dropped_events))
    for link in span.links:
        body = (
            b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
            + b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
            + _attributes(b"\x22", link.attributes)
            + _uint(b"\x28", link.dropped_attributes)
            + b"\x35" + _fixed32(0x300 if link.context.is_remote else 0x100)
        )  # fmt: skip
        parts.append(_field(b"\x6a", body))
    parts.append(_uint(b"\x70", span.dropped_links))
    status = span.status
    if status is not None:
        parts.append(
            _field(b"\x7a", _string(b"\x12", status.description)
                   + _uint(b"\x18", status.status_code.value))
        )  # fmt: skip
    parts.append(_flags(parent))
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    return (
        _string(b"\x0a", scope.name)
        + _string(b"\x12", scope.version)
        + _attributes(b"\x1a", scope.attributes)
    )


def span_field(span: Any) -> bytes:
    """One span as a ScopeSpans message's `spans` field: what encode_request() takes."""
    body = _own_span(span) if type(span) in OWN else _any_span(span)
    n = len(body)
    return b"\x12" + (_SMALL[n] if n < 128 else _varint(n)) + body


def encode_spans(spans: Sequence[Any]) -> bytes:
    """A serialised ExportTraceServiceRequest for these spans, grouped by resource and scope."""
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    # resource, scope, their list: most spans follow one of the same
    last: tuple[Any, Any, Any] = (None, None, None)
    for span in spans:
        if type(span) in OWN:
            resource, scope = span._resource, span._instrumentation_scope or None  # noqa: SLF001
        else:
            resource, scope = span.resource, span.instrumentation_scope or None
        if resource is last[0] and scope is last[1]:
            encoded = last[2]
        else:
            encoded = group(groups, resource, scope)
            last = (resource, scope, encoded)
        encoded.append(span_field(span))
    return encode_request(groups)


def group(groups: dict[Any, dict[Any, list[bytes]]], resource: Any, scope: Any) -> list[bytes]:
    """The list of span fields for resource and scope in groups, added when new (in the order
    first seen, as the SDK groups them)."""
    by_scope = groups.get(resource)
    if by_scope is None:
        by_scope = groups[resource] = {}
    encoded = by_scope.get(scope)
    if encoded is None:
        encoded = by_scope[scope] = []
    return encoded


def encode_request(groups: dict[Any, dict[Any, list[bytes]]]) -> bytes:
    """A serialised ExportTraceServiceRequest of span fields (span_field()) grouped by resource,
    then by instrumentation scope (None for none)."""
    out = []
    for resource, by_scope in groups.items():
        body = [_field(b"\x0a", _attributes(b"\x0a", resource.attributes))]
        for scope, encoded in by_scope.items():
            scope_spans = (
                _field(b"\x0a", _scope(scope))
                + b"".join(encoded)
                + _string(b"\x1a", scope.schema_url if scope else None)
            )
            body.append(_field(b"\x12", scope_spans))
        body.append(_string(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)
