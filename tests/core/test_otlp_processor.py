"""The OTLP export path's batch processor: spans encoded as they end, sent in batches, each
request the very bytes the SDK's encoder makes of the same spans, and every span counted."""

from __future__ import annotations

import os
import time

import pytest
from http_receiver import Receiver
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags

import threadline as tl
from threadline import _export, _runtime
from threadline._export import GuardedExporter
from threadline._otlp_processor import OTLPBatchProcessor


@pytest.fixture
def collector():
    """An OTLP/HTTP receiver (HTTP/1.1)."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def exporting(collector, monkeypatch):
    """threadline exporting over OTLP/HTTP to the collector, a tap keeping the same spans as the
    SDK hands them over: (the spans in the order they ended, the bodies received, the
    receiver)."""
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    memory = InMemorySpanExporter()
    tap = SimpleSpanProcessor(memory)
    tl.configure("processor-tests", endpoint=collector.base, boundaries=False, announce=False)
    _runtime.add_tap(tap)
    _export.stats.reset()
    yield memory, collector.bodies, collector
    _runtime.remove_tap(tap)
    tl.configure("tests", exporter="none")
    _export.stats.reset()


def _processor() -> OTLPBatchProcessor:
    rt = _runtime.current()
    assert rt is not None
    (proc,) = [
        p
        for p in rt.provider._active_span_processor._span_processors
        if isinstance(p, OTLPBatchProcessor)
    ]
    return proc


def test_the_otlp_path_takes_it(exporting):
    assert _processor()._batch == 4


def test_each_batch_is_the_sdk_encoding_of_its_spans_across_scopes(exporting):
    memory, bodies, _ = exporting
    other = trace.get_tracer("other.library", "2.0")
    with tl.span("root", attributes={"order.id": 1234, "customer.tier": "gold"}):
        for i in range(3):
            with other.start_as_current_span(f"child {i}") as s:
                s.add_event("seen", {"n": i})
                s.set_status(StatusCode.ERROR, "no stock")
            with tl.span(f"mine {i}", links=[s], kind="client"):
                pass
    assert tl.flush()
    spans = memory.get_finished_spans()
    assert len(spans) == 7
    # 7 spans in batches of 4, of two scopes (a queue each): every span once, each request the
    # SDK's bytes for the spans it holds, in the order it holds them
    by_id = {s.context.span_id: s for s in spans}
    held = [
        [
            by_id[int.from_bytes(s.span_id, "big")]
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        for body in bodies
    ]
    assert [len(h) for h in held] == [4, 3]
    assert sorted(s.context.span_id for h in held for s in h) == sorted(by_id)
    assert bodies == [sdk_encode(h).SerializeToString() for h in held]
    first = ExportTraceServiceRequest.FromString(bodies[0]).resource_spans[0].scope_spans
    assert [(ss.scope.name, len(ss.spans)) for ss in first] == [
        ("other.library", 3),
        ("threadline", 1),
    ]
    assert tl.export_stats()["exported"] == 7


def test_a_refused_batch_is_counted_failed(exporting):
    _, bodies, receiver = exporting
    receiver.status = 400
    for i in range(8):
        with tl.span(f"s{i}"):
            pass
    tl.flush()
    assert len(bodies) == 2
    stats = tl.export_stats()
    assert (stats["ended"], stats["exported"], stats["failed"]) == (8, 0, 8)
    assert stats["errors"] == {"export_failed": 2}


class Sent(GuardedExporter):
    """Keeps what send() gets: (body, span count)."""

    def __init__(self) -> None:
        super().__init__(InMemorySpanExporter())
        self.sent: list[tuple[bytes, int]] = []

    def send(self, data: bytes, count: int) -> SpanExportResult:
        self.sent.append((data, count))
        _export.stats.delivered(count, _export.stats.epoch)
        return SpanExportResult.SUCCESS


RAW = Resource({"service.name": "raw"})


def _span(i: int, start_time: object = 10) -> ReadableSpan:
    return ReadableSpan(
        name=f"s{i}",
        context=SpanContext(5, i + 1, False, TraceFlags(1)),
        resource=RAW,
        start_time=start_time,  # type: ignore[arg-type] - a bad one on purpose, below
        end_time=20,
    )


@pytest.fixture
def stats():
    _export.stats.reset()
    yield _export.stats
    _export.stats.reset()


def test_a_full_queue_drops_the_new_span_and_counts_it(stats, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    sent = Sent()
    proc = OTLPBatchProcessor(sent, max_queue_size=2)
    spans = [_span(i) for i in range(5)]
    with proc._export_lock:  # the export thread, woken by a full batch, waits
        for span in spans:
            proc.on_end(span)
    proc.force_flush()
    assert sent.sent == [(sdk_encode(spans[:2]).SerializeToString(), 2)]
    snap = stats.snapshot()
    assert (snap["ended"], snap["exported"], snap["dropped"]) == (5, 2, 3)
    assert snap["errors"] == {"queue_full": 3}
    proc.shutdown()


def test_a_span_that_cannot_be_encoded_fails_alone(stats, caplog):
    sent = Sent()
    proc = OTLPBatchProcessor(sent)
    good, bad = _span(1), _span(2, start_time="yesterday")
    proc.on_end(bad)
    proc.on_end(good)
    proc.shutdown()  # sends what is queued
    assert sent.sent == [(sdk_encode([good]).SerializeToString(), 1)]
    snap = stats.snapshot()
    assert (snap["ended"], snap["exported"], snap["failed"]) == (2, 1, 1)
    assert snap["errors"] == {"encode_error": 1}
    assert "could not encode span 's2'" in caplog.text


def test_after_shutdown_a_span_is_counted_dropped_and_unsampled_ones_are_not_seen(stats):
    sent = Sent()
    proc = OTLPBatchProcessor(sent)
    proc.shutdown()
    proc.on_end(_span(1))
    unsampled = ReadableSpan(name="u", context=SpanContext(5, 9, False, TraceFlags(0)))
    proc.on_end(unsampled)
    assert sent.sent == []
    snap = stats.snapshot()
    assert (snap["ended"], snap["dropped"]) == (1, 1)
    assert snap["errors"] == {"ended_after_shutdown": 1}


def test_a_partial_batch_leaves_after_the_schedule_delay(stats, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    sent = Sent()
    proc = OTLPBatchProcessor(sent)
    proc.on_end(_span(1))
    deadline = time.monotonic() + 5
    while not sent.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent.sent == [(sdk_encode([_span(1)]).SerializeToString(), 1)]  # no flush asked
    proc.shutdown()


def test_queued_spans_count_as_ended_until_sent(stats):
    sent = Sent()
    proc = OTLPBatchProcessor(sent)
    for i in range(3):
        proc.on_end(_span(i))
    snap = stats.snapshot()
    assert (snap["ended"], snap["exported"], proc.queued()) == (3, 0, 3)
    proc.force_flush()
    snap = stats.snapshot()
    assert (snap["ended"], snap["exported"], proc.queued()) == (3, 3, 0)
    proc.shutdown()


def test_a_forked_child_sends_its_own_spans_only(stats):
    sent = Sent()
    proc = OTLPBatchProcessor(sent)
    proc.on_end(_span(1))  # queued in the parent when it forks
    pid = os.fork()
    if pid == 0:  # the child: an empty queue, a thread of its own
        code = 1
        try:
            proc.on_end(_span(2))
            proc.force_flush()
            ok = proc.queued() == 0 and sent.sent == [
                (sdk_encode([_span(2)]).SerializeToString(), 1)
            ]
            code = 0 if ok and proc._thread.is_alive() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    proc.force_flush()
    assert sent.sent == [(sdk_encode([_span(1)]).SerializeToString(), 1)]
    proc.shutdown()
