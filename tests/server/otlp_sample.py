"""A hand-written OTLP/JSON export using every value type, and the check of its decoded span."""

import base64
import math

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
