import base64
import json
import math

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from threadline.server.otlp import OTLPError, decode_json, decode_protobuf, encode_json

TRACE = "5B8EFFF798038103D269B633813FC60C"
SPAN = "EEE19B7EC3C1B174"
PARENT = "EEE19B7EC3C1B173"


def every_value_request() -> dict:
    """Hand-written OTLP/JSON: uppercase hex ids, int64 as strings and numbers, enums as ints,
    unknown fields, every AnyValue type."""
    value = {
        "s": {"stringValue": "text"},
        "t": {"boolValue": True},
        "i": {"intValue": "-9223372036854775808"},
        "j": {"intValue": 42},
        "d": {"doubleValue": 1.5},
        "n": {"doubleValue": "NaN"},
        "b": {"bytesValue": base64.b64encode(b"\x00\xfe").decode()},
        "a": {
            "arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}, {"arrayValue": {}}]}
        },
        "k": {"kvlistValue": {"values": [{"key": "inner", "value": {"boolValue": False}}]}},
        "e": {},
    }
    kvs = [{"key": k, "value": v} for k, v in value.items()]
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}] + kvs
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.24.0",
                "unknownField": {"ignored": True},
                "scopeSpans": [
                    {
                        "scope": {"name": "lib", "version": "2", "attributes": kvs},
                        "spans": [
                            {
                                "traceId": TRACE,
                                "spanId": SPAN,
                                "parentSpanId": PARENT,
                                "traceState": "a=1",
                                "flags": 769,
                                "name": "charge",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000001",
                                "endTimeUnixNano": 1700000000500000000,
                                "attributes": kvs,
                                "droppedAttributesCount": 1,
                                "events": [
                                    {
                                        "timeUnixNano": "1700000000100000000",
                                        "name": "retry",
                                        "attributes": kvs,
                                        "droppedAttributesCount": 2,
                                    }
                                ],
                                "droppedEventsCount": 3,
                                "links": [
                                    {
                                        "traceId": TRACE.lower(),
                                        "spanId": PARENT,
                                        "traceState": "b=2",
                                        "attributes": kvs,
                                        "flags": 1,
                                    }
                                ],
                                "droppedLinksCount": 4,
                                "status": {"code": 2, "message": "card declined"},
                                "futureField": [1, 2],
                            }
                        ],
                    }
                ],
            }
        ]
    }


EXPECTED = {
    "s": "text",
    "t": True,
    "i": -(2**63),
    "j": 42,
    "d": 1.5,
    "b": b"\x00\xfe",
    "a": [1, "x", []],
    "k": {"inner": False},
    "e": None,
}


def check(span):
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        TRACE.lower(),
        SPAN.lower(),
        PARENT.lower(),
    )
    assert (span.name, span.kind, span.service, span.flags, span.trace_state) == (
        "charge",
        3,
        "shop",
        769,
        "a=1",
    )
    assert (span.start_ns, span.end_ns) == (1700000000000000001, 1700000000500000000)
    assert (span.status_code, span.status_message) == (2, "card declined")
    for attrs in (
        span.attributes,
        span.scope_attributes,
        span.events[0].attributes,
        span.links[0].attributes,
    ):
        assert math.isnan(attrs.pop("n"))
        assert attrs == EXPECTED
    assert span.resource.pop("service.name") == "shop" and math.isnan(span.resource.pop("n"))
    assert span.resource == EXPECTED
    assert (
        span.events[0].name,
        span.events[0].time_ns,
        span.events[0].dropped_attributes_count,
    ) == ("retry", 1700000000100000000, 2)
    assert (
        span.links[0].trace_id,
        span.links[0].span_id,
        span.links[0].trace_state,
        span.links[0].flags,
    ) == (TRACE.lower(), PARENT.lower(), "b=2", 1)
    assert (span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count) == (
        1,
        3,
        4,
    )
    assert (span.scope_name, span.scope_version, span.resource_schema_url) == (
        "lib",
        "2",
        "https://opentelemetry.io/schemas/1.24.0",
    )


def test_json_every_value_type():
    [span] = decode_json(json.dumps(every_value_request())).spans
    check(span)


def test_json_encoding_round_trips_through_json_and_protobuf():
    from google.protobuf.json_format import ParseDict

    [span] = decode_json(every_value_request()).spans
    encoded = encode_json([span])
    [again] = decode_json(json.dumps(encoded)).spans
    check(again)
    # the encoding is valid protobuf JSON too: the protobuf path decodes it the same way
    # (protobuf JSON ids are base64, so convert them for the reference parser)
    for rs in encoded["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for obj in [s, *s["links"]]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode()
    req = ParseDict(encoded, ExportTraceServiceRequest())
    [from_pb] = decode_protobuf(req.SerializeToString()).spans
    check(from_pb)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.update(traceId="AB" * 15), r"spans\[0\]\.traceId: 30 hex digits, expected 32"),
        (
            lambda s: s.update(spanId="zz" * 8),
            r"spans\[0\]\.spanId: 'zzzzzzzzzzzzzzzz' is not hexadecimal",
        ),
        (
            lambda s: s.update(startTimeUnixNano=[1]),
            r"startTimeUnixNano: expected an integer, got array",
        ),
        (
            lambda s: s.update(startTimeUnixNano="soon"),
            r"startTimeUnixNano: expected an integer, got string 'soon'",
        ),
        (lambda s: s.update(name=5), r"spans\[0\]\.name: expected a string, got number"),
        (lambda s: s.update(kind=True), r"kind: expected an integer, got boolean"),
        (lambda s: s.update(attributes={"k": "v"}), r"attributes: expected an array, got object"),
        (
            lambda s: s.update(attributes=[{"key": "k", "value": {"boolValue": "yes"}}]),
            r"attributes\[0\]\.value\.boolValue: expected a boolean",
        ),
        (
            lambda s: s.update(
                attributes=[{"key": "k", "value": {"intValue": "9223372036854775808"}}]
            ),
            r"out of range",
        ),
    ],
)
def test_json_wrong_types_name_the_field(mutate, message):
    req = every_value_request()
    mutate(req["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    with pytest.raises(OTLPError, match=message):
        decode_json(json.dumps(req))


def test_protobuf_errors_and_partial_rejects():
    req = ExportTraceServiceRequest()
    s = req.resource_spans.add().scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = b"\x01" * 15, b"\x02" * 8, "x"
    with pytest.raises(
        OTLPError,
        match=r"resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId: 15 bytes, expected 16",
    ):
        decode_protobuf(req.SerializeToString())
    with pytest.raises(OTLPError, match="invalid OTLP protobuf"):
        decode_protobuf(req.SerializeToString()[:-3])
    s.trace_id = b"\x00" * 16
    ok = req.resource_spans[0].scope_spans[0].spans.add()
    ok.trace_id, ok.span_id = b"\x01" * 16, b"\x02" * 8
    decoded = decode_protobuf(req.SerializeToString())
    assert [x.trace_id for x in decoded.spans] == ["01" * 16]
    assert decoded.rejected == 1
    assert (
        decoded.message
        == "rejected 1 span(s): resourceSpans[0].scopeSpans[0].spans[0]: all-zero trace id is invalid"
    )
