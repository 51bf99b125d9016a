"""The reference decoder: an OTLP protobuf export to `model.Span` objects, field by field, as
the OTLP specification reads. Production ingest does not use it (it decodes straight into span
table rows: otlp/columns.py, otlp/arrow.py); the tests and benchmarks compare the production
decoder's rows with the rows of the spans this one returns, so it stays the plain reading.
"""

from __future__ import annotations

from typing import Any

from threadline.server.model import Event, Span
from threadline.server.otlp.decoded import Decoded, service_name
from threadline.server.otlp.protobuf import parse_protobuf, pb_attrs, pb_bad_ids, pb_link


def decode_protobuf(body: bytes) -> Decoded:
    """Spans from the protobuf bytes of an ExportTraceServiceRequest."""
    return decode_request(parse_protobuf(body))


def decode_request(req: Any) -> Decoded:
    """Spans from a parsed ExportTraceServiceRequest message (HTTP protobuf and gRPC)."""
    out = Decoded()
    for ri, rs in enumerate(req.resource_spans):
        resource = pb_attrs(rs.resource.attributes)
        service = service_name(resource)
        rschema, rdropped = rs.schema_url, rs.resource.dropped_attributes_count
        for si, ss in enumerate(rs.scope_spans):
            scope = ss.scope
            sname, sversion, sattrs, sschema = (
                scope.name,
                scope.version,
                pb_attrs(scope.attributes),
                ss.schema_url,
            )
            for pi, s in enumerate(ss.spans):
                tid, sid, pid = s.trace_id, s.span_id, s.parent_span_id
                if len(tid) != 16 or len(sid) != 8 or (pid and len(pid) != 8):
                    pb_bad_ids(tid, sid, pid, ri, si, pi)
                status = s.status
                span = Span(
                    tid.hex(),
                    sid.hex(),
                    pid.hex(),
                    s.name,
                    s.kind,
                    s.start_time_unix_nano,
                    s.end_time_unix_nano,
                    service,
                    status.code,
                    status.message,
                    pb_attrs(s.attributes),
                    resource,
                    sname,
                    sversion,
                    sattrs,
                    [
                        Event(
                            e.time_unix_nano,
                            e.name,
                            pb_attrs(e.attributes),
                            e.dropped_attributes_count,
                        )
                        for e in s.events
                    ],
                    [pb_link(lk, ri, si, pi, li) for li, lk in enumerate(s.links)],
                    s.trace_state,
                    s.flags,
                    s.dropped_attributes_count,
                    s.dropped_events_count,
                    s.dropped_links_count,
                    rschema,
                    sschema,
                    rdropped,
                    scope.dropped_attributes_count,
                )
                out.accept(span, ri, si, pi)
    return out
