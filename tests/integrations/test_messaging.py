"""The shared header-carrier conventions the broker integrations are built on."""

from __future__ import annotations

import pytest

import threadline as tl
from threadline.integrations import messaging
from threadline.semconv import MAX_LINKS
from threadline.testing import hex_ids


def test_a_batch_links_each_sender_once_up_to_the_cap(traces):
    headers = []
    for i in range(MAX_LINKS + 2):
        with messaging.publish("test", "jobs", {"n": str(i)}) as out:
            headers.append(out.headers)
    headers += headers[:3]  # redelivered: the same senders again
    headers += [None, {}, {"traceparent": "garbage"}]  # untraced and unreadable messages
    with messaging.process_batch(headers, "test", "jobs") as span:
        pass
    batch = traces.trace(hex_ids(span)[0]).root
    sends = [h["traceparent"].split("-")[2] for h in headers[: MAX_LINKS + 2]]
    assert [s for _, s, _ in batch.links] == sends[:MAX_LINKS]
    assert batch.attributes["threadline.links.dropped"] == 2
    assert batch.attributes["messaging.batch.message_count"] == MAX_LINKS + 8
    assert (batch.name, batch.kind, batch.parent_id) == ("process jobs", "CONSUMER", None)


def test_carriers_are_read_from_any_header_shape(traces):
    with tl.span("origin") as origin:
        with messaging.publish("test", "jobs") as out:
            pass
    trace_id, _ = hex_ids(origin)
    value = out.headers["traceparent"]
    shapes = [
        {b"traceparent": value.encode()},  # Redis without decode_responses
        [("traceparent", value), ("k", "v")],  # MQTT user properties
        {"TraceParent": value},
    ]
    for shape in shapes:
        h = messaging.carrier_of(shape)
        assert (h.trace_id, h.span_id) == (trace_id, value.split("-")[2])


def test_publish_leaves_the_callers_headers_and_replaces_an_old_carrier(traces):
    mine = {"k": "v", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    with messaging.publish("test", "jobs", mine) as out:
        sc = out.span.get_span_context()
    assert mine["traceparent"].startswith("00-111")
    assert out.headers == {"k": "v", "traceparent": f"00-{sc.trace_id:032x}-{sc.span_id:016x}-03"}


def test_wrong_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="system must be a non-empty string"):
        messaging.publish("", "jobs")
    with pytest.raises(TypeError, match="headers must be a mapping, not list"):
        messaging.publish("test", "jobs", [("k", "v")])
    with pytest.raises(ValueError, match="relation must be one of"):
        messaging.process({}, "test", "jobs", relation="sibling")


def test_the_brokers_process_names_a_wrong_message():
    from threadline.integrations import mqtt, nats, rabbitmq, redis

    with pytest.raises(TypeError, match="process takes a nats Msg, not dict"):
        nats.process({})
    with pytest.raises(TypeError, match="process takes a paho MQTTMessage, not bytes"):
        mqtt.process(b"x")
    with pytest.raises(TypeError, match="an aio-pika IncomingMessage, not NoneType"):
        rabbitmq.process(None)
    with pytest.raises(
        TypeError, match="process takes an Entry or a Pub/Sub message dict, not str"
    ):
        redis.process("x")
