"""The OTLP receiver: HTTP route (protobuf and JSON, gzip), gRPC TraceService, and the bounded
ingest queue in front of the store.

An export is acknowledged only after the commit holding its spans returns (DuckDB syncs its WAL
on commit), so a 200 survives `kill -9`. One writer thread merges whatever exports are waiting
into a single commit; when the queue holds more than its bound, exporters get 503 + Retry-After
(gRPC UNAVAILABLE), which every OTLP exporter retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from threadline.server.columns import SpanColumns, columns_from_protobuf, columns_from_request
from threadline.server.model import Span
from threadline.server.otlp import Decoded, OTLPError, decode_json
from threadline.server.store import Store

log = logging.getLogger("threadline.server")

MAX_REQUEST_BYTES = 16 * 1024 * 1024
RETRY_AFTER_S = 2


class Busy(Exception):
    """The ingest queue is full; the exporter should retry later."""


class Ingest:
    """Bounded queue + one writer thread. `submit` returns a future resolved after commit."""

    def __init__(
        self,
        store: Store,
        max_queued_spans: int = 200_000,
        max_batch_spans: int = 20_000,
        retention_ns: int | None = None,
    ) -> None:
        self.store = store
        self.max_queued_spans = max_queued_spans
        self.max_batch_spans = max_batch_spans
        self.retention_ns = retention_ns
        self.committed = 0
        self.failed = 0
        self._queued = 0
        self._items: list[tuple[SpanColumns, concurrent.futures.Future]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._listeners: list[Callable[[set[str]], None]] = []
        self._next_retention = 0.0
        self._thread = threading.Thread(target=self._run, name="threadline-ingest", daemon=True)
        self._thread.start()

    def subscribe(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        """Call `listener(trace_ids)` (on the writer thread) after each commit with the hex ids
        of the traces it touched; returns unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def submit(self, spans: SpanColumns | list[Span]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if isinstance(spans, list):
            spans = SpanColumns().add_spans(spans)
        if not len(spans):
            fut.set_result(0)
            return fut
        with self._cond:
            if self._closing:
                raise Busy("the server is shutting down")
            if self._queued and self._queued + len(spans) > self.max_queued_spans:
                raise Busy(f"ingest queue full ({self._queued} spans waiting to be stored)")
            self._items.append((spans, fut))
            self._queued += len(spans)
            self._cond.notify()
        return fut

    def _take(self) -> list[tuple[SpanColumns, concurrent.futures.Future]]:
        with self._cond:
            while not self._items and not self._closing:
                self._cond.wait(timeout=self._retention_wait())
                if not self._items:
                    self._retain()
            taken, n = [], 0
            while self._items and (not taken or n + len(self._items[0][0]) <= self.max_batch_spans):
                item = self._items.pop(0)
                taken.append(item)
                n += len(item[0])
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return  # closing and drained
            try:
                if not self._commit(taken, alone=len(taken) == 1):
                    for item in taken:  # one bad export must not fail those sharing its commit
                        self._commit([item], alone=True)
            finally:
                with self._cond:
                    self._queued -= sum(len(batch) for batch, _ in taken)
            self._retain()

    def _commit(self, taken: list, alone: bool) -> bool:
        """Store exports in one commit and resolve them. A failed commit fails the exports
        only when `alone` (else the caller retries them one by one); returns success."""
        batches = [batch for batch, _ in taken]
        n = sum(len(b) for b in batches)
        try:
            self.store.write_columns(batches)
        except Exception as exc:  # noqa: BLE001 - the exporter is told and retries
            if alone:
                self.failed += n
                log.error("storing %d spans failed: %s", n, exc)
                for _, fut in taken:
                    fut.set_exception(exc)
            return False
        self.committed += n
        for _, fut in taken:
            fut.set_result(n)
        listeners = list(self._listeners)
        trace_ids = set().union(*(b.trace_ids() for b in batches)) if listeners else set()
        for listener in listeners:
            try:
                listener(trace_ids)
            except Exception:  # noqa: BLE001 - a slow/broken live viewer never stops ingest
                log.exception("live listener failed")
        return True

    def _retention_wait(self) -> float | None:
        return None if self.retention_ns is None else 60.0

    def _retain(self) -> None:
        if self.retention_ns is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + 60
        try:
            deleted = self.store.delete_before(time.time_ns() - self.retention_ns)
            if deleted:
                log.info("retention: deleted %d spans", deleted)
        except Exception:  # noqa: BLE001 - retention retries next minute
            log.exception("retention failed")

    def close(self, timeout: float = 30) -> None:
        """Store everything already accepted, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)


# ----------------------------------------------------------------------------------- HTTP


def _status_body(proto: bool, code: int, message: str) -> bytes:
    """An OTLP error body: google.rpc.Status in the request's encoding."""
    if proto:
        from google.rpc.status_pb2 import Status

        return Status(code=code, message=message).SerializeToString()
    import json

    return json.dumps({"code": code, "message": message}).encode()


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


_PROTOBUF, _JSON = "application/x-protobuf", "application/json"


def http_handler(ingest: Ingest, max_request_bytes: int = MAX_REQUEST_BYTES) -> Callable:
    """The Starlette endpoint for `POST /v1/traces`."""

    async def export(request: Request) -> Response:
        media = _media(request.headers.get("content-type", ""))
        proto = media == _PROTOBUF
        if media not in (_PROTOBUF, _JSON):
            body = _status_body(
                False,
                3,
                f"unsupported content type {media or '(none)'!r}: use {_PROTOBUF} or {_JSON}",
            )
            return Response(body, 415, media_type=_JSON)

        def error(status: int, grpc_code: int, message: str, **headers: str) -> Response:
            return Response(
                _status_body(proto, grpc_code, message),
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
                columns_from_protobuf if proto else _json_columns, body
            )
        except OTLPError as exc:
            return error(400, 3, str(exc))
        try:
            fut = ingest.submit(decoded.columns)
        except Busy as exc:
            return error(503, 14, str(exc), **{"Retry-After": str(RETRY_AFTER_S)})
        try:
            await asyncio.wrap_future(fut)
        except Exception as exc:  # noqa: BLE001 - not stored: tell the exporter to retry
            return error(503, 14, f"spans not stored: {exc}", **{"Retry-After": str(RETRY_AFTER_S)})
        return Response(_export_response(decoded, proto), 200, media_type=media)

    return export


def _json_columns(body: bytes) -> Decoded:
    decoded = decode_json(body)
    decoded.columns = SpanColumns().add_spans(decoded.spans)
    return decoded


def _gunzip(body: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise OverflowError
    if not d.eof:
        raise EOFError("truncated gzip stream")
    if d.unused_data:  # concatenated gzip members are legal
        out += gzip.decompress(d.unused_data)
        if len(out) > limit:
            raise OverflowError
    return out


def _export_response(decoded: Decoded, proto: bool) -> bytes:
    if proto:
        return _pb_response(decoded).SerializeToString()
    import json

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


def _pb_response(decoded: Decoded) -> Any:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    if decoded.rejected:
        resp.partial_success.rejected_spans = decoded.rejected
        resp.partial_success.error_message = decoded.message
    return resp


# ----------------------------------------------------------------------------------- gRPC


def grpc_servicer(ingest: Ingest, commit_timeout: float = 60) -> Any:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
            try:
                decoded = columns_from_request(request)
            except OTLPError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            try:
                ingest.submit(decoded.columns).result(commit_timeout)
            except Busy as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except Exception as exc:  # noqa: BLE001 - not stored: retryable
                context.abort(grpc.StatusCode.UNAVAILABLE, f"spans not stored: {exc}")
            return _pb_response(decoded)

    return TraceService()
