"""OTLP export responses: the partial success of an accepted export, and the error status of a
refused one, in protobuf or JSON as the request came."""

from __future__ import annotations

import json
from typing import Any

from threadline.server.otlp.decoded import Decoded


def status_body(proto: bool, code: int, message: str) -> bytes:
    """An OTLP error body: google.rpc.Status in the request's encoding."""
    if proto:
        from google.rpc.status_pb2 import Status

        return Status(code=code, message=message).SerializeToString()
    return json.dumps({"code": code, "message": message}).encode()


def export_response(decoded: Decoded, proto: bool) -> bytes:
    """The ExportTraceServiceResponse body for an accepted export."""
    if proto:
        return response_message(decoded).SerializeToString()
    if not decoded.rejected:
        return b"{}"
    return json.dumps(
        {
            "partialSuccess": {
                "rejectedSpans": str(decoded.rejected),
                "errorMessage": decoded.message,
            }
        }
    ).encode()


def response_message(decoded: Decoded) -> Any:
    """The ExportTraceServiceResponse message (partial success when spans were rejected)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    if decoded.rejected:
        resp.partial_success.rejected_spans = decoded.rejected
        resp.partial_success.error_message = decoded.message
    return resp
