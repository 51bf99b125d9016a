"""OTLP/gRPC: the TraceService/Export handler."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from threadline.server.ingest.decode import decode_protobuf_export
from threadline.server.ingest.queue import COMMIT_TIMEOUT_S, RETRY_AFTER_S, Ingest, not_stored
from threadline.server.otlp.decoded import OTLPError
from threadline.server.otlp.response import response_message

log = logging.getLogger("threadline.server")


def grpc_handler(
    ingest: Ingest,
    commit_timeout: float | None = None,
    allows: Callable[[Iterable[tuple[str, Any]]], bool] | None = None,
) -> Any:
    """OTLP/gRPC TraceService/Export. The request arrives as its serialized bytes (no
    deserializer), so it takes the same decode as OTLP/HTTP protobuf: the Arrow path for large
    exports, and a precise INVALID_ARGUMENT for a malformed one. `allows`: whether the call's
    metadata may export (`web.access.Access.grpc_allows`); UNAUTHENTICATED when not."""
    import grpc

    commit_timeout = commit_timeout or COMMIT_TIMEOUT_S

    def export(body: bytes, context: grpc.ServicerContext) -> Any:
        if allows is not None and not allows(context.invocation_metadata() or ()):
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a token to export is required: send authorization: Bearer TOKEN metadata",
            )
        try:
            decoded = decode_protobuf_export(body)
        except OTLPError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            log.exception("OTLP/gRPC export could not be decoded")
            context.abort(grpc.StatusCode.INTERNAL, f"export not decoded: {exc!r}"[:500])
        try:
            ingest.submit(decoded.rows).result(commit_timeout)
        except Exception as exc:  # noqa: BLE001 - not stored: say why, and whether to retry
            retry, message = not_stored(exc, commit_timeout)
            if not retry:
                context.abort(grpc.StatusCode.INTERNAL, message)
            context.set_trailing_metadata(_retry_metadata(message))
            context.abort(grpc.StatusCode.UNAVAILABLE, message)
        return response_message(decoded).SerializeToString()

    method = grpc.unary_unary_rpc_method_handler(export)  # bytes in, bytes out
    return grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": method}
    )


def _retry_metadata(message: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata telling an exporter when to retry (OTLP: google.rpc.RetryInfo), in the
    status details gRPC clients read, and under the key the Python OTLP exporter reads."""
    from google.rpc.error_details_pb2 import RetryInfo
    from google.rpc.status_pb2 import Status

    info = RetryInfo()
    info.retry_delay.seconds = RETRY_AFTER_S
    status = Status(code=14, message=message)
    status.details.add().Pack(info)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )
