"""threadline's OTLP encoder writes the very bytes the SDK's encoder serialises."""

from __future__ import annotations

import copy

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from threadline._otlp_encoder import encode_spans
from threadline._tracer import lean_tracer

EVERY_VALUE = {
    "s": "text",
    "empty": "",
    "unicode": "zürich ✓",
    "t": True,
    "f": False,
    "zero": 0,
    "neg": -3,
    "big": 2**63 - 1,
    "small": -(2**63),
    "float": 1.5,
    "negzero": -0.0,
    "strs": ["a", ""],
    "bools": [True, False],
    "ints": [1, -1, 0],
    "floats": [0.25],
    "none": [],
    "long": "x" * 200,
    "int.negative.large": -(2**40),
    "int.two.bytes": 300,
    "k" * 70: "a key too long for the short form",
}


def _same(spans) -> ExportTraceServiceRequest:
    ours = encode_spans(spans)
    theirs = sdk_encode(spans).SerializeToString()
    assert ours == theirs
    return ExportTraceServiceRequest.FromString(ours)


@pytest.fixture
def recorded():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "enc", "r.int": 7, "r.list": [1, 2]}),
        sampler=ParentBased(TraceIdRatioBased(1.0)),
        span_limits=SpanLimits(max_span_attributes=20, max_events=2, max_links=1),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_lean_spans_of_every_shape(recorded):
    provider, exporter = recorded
    a = lean_tracer(provider.get_tracer("a", "1.0", attributes={"scope.attr": "x"}))
    b = lean_tracer(provider.get_tracer("b", schema_url="https://opentelemetry.io/schemas/1.21.0"))
    remote = SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
        trace_state=TraceState([("k", "v"), ("a", "b")]),
    )  # fmt: skip
    with a.start_as_current_span("root", kind=SpanKind.SERVER, attributes=EVERY_VALUE) as s:
        s.add_event("first", {"n": 1})
        s.add_event("second", timestamp=5)
        s.add_event("third")  # over the limit of 2: counted as dropped
        s.set_status(StatusCode.ERROR, "boom")
        links = [Link(remote, {"why": "batch"}), Link(SpanContext(1, 2, False))]  # one dropped
        with b.start_as_current_span("child", kind=SpanKind.CLIENT, links=links):
            pass
    with a.start_as_current_span("remote child", context=trace.set_span_in_context(
        trace.NonRecordingSpan(remote))) as s:  # fmt: skip
        s.set_status(StatusCode.OK)
    spans = exporter.get_finished_spans()
    request = _same(spans)

    (resource_spans,) = request.resource_spans
    assert {kv.key for kv in resource_spans.resource.attributes} >= {"service.name", "r.int"}
    scope_b, scope_a = resource_spans.scope_spans  # in the order their first span ended
    assert (scope_a.scope.name, scope_a.scope.version) == ("a", "1.0")
    assert scope_a.scope.attributes[0].key == "scope.attr"
    assert scope_b.schema_url == "https://opentelemetry.io/schemas/1.21.0"
    root, remote_child = scope_a.spans
    assert root.name == "root" and remote_child.name == "remote child"
    (child,) = scope_b.spans
    values = {kv.key: kv.value for kv in root.attributes}
    assert values["s"].string_value == "text" and values["empty"].HasField("string_value")
    assert values["f"].HasField("bool_value") and values["zero"].HasField("int_value")
    assert values["small"].int_value == -(2**63) and values["negzero"].double_value == 0.0
    assert [v.int_value for v in values["ints"].array_value.values] == [1, -1, 0]
    assert root.kind == 2 and root.status.code == 2 and root.status.message == "boom"
    assert [e.name for e in root.events] == ["second", "third"] and root.dropped_events_count == 1
    assert child.parent_span_id == root.span_id and child.kind == 3
    assert child.links[0].trace_state == "" and child.dropped_links_count == 1
    assert child.flags == 0x100
    assert remote_child.trace_id == (0xABC).to_bytes(16, "big")
    assert remote_child.trace_state == "k=v,a=b" and remote_child.flags == 0x300
    assert remote_child.status.code == 1


def test_sdk_spans_and_copies_encode_the_same(recorded):
    provider, exporter = recorded
    sdk = provider.get_tracer("sdk", "2.0")  # the SDK's own tracer and Span class
    with sdk.start_as_current_span("plain", attributes={"n": 300, "s": "x" * 200}):
        pass
    with sdk.start_as_current_span("busy", kind=SpanKind.PRODUCER) as s:
        s.add_event("e", {"k": "v"})
        s.set_status(StatusCode.OK)
    spans = list(exporter.get_finished_spans())
    copies = [copy.deepcopy(span) for span in spans]  # plain ReadableSpans
    request = _same(spans + copies)
    names = [s.name for s in request.resource_spans[0].scope_spans[0].spans]
    assert names == ["plain", "busy", "plain", "busy"]


