"""OTLP/HTTP: the Starlette endpoint for `POST /v1/traces` (protobuf and JSON, gzip)."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from threadline.server.ingest.decode import decode_json_export, decode_protobuf_export
from threadline.server.ingest.queue import (
    COMMIT_TIMEOUT_S,
    MAX_REQUEST_BYTES,
    RETRY_AFTER_S,
    Ingest,
    not_stored,
)
from threadline.server.otlp.decoded import OTLPError
from threadline.server.otlp.response import export_response, status_body

log = logging.getLogger("threadline.server")


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


_PROTOBUF, _JSON = "application/x-protobuf", "application/json"


def http_handler(
    ingest: Ingest,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    commit_timeout: float | None = None,
) -> Callable:
    """The Starlette endpoint for `POST /v1/traces`. An export not committed within
    `commit_timeout` seconds (default COMMIT_TIMEOUT_S) is answered 503; it may still be stored
    (OTLP delivery is at-least-once)."""
    commit_timeout = commit_timeout or COMMIT_TIMEOUT_S

    async def export(request: Request) -> Response:
        media = _media(request.headers.get("content-type", ""))
        proto = media == _PROTOBUF
        if media not in (_PROTOBUF, _JSON):
            body = status_body(
                False,
                3,
                f"unsupported content type {media or '(none)'!r}: use {_PROTOBUF} or {_JSON}",
            )
            return Response(body, 415, media_type=_JSON)

        def error(status: int, grpc_code: int, message: str, **headers: str) -> Response:
            return Response(
                status_body(proto, grpc_code, message),
                status,
                headers=headers or None,
                media_type=media,
            )

        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_request_bytes:
            return error(
                413,
                8,
                f"request body of {declared} bytes exceeds the {max_request_bytes}-byte limit",
            )
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_request_bytes:
                    return error(413, 8, f"request body exceeds the {max_request_bytes}-byte limit")
                chunks.append(chunk)
        except ClientDisconnect:
            return Response(status_code=400)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, max_request_bytes)
            except OverflowError:
                return error(
                    413, 8, f"decompressed body exceeds the {max_request_bytes}-byte limit"
                )
            except (OSError, zlib.error, EOFError) as exc:
                return error(400, 3, f"invalid gzip body: {exc}")
        elif encoding not in ("identity", ""):
            return error(415, 3, f"unsupported content encoding {encoding!r}: use gzip or none")
        if not body:
            return error(400, 3, "empty request body: expected an OTLP ExportTraceServiceRequest")
        try:
            decoded = await asyncio.to_thread(
                decode_protobuf_export if proto else decode_json_export, body
            )
        except OTLPError as exc:
            return error(400, 3, str(exc))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                raise
            log.exception("OTLP/HTTP export could not be decoded")
            return error(500, 13, f"export not decoded: {exc!r}"[:500])
        try:
            fut = ingest.submit(decoded.rows)
            await asyncio.wait_for(asyncio.wrap_future(fut), commit_timeout)
        except Exception as exc:  # noqa: BLE001 - not stored: say why, and whether to retry
            retry, message = not_stored(exc, commit_timeout)
            if retry:
                return error(503, 14, message, **{"Retry-After": str(RETRY_AFTER_S)})
            return error(500, 13, message)
        return Response(export_response(decoded, proto), 200, media_type=media)

    return export


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress every gzip member (concatenated members are legal), never holding more than
    `limit` bytes of output: OverflowError past it."""
    out: list[bytes] = []
    size = 0
    while True:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        chunk = d.decompress(body, limit - size + 1)
        size += len(chunk)
        if size > limit:
            raise OverflowError
        out.append(chunk)
        if not d.eof:
            raise EOFError("truncated gzip stream")
        body = d.unused_data.lstrip(b"\0")  # gzip allows zero padding after a member
        if not body:
            return b"".join(out)
