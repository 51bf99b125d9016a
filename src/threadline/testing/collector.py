"""A tiny loopback OTLP/HTTP (protobuf) receiver, for tests and tools that want spans back from
other processes without running `threadline serve`. Standard library server, one thread."""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from threadline.seam import any_value
from threadline.testing.captured import OTLP_KINDS, OTLP_STATUS, CapturedSpan

log = logging.getLogger("threadline")


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def decode(body: bytes) -> list[CapturedSpan]:
    """CapturedSpans from an OTLP ExportTraceServiceRequest in protobuf."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    CapturedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex() or None,
                        kind=OTLP_KINDS.get(s.kind, "INTERNAL"),
                        status=OTLP_STATUS.get(s.status.code, "UNSET"),
                        status_message=s.status.message,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes=attrs(s.attributes),
                        resource=resource,
                        events=[(e.name, attrs(e.attributes)) for e in s.events],
                        links=[
                            (lk.trace_id.hex(), lk.span_id.hex(), attrs(lk.attributes))
                            for lk in s.links
                        ],
                        scope=ss.scope.name,
                    )
                )
    return out


class Collector:
    def __init__(
        self, sink: Callable[[list], None], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.sink = sink
        self.received = 0
        self.rejected = 0
        self.busy = 0  # requests being read or handled right now
        self._busy_lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse one connection

            def do_POST(self) -> None:
                with collector._busy_lock:
                    collector.busy += 1
                try:
                    self._handle()
                finally:
                    with collector._busy_lock:
                        collector.busy -= 1

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    spans = decode(body)
                except Exception as exc:  # noqa: BLE001 - answer the sender, keep serving
                    collector.rejected += 1
                    self._reply(400, f"could not decode OTLP protobuf: {exc}".encode())
                    return
                collector.received += len(spans)
                collector.sink(spans)
                self._reply(200, b"")

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="threadline-collector", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
