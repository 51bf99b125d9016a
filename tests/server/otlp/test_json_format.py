import base64
import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_sample import check, every_value_request

from threadline.server.otlp.decoded import OTLPError
from threadline.server.otlp.json_format import decode_json, encode_json
from threadline.server.otlp.reference import decode_protobuf


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


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda s: s.update(traceId="0123456789abcdef0123456789ab cd "),
            r"spans\[0\]\.traceId: '0123456789abcdef0123456789ab cd ' is not hexadecimal",
        ),
        (
            lambda s: s.update(spanId="+123456789abcdef"),
            r"spans\[0\]\.spanId: '\+123456789abcdef' is not hexadecimal",
        ),
        (
            lambda s: s.update(parentSpanId="0123456789abcd\n\n"),
            r"spans\[0\]\.parentSpanId: '0123456789abcd\\n\\n' is not hexadecimal",
        ),
        (
            lambda s: s["links"][0].update(traceId="ab" * 15 + " \t"),
            r"spans\[0\]\.links\[0\]\.traceId: '" + "ab" * 15 + r" \\t' is not hexadecimal",
        ),
        (
            lambda s: s["links"][0].update(spanId="0123456789ab cd "),
            r"spans\[0\]\.links\[0\]\.spanId: '0123456789ab cd ' is not hexadecimal",
        ),
        (
            lambda s: s["links"][0].update(spanId="0123456789abcdeg"),
            r"spans\[0\]\.links\[0\]\.spanId: '0123456789abcdeg' is not hexadecimal",
        ),
    ],
    ids=[
        "trace-space",
        "span-sign",
        "parent-newline",
        "link-trace-tab",
        "link-span-space",
        "link-span-g",
    ],
)
def test_json_ids_are_strictly_hex(mutate, message):
    req = every_value_request()
    mutate(req["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    with pytest.raises(OTLPError, match=message):
        decode_json(json.dumps(req))


def _deep(depth: int, kind: str) -> dict:
    value: dict = {"intValue": "7"}
    for _ in range(depth - 1):
        if kind == "array":
            value = {"arrayValue": {"values": [value]}}
        else:
            value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    req = every_value_request()
    req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = [
        {"key": "deep", "value": value}
    ]
    return req


@pytest.mark.parametrize("kind", ["array", "kvlist"])
def test_json_nesting_is_capped(kind):
    [span] = decode_json(_deep(64, kind)).spans
    value, depth = span.attributes["deep"], 1
    while not isinstance(value, int):
        value, depth = (value[0] if kind == "array" else value["k"]), depth + 1
    assert (value, depth) == (7, 64)
    with pytest.raises(OTLPError, match=r"AnyValue nesting too deep \(more than 64 levels\)$"):
        decode_json(_deep(65, kind))
    with pytest.raises(OTLPError, match=r"^invalid JSON: nesting too deep$"):
        decode_json("[" * 100_000)


def test_resource_and_scope_dropped_attribute_counts_round_trip():
    from google.protobuf.json_format import ParseDict

    req = every_value_request()
    rs = req["resourceSpans"][0]
    rs["resource"]["droppedAttributesCount"] = 5
    rs["scopeSpans"][0]["scope"]["dropped_attributes_count"] = "6"  # protobuf name, int as text
    [span] = decode_json(json.dumps(req)).spans
    assert (span.resource_dropped_attributes_count, span.scope_dropped_attributes_count) == (5, 6)
    encoded = encode_json([span])
    [ers] = encoded["resourceSpans"]
    assert ers["resource"]["droppedAttributesCount"] == 5
    assert ers["scopeSpans"][0]["scope"]["droppedAttributesCount"] == 6
    [again] = decode_json(json.dumps(encoded)).spans
    assert again == span
    # a span of the same resource without dropped attributes is in a resource of its own
    other = decode_json(every_value_request()).spans[0]
    assert len(encode_json([span, other])["resourceSpans"]) == 2
    # the protobuf path reads the same fields
    pb = ParseDict(
        {"resourceSpans": [{"resource": {"droppedAttributesCount": 5}, "scopeSpans": [
            {"scope": {"droppedAttributesCount": 6}, "spans": [
                {"traceId": "AQEBAQEBAQEBAQEBAQEBAQ==", "spanId": "AgICAgICAgI="}]}]}]},
        ExportTraceServiceRequest(),
    )  # fmt: skip
    [from_pb] = decode_protobuf(pb.SerializeToString()).spans
    assert (from_pb.resource_dropped_attributes_count, from_pb.scope_dropped_attributes_count) == (
        5,
        6,
    )
