"""The production OTLP protobuf decoder, message by message: an ExportTraceServiceRequest
straight into span table rows (`storage.layout.SpanColumns`), with no `model.Span` per span.

Its fast twin, arrow.py, decodes large requests through Arrow; `ingest.decode` is the one place
that chooses between them. Both build the same rows as `SpanColumns.add_spans` over the spans of
the reference decoder (reference.py): the tests hold the three together.
"""

from __future__ import annotations

import math
from typing import Any

from threadline.seam import any_value
from threadline.server.otlp.decoded import MAX_TIME_NS, Decoded, check_time, service_name
from threadline.server.otlp.protobuf import pb_attrs, pb_bad_ids, pb_link
from threadline.server.storage.layout import (
    SpanColumns,
    dropped_text,
    encode_attrs,
    json_text,
    link_row,
    tag_value,
    text_form,
)

_ZERO16, _ZERO8 = bytes(16), bytes(8)


def columns_from_request(req: Any) -> Decoded:
    """The spans of a parsed ExportTraceServiceRequest as `Decoded.columns`; invalid ones are
    counted in the result (OTLP partial success) and malformed ones raise OTLPError, as
    `reference.decode_request` does."""
    rows = SpanColumns()
    out = Decoded(columns=rows)
    _add_request(rows, req, out)
    return out


def _add_request(rows: SpanColumns, req: Any, out: Decoded) -> None:
    c = rows.cols
    tids, sids, pids = rows.tids, rows.sids, rows.pids
    name, kind, start_ns, duration_ns = c["name"], c["kind"], c["start_ns"], c["duration_ns"]
    status_code, status_message = c["status_code"], c["status_message"]
    events, links, trace_state, flags, dropped = (
        c["events"], c["links"], c["trace_state"], c["flags"], c["dropped"]
    )  # fmt: skip

    def attributes(kvs: Any) -> None:
        _pb_attributes(rows, kvs)

    for ri, rs in enumerate(req.resource_spans):
        resource = pb_attrs(rs.resource.attributes)
        service, rjson, rschema = service_name(resource), encode_attrs(resource), rs.schema_url
        rdropped = rs.resource.dropped_attributes_count
        for si, ss in enumerate(rs.scope_spans):
            scope, sschema = ss.scope, ss.schema_url
            sdropped = scope.dropped_attributes_count
            sattrs = pb_attrs(scope.attributes)
            before = len(sids)
            for pi, s in enumerate(ss.spans):
                tid, sid, pid = s.trace_id, s.span_id, s.parent_span_id
                if len(tid) != 16 or len(sid) != 8 or (pid and len(pid) != 8):
                    pb_bad_ids(tid, sid, pid, ri, si, pi)
                if tid == _ZERO16 or sid == _ZERO8:
                    out.reject("trace id" if tid == _ZERO16 else "span id", ri, si, pi)
                    continue
                tids.append(tid)
                sids.append(sid)
                pids.append(pid)
                name.append(s.name)
                kind.append(s.kind)
                start, end = s.start_time_unix_nano, s.end_time_unix_nano
                if start > MAX_TIME_NS or end > MAX_TIME_NS:
                    where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
                    check_time(start, where + ".startTimeUnixNano")
                    check_time(end, where + ".endTimeUnixNano")
                start_ns.append(start)
                duration_ns.append(end - start)
                status = s.status
                status_code.append(status.code)
                status_message.append(status.message or None)
                attributes(s.attributes)
                if s.events:
                    events.append(json_text([_pb_event_row(e) for e in s.events]))
                else:
                    events.append(None)
                if s.links:
                    links.append(
                        json_text(
                            [link_row(pb_link(lk, ri, si, pi, li)) for li, lk in enumerate(s.links)]
                        )
                    )
                else:
                    links.append(None)
                trace_state.append(s.trace_state or None)
                flags.append(s.flags)
                dropped.append(
                    dropped_text(
                        s.dropped_attributes_count,
                        s.dropped_events_count,
                        s.dropped_links_count,
                        rdropped,
                        sdropped,
                    )
                )
            urls = f"{rschema}\n{sschema}" if rschema or sschema else None
            rows.add_scope(
                (
                    service,
                    rjson,
                    scope.name,
                    scope.version or None,
                    encode_attrs(sattrs) if sattrs else None,
                    urls,
                ),
                len(sids) - before,
            )


def _pb_attributes(rows: SpanColumns, kvs: Any) -> None:
    """`SpanColumns.add_attributes` straight from a span's protobuf KeyValues (each read once)."""
    a: dict[str, Any] = {}
    keys, nums, texts = rows.keys, rows.nums, rows.texts
    plain = True
    for kv in kvs:
        k, v = kv.key, kv.value
        keys.append(k)
        which = v.WhichOneof("value")
        if which == "string_value":
            a[k] = x = v.string_value
            nums.append(None)
            texts.append(f"{k}\x00{x}")
        elif which == "int_value":
            a[k] = x = v.int_value
            nums.append(float(x))
            texts.append(f"{k}\x00{x}")
        elif which == "double_value":
            a[k] = x = v.double_value
            nums.append(x)
            if not math.isfinite(x):
                plain = False
            texts.append(f"{k}\x00{text_form(x)}")
        elif which == "bool_value":
            a[k] = x = v.bool_value
            nums.append(None)
            texts.append(f"{k}\x00{'true' if x else 'false'}")
        else:
            a[k] = any_value(v)
            nums.append(None)
            texts.append(None)
            plain = False
    if len(a) < len(kvs):  # a repeated key: the last value wins, in the first key's place
        del keys[-len(kvs) :], nums[-len(kvs) :], texts[-len(kvs) :]
        return rows.add_attributes(a)
    rows.add_attribute_row(a, plain)


def _pb_event_row(e: Any) -> list:
    a = pb_attrs(e.attributes)
    return [e.time_unix_nano, e.name, tag_value(a) if a else None, e.dropped_attributes_count]
