"""The configured OTLP/HTTP exporter sends threadline's encoding through the SDK's HTTP client,
over a kept-alive http.client connection for a plain http:// endpoint."""

from __future__ import annotations

import pytest
from http_receiver import Receiver
from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_trace_exporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline import _export, _otlp_http
from threadline._otlp_exporter import OTLPExporter


@pytest.fixture
def collector():
    """An HTTP/1.0 collector: the connection closes after each answer."""
    with Receiver("HTTP/1.0") as receiver:
        yield receiver


@pytest.fixture
def keep_alive():
    """An HTTP/1.1 collector, keeping connections open unless told to drop them."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def stats_reset():
    _export.stats.reset()
    yield
    _export.stats.reset()


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
    url = collector.base + "/v1/traces"

    def sdk_encoder(spans):
        raise AssertionError("the SDK's encoder is not the one used")

    monkeypatch.setattr(sdk_trace_exporter, "encode_spans", sdk_encoder)
    exporter = OTLPExporter(endpoint=url, timeout=5)
    inner, outer = _spans()
    assert exporter.export([inner, outer]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert collector.paths == ["/v1/traces"]
    assert collector.content_types == ["application/x-protobuf"]
    request = ExportTraceServiceRequest.FromString(collector.bodies[0])
    spans = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["inner", "outer"]
    assert spans[0].parent_span_id == outer.context.span_id.to_bytes(8, "big")
    assert (
        spans[1].attributes[0].key == "order.id" and spans[1].attributes[0].value.int_value == 1234
    )


def test_a_refused_request_is_a_failure(collector):
    collector.status = 400  # not retryable: one request, then failure
    exporter = OTLPExporter(endpoint=collector.base + "/v1/traces", timeout=5)
    assert exporter.export(list(_spans())) is SpanExportResult.FAILURE
    assert len(collector.bodies) == 1
    exporter.shutdown()
    assert exporter.export(list(_spans())) is SpanExportResult.FAILURE  # after shutdown
    assert len(collector.bodies) == 1


def test_plain_http_goes_over_one_kept_alive_connection(keep_alive):
    ports = keep_alive.ports
    exporter = OTLPExporter(endpoint=keep_alive.base + "/v1/traces", timeout=5)
    assert isinstance(exporter._client._transport, _otlp_http.Transport)
    for _ in range(3):
        assert exporter.export(list(_spans())) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(ports) == 3 and len(set(ports)) == 1


def test_a_connection_the_server_closed_is_reopened_once(keep_alive):
    keep_alive.drop = True
    exporter = OTLPExporter(endpoint=keep_alive.base + "/v1/traces", timeout=5)
    for _ in range(3):
        assert exporter.export(list(_spans())) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(set(keep_alive.ports)) == 3


def test_a_server_that_closes_after_each_answer_is_followed(collector):
    # HTTP/1.0: the connection closes after each response
    exporter = OTLPExporter(endpoint=collector.base + "/v1/traces", timeout=5)
    for _ in range(2):
        assert exporter.export(list(_spans())) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(collector.bodies) == 2


def test_a_retryable_answer_is_retried_by_the_sdk_client_over_this_transport(keep_alive):
    keep_alive.statuses.append(503)
    exporter = OTLPExporter(endpoint=keep_alive.base + "/v1/traces", timeout=5)
    assert exporter.export(list(_spans())) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(keep_alive.ports) == 2


def test_nobody_listening_is_a_counted_failure(stats_reset):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1/traces"
    exporter = OTLPExporter(endpoint=url, timeout=0.5)
    guarded = _export.GuardedExporter(exporter, url)
    assert guarded.export(list(_spans())) is SpanExportResult.FAILURE
    snap = _export.stats.snapshot()
    assert (snap["failed"], snap["errors"]) == (2, {"export_failed": 1})
    exporter.shutdown()


@pytest.mark.parametrize(
    ("url", "env", "lean"),
    [
        ("http://127.0.0.1:4318/v1/traces", {}, True),
        ("https://127.0.0.1:4318/v1/traces", {}, False),
        ("http://collector:4318/v1/traces", {"HTTP_PROXY": "http://proxy:3128"}, False),
        (
            "http://collector:4318/v1/traces",
            {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "collector"},
            True,
        ),
        (
            "http://127.0.0.1:4318/v1/traces",
            {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "mine"},
            False,
        ),
    ],
)
def test_https_a_proxy_or_a_credential_provider_keep_the_sdk_transport(url, env, lean, monkeypatch):
    for key in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _otlp_http.suits(url) is lean