def test_values_only_a_readable_span_can_carry():
    scope = InstrumentationScope("raw")
    span = ReadableSpan(
        name="raw",
        context=SpanContext(5, 6, False, TraceFlags(1)),
        resource=Resource({"service.name": "raw"}, "https://schema"),
        attributes={
            "b": b"\x00\x01",
            "m": {"k": 1, "nested": {"x": "y"}},
            "n": None,
            "bad": object(),
            "after": "kept",
        },  # fmt: skip
        events=(Event("e", {"x": 1}, timestamp=9),),
        start_time=10,
        end_time=20,
        instrumentation_scope=scope,
    )
    bare = ReadableSpan(name="", context=SpanContext(7, 8, False), resource=span.resource)
    request = _same([span, bare])
    (resource_spans,) = request.resource_spans
    assert resource_spans.schema_url == "https://schema"
    first, second = resource_spans.scope_spans
    assert first.scope.name == "raw" and second.scope.name == ""
    values = {kv.key: kv.value for kv in first.spans[0].attributes}
    assert "bad" not in values and values["after"].string_value == "kept"
    assert values["b"].bytes_value == b"\x00\x01"
    assert values["m"].kvlist_value.values[1].value.kvlist_value.values[0].key == "x"
    assert not values["n"].ListFields()


def test_many_resources_group_in_first_seen_order():
    one, two = Resource({"service.name": "one"}), Resource({"service.name": "two"})
    spans = [
        ReadableSpan(name=f"s{i}", context=SpanContext(1, i + 1, False), resource=res)
        for i, res in enumerate([one, two, one])
    ]
    request = _same(spans)
    assert [len(rs.scope_spans[0].spans) for rs in request.resource_spans] == [2, 1]
    assert encode_spans([]) == b""


def _raw(name="raw", attributes=None, span_id=1):
    return ReadableSpan(
        name=name,
        context=SpanContext(5, span_id, False, TraceFlags(1)),
        resource=Resource({"service.name": "raw"}),
        attributes=attributes,
        start_time=10,
        end_time=20,
        instrumentation_scope=InstrumentationScope("raw"),
    )


def _decoded(spans) -> list[dict]:
    request = ExportTraceServiceRequest.FromString(encode_spans(spans))
    return [
        {"name": s.name, **{kv.key: _plain(kv.value) for kv in s.attributes}}
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def _plain(value):
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def test_integers_outside_int64_are_sent_as_text_with_a_warning_naming_the_key(caplog):
    from threadline import _otlp_encoder

    _otlp_encoder._warned_keys.clear()
    caplog.set_level("WARNING", logger="threadline")
    attributes = {
        "user.id": 2**70,
        "wraps": 2**63,  # was written as a negative number
        "max.u64": 2**64 - 1,
        "to.zero": -(2**64),  # was written as 0
        "below": -(2**63) - 1,
        "edge.high": 2**63 - 1,
        "edge.low": -(2**63),
        "ids": [1, 2**64],
        "nested": {"n": 2**65},
    }
    (span,) = _decoded([_raw(attributes=attributes)])
    assert span == {
        "name": "raw",
        "user.id": "1180591620717411303424",
        "wraps": "9223372036854775808",
        "max.u64": "18446744073709551615",
        "to.zero": "-18446744073709551616",
        "below": "-9223372036854775809",
        "edge.high": 2**63 - 1,
        "edge.low": -(2**63),
        "ids": [1, "18446744073709551616"],
        "nested": {"n": "36893488147419103232"},
    }
    warned = [r.getMessage() for r in caplog.records if "64-bit range" in r.getMessage()]
    assert len(warned) == 7 and "'user.id'" in warned[0]
    _decoded([_raw(attributes={"user.id": 2**70})])  # the same key again: not logged again
    assert len([r for r in caplog.records if "64-bit range" in r.getMessage()]) == 7


def test_text_that_is_not_valid_unicode_is_sent_with_replacements():
    bad = "file \udcff.txt"
    spans = [_raw(name=bad, attributes={"path": bad, bad: "key", "list": [bad]})]
    (span,) = _decoded(spans)
    assert span == {
        "name": "file ?.txt",
        "path": "file ?.txt",
        "file ?.txt": "key",
        "list": ["file ?.txt"],
    }


def test_one_bad_value_never_costs_the_batch_at_a_real_receiver():
    from threadline._otlp_exporter import OTLPExporter
    from threadline.testing.collector import Collector

    received = []
    collector = Collector(received.extend)
    collector.start()
    try:
        exporter = OTLPExporter(endpoint=collector.endpoint + "/v1/traces", timeout=5)
        good = [_raw(f"good {i}", {"i": i}, span_id=i + 1) for i in range(10)]
        bad = [_raw("big id", {"user.id": 2**70}, span_id=99), _raw("file \udcff.txt", span_id=98)]
        assert exporter.export(good + bad).name == "SUCCESS"
        exporter.shutdown()
    finally:
        collector.stop()
    assert collector.rejected == 0
    by_name = {s.name: s for s in received}
    assert len(received) == 12
    assert by_name["big id"].attributes == {"user.id": "1180591620717411303424"}
    assert "file ?.txt" in by_name and by_name["good 9"].attributes == {"i": 9}
