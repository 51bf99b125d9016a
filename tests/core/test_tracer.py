"""The lean tracer starts exactly the spans the SDK tracer would, only cheaper."""

from __future__ import annotations

import copy
import json

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)

from threadline import _runtime, _settings
from threadline._tracer import LeanSpan, LeanTracer, lean_tracer

LOW64 = (1 << 64) - 1


def _setup(ratio: float = 1.0, limits: SpanLimits | None = None, sampler=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=sampler or ParentBased(TraceIdRatioBased(ratio)),
        span_limits=limits,
        resource=Resource.create({"service.name": "lean"}),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sdk = provider.get_tracer("lean.test", "1.2")
    return lean_tracer(sdk), sdk, exporter


def _in(parent: SpanContext):
    return trace.set_span_in_context(NonRecordingSpan(parent))


def test_only_the_configuration_it_knows_is_made_lean():
    lean, sdk, _ = _setup()
    assert isinstance(lean, LeanTracer) and lean.sdk is sdk
    assert lean.resource is sdk.resource  # anything else reads through to the SDK tracer
    other, sdk_other, _ = _setup(sampler=ALWAYS_ON)
    assert other is sdk_other
    custom, sdk_custom, _ = _setup(
        sampler=ParentBased(TraceIdRatioBased(1.0), ALWAYS_ON, ALWAYS_ON)
    )
    assert custom is sdk_custom


def test_span_has_every_field_the_sdk_span_has():
    lean, sdk, _ = _setup()
    ours = lean.start_span("op", attributes={"a": 1})
    theirs = sdk.start_span("op", attributes={"a": 1})
    assert isinstance(ours, LeanSpan) and isinstance(ours, SdkSpan)
    assert set(vars(ours)) == set(vars(theirs))
    for name in ("_resource", "_instrumentation_scope", "_kind", "_limits", "_parent"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.status.status_code is theirs.status.status_code is StatusCode.UNSET
    assert ours.status.description is theirs.status.description is None
    assert ours.attributes == theirs.attributes == {"a": 1}
    assert ours.is_recording()
    ours.end()
    theirs.end()


def test_root_span_ids_flags_and_export():
    lean, _, exporter = _setup()
    with lean.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"k": "v"}) as root:
        assert trace.get_current_span() is root
        child = lean.start_span("child")
        child.end()
    (c, r) = exporter.get_finished_spans()
    assert r is root and isinstance(r, ReadableSpan)  # an ended span is its own ReadableSpan
    ctx = r.context
    assert ctx.trace_id != 0 and ctx.span_id != 0 and not ctx.is_remote
    assert ctx.trace_flags == TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID
    assert r.parent is None and r.kind is SpanKind.SERVER
    assert r.start_time <= r.end_time
    assert c.parent == ctx and c.context.trace_id == ctx.trace_id
    assert c.context.trace_flags == ctx.trace_flags
    assert c.context.span_id != ctx.span_id
    assert json.loads(r.to_json())["attributes"] == {"k": "v"}


def test_an_ended_span_deep_copies_as_data():
    lean, _, exporter = _setup()
    with lean.start_as_current_span("op", attributes={"k": [1, 2]}) as s:
        s.add_event("e", {"n": 1})
    copied = copy.deepcopy(exporter.get_finished_spans()[0])
    assert type(copied) is ReadableSpan and copied.name == "op"
    assert copied.context == s.context and dict(copied.attributes) == {"k": (1, 2)}
    assert [e.name for e in copied.events] == ["e"] and copied.end_time == s.end_time


def test_ratio_decision_is_the_sdk_one():
    lean, _, exporter = _setup(ratio=0.5)
    bound = TraceIdRatioBased(0.5).bound
    kept = dropped = 0
    for _ in range(400):
        s = lean.start_span("op")
        tid = s.get_span_context().trace_id
        if s.is_recording():
            assert tid & LOW64 < bound
            assert s.get_span_context().trace_flags.sampled
            kept += 1
            s.end()
        else:
            assert isinstance(s, NonRecordingSpan)
            assert tid & LOW64 >= bound
            assert s.get_span_context().trace_flags == TraceFlags.RANDOM_TRACE_ID
            dropped += 1
    assert kept and dropped and len(exporter.get_finished_spans()) == kept
    nothing, _, _ = _setup(ratio=0.0)
    assert not nothing.start_span("op").is_recording()


@pytest.mark.parametrize(
    ("remote", "flags", "recording", "child_flags"),
    [
        (True, 0x01, True, 0x01),
        (True, 0x00, False, 0x00),
        (False, 0x03, True, 0x03),
        (False, 0x02, False, 0x02),
    ],
)
def test_parent_decides(remote, flags, recording, child_flags):
    lean, sdk, _ = _setup(ratio=0.0)  # the root ratio must not matter under a parent
    state = TraceState([("vendor", "x1")])
    parent = SpanContext(0xABC, 0xDEF, is_remote=remote, trace_flags=TraceFlags(flags),
                         trace_state=state)  # fmt: skip
    ours = lean.start_span("op", context=_in(parent))
    theirs = sdk.start_span("op", context=_in(parent))
    assert ours.is_recording() is theirs.is_recording() is recording
    for s in (ours, theirs):
        ctx = s.get_span_context()
        assert ctx.trace_id == 0xABC and ctx.trace_flags == child_flags
        assert ctx.trace_state == state
    if recording:
        assert ours.parent == parent
        ours.end()
        theirs.end()


