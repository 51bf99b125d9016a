"""The configured OTLP/HTTP exporter sends threadline's encoding over the SDK's HTTP client."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_trace_exporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline._otlp_exporter import OTLPExporter


@pytest.fixture
def collector():
    received: list[tuple[str, str, bytes]] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received, status
    server.shutdown()
    server.server_close()
    thread.join(5)


def _spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("exp")
    with tracer.start_as_current_span("outer", attributes={"order.id": 1234}):
        with tracer.start_as_current_span("inner"):
            pass
    return memory.get_finished_spans()


def test_sends_the_batch_decodable_by_the_standard_proto(collector, monkeypatch):
    url, received, _ = collector

    def sdk_encoder(spans):
        raise AssertionError("the SDK's encoder is not the one used")

    monkeypatch.setattr(sdk_trace_exporter, "encode_spans", sdk_encoder)
    exporter = OTLPExporter(endpoint=url, timeout=5)
    inner, outer = _spans()
    assert exporter.export([inner, outer]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    ((path, content_type, body),) = received
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    spans = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["inner", "outer"]
    assert spans[0].parent_span_id == outer.context.span_id.to_bytes(8, "big")
    assert (
        spans[1].attributes[0].key == "order.id" and spans[1].attributes[0].value.int_value == 1234
    )


def test_a_refused_request_is_a_failure(collector):
    url, received, status = collector
    status[0] = 400  # not retryable: one request, then failure
    exporter = OTLPExporter(endpoint=url, timeout=5)
    assert exporter.export(list(_spans())) is SpanExportResult.FAILURE
    assert len(received) == 1
    exporter.shutdown()
    assert exporter.export(list(_spans())) is SpanExportResult.FAILURE  # after shutdown
    assert len(received) == 1
