"""Reading the OTLP protobuf messages: parsing a request, and the attribute, id and link
fields that both the production decoder (columns.py) and the reference decoder read alike."""

from __future__ import annotations

from typing import Any

from threadline.seam import any_value
from threadline.server.model import Link
from threadline.server.otlp.decoded import OTLPError


def pb_attrs(kvs: Any) -> dict[str, Any]:
    """A repeated KeyValue as a dict (the last value of a repeated key wins)."""
    out = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which in ("array_value", "kvlist_value", None):
            out[kv.key] = any_value(v)
        else:
            out[kv.key] = getattr(v, which)
    return out


def pb_id(raw: bytes, size: int, where: str, optional: bool = False) -> str:
    """An id of `size` bytes as hex; OTLPError naming `where` for any other length."""
    if len(raw) == size:
        return raw.hex()
    if optional and not raw:
        return ""
    raise OTLPError(f"{where}: {len(raw)} bytes, expected {size}")


def pb_bad_ids(tid: bytes, sid: bytes, pid: bytes, ri: int, si: int, pi: int) -> None:
    """Raise OTLPError naming the span's id of the wrong length."""
    where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
    pb_id(tid, 16, where + ".traceId")
    pb_id(sid, 8, where + ".spanId")
    pb_id(pid, 8, where + ".parentSpanId", True)


def parse_protobuf(body: bytes) -> Any:
    """An ExportTraceServiceRequest message from its protobuf bytes."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as exc:
        if "MaxDepth" in str(exc):  # the parser does not say where: say what the limit is
            raise OTLPError(
                "invalid OTLP protobuf: attribute values nest too deep (protobuf reads 100 nested "
                f"messages, about 47 levels of arrayValue / kvlistValue): {exc}"
            ) from None
        raise OTLPError(f"invalid OTLP protobuf: {exc}") from None
    return req


def pb_link(lk: Any, ri: int, si: int, pi: int, li: int) -> Link:
    """A span's li-th Link message (of resourceSpans[ri].scopeSpans[si].spans[pi])."""
    where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}].links[{li}]"
    return Link(
        pb_id(lk.trace_id, 16, where + ".traceId"),
        pb_id(lk.span_id, 8, where + ".spanId"),
        lk.trace_state,
        pb_attrs(lk.attributes),
        lk.dropped_attributes_count,
        lk.flags,
    )