def test_attribute_limits_and_cleaning_match_the_sdk():
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=3)
    lean, sdk, _ = _setup(limits=limits)
    for attrs in (
        {"a": "long string", "b": 1},
        {"a": 1, "b": 2, "c": 3},
        {"a": [1, 2], "": 5},
        {"t": True, "f": 1.5},
    ):
        ours = lean.start_span("op", attributes=attrs)
        theirs = sdk.start_span("op", attributes=attrs)
        assert dict(ours.attributes) == dict(theirs.attributes), attrs
        assert ours.dropped_attributes == theirs.dropped_attributes, attrs
        ours.set_attribute("z", "abcdef")
        theirs.set_attribute("z", "abcdef")
        assert dict(ours.attributes) == dict(theirs.attributes)
        ours.end()
        theirs.end()
    free, _, _ = _setup()
    s = free.start_span("op", attributes={"a": "long string"})
    assert dict(s.attributes) == {"a": "long string"}
    s.end()


def test_events_links_status_and_exception():
    lean, _, exporter = _setup()
    target = SpanContext(0x1, 0x2, is_remote=True, trace_flags=TraceFlags(1))
    s = lean.start_span("op", links=[Link(target, {"why": "batch"})])
    s.add_event("step", {"n": 3})
    s.record_exception(ValueError("bad"))
    s.set_status(StatusCode.ERROR, "bad")
    s.end()
    s.set_attribute("late", 1)  # refused once ended, as for any SDK span
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["step", "exception"]
    assert span.events[0].attributes == {"n": 3}
    assert span.events[1].attributes["exception.type"] == "ValueError"
    assert span.links[0].context == target and span.links[0].attributes == {"why": "batch"}
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "bad"
    assert "late" not in span.attributes
    request = ExportTraceServiceRequest.FromString(encode_spans([span]).SerializeToString())
    (pb,) = request.resource_spans[0].scope_spans[0].spans
    assert pb.trace_id == span.context.trace_id.to_bytes(16, "big")
    assert pb.name == "op" and pb.status.code == 2
    assert [e.name for e in pb.events] == ["step", "exception"]
    assert pb.links[0].span_id == (2).to_bytes(8, "big")
    assert request.resource_spans[0].scope_spans[0].scope.name == "lean.test"


def test_events_and_links_added_later_belong_to_their_span_alone(caplog):
    lean, _, exporter = _setup(limits=SpanLimits(max_events=1, max_links=1))
    target = SpanContext(0x1, 0x2, is_remote=True, trace_flags=TraceFlags(1))
    plain, busy = lean.start_span("plain"), lean.start_span("busy")
    for i in range(2):  # the second of each is over the limit
        busy.add_event(f"e{i}")
        busy.add_link(target, {"i": i})
    busy.end()
    plain.end()
    busy.end()  # a second end is refused with the SDK's warning
    assert caplog.messages == ["Calling end() on an ended span."]
    busy.add_event("late")  # and so is an event after the end
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert [e.name for e in by_name["busy"].events] == ["e1"]
    assert by_name["busy"].dropped_events == 1
    assert [dict(link.attributes) for link in by_name["busy"].links] == [{"i": 1}]
    assert by_name["busy"].dropped_links == 1
    plain = by_name["plain"]
    assert (plain.events, plain.links, plain.dropped_events, plain.dropped_links) == ((), (), 0, 0)
    assert caplog.messages[1:] == ["Tried calling _add_event on an ended span."]


def test_use_span_from_the_lean_tracer_records_errors():
    lean, _, exporter = _setup()
    token = otel_context.attach(otel_context.Context())
    try:
        with pytest.raises(KeyError), lean.start_as_current_span("op"):
            raise KeyError("k")
    finally:
        otel_context.detach(token)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "KeyError"


def test_start_as_current_span_is_lazy_and_decorates():
    lean, _, exporter = _setup()
    manager = lean.start_as_current_span("later")
    assert exporter.get_finished_spans() == ()

    @lean.start_as_current_span("each")
    def work():
        return trace.get_current_span().get_span_context().span_id

    first, second = work(), work()
    with manager as span:
        assert span.name == "later"
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["each", "each", "later"] and first != second


def test_configured_resource_hashes_once_and_equals_the_sdk_one():
    settings = _settings.resolve(
        "svc", exporter="none", boundaries=False, resource_attributes={"x": 1}
    )
    resource = _runtime._resource(settings)
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and hash(resource) == hash(plain)
    assert hash(resource) == hash(resource)
    assert resource.attributes["service.name"] == "svc" and resource.attributes["x"] == 1
