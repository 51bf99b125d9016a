"""MQTT on Mosquitto at 127.0.0.1:1883 with paho-mqtt 2: MQTT 5 user properties carry the trace;
MQTT 3.1.1 messages go through untouched and their subscribers start a trace of their own."""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as paho
import pytest
from brokers import (
    WAIT,
    Worker,
    assert_consumed_elsewhere,
    assert_one_chain,
    messaging_attributes,
    unique,
)
from opentelemetry import trace
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import threadline as tl
from local_services import require
from threadline.integrations import mqtt
from threadline.testing import hex_ids


class Pair:
    """A subscriber and a publisher on the local broker, both on one protocol version."""

    def __init__(self, topic: str, protocol: int, on_message) -> None:
        subscribed = threading.Event()
        self.sub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol)
        self.sub.on_message = on_message
        self.sub.on_subscribe = lambda *args: subscribed.set()
        self.sub.connect("127.0.0.1", 1883)
        self.sub.subscribe(topic, qos=1)
        self.sub.loop_start()
        self.pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol)
        self.pub.connect("127.0.0.1", 1883)
        self.pub.loop_start()
        assert subscribed.wait(WAIT)

    def close(self) -> None:
        for c in (self.sub, self.pub):
            c.loop_stop()
            c.disconnect()


@pytest.fixture
def topic():
    require(1883, "Mosquitto")
    return unique("mqtt") + "/orders"


def received(q: queue.Queue, count: int) -> list:
    return [q.get(timeout=WAIT) for _ in range(count)]


def test_mqtt5_user_properties_carry_the_trace(traces, topic):
    got = queue.Queue()

    def on_message(client, userdata, message):
        with tl.span("handle"):
            props = getattr(message.properties, "UserProperty", None)
            got.put((message.payload, props, trace.get_current_span().get_span_context()))

    pair = Pair(topic, paho.MQTTv5, mqtt.handler(on_message))
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("tenant", "acme")
        with tl.span("checkout") as root:
            mqtt.publish(pair.pub, topic, b"order 1", qos=1, properties=props).wait_for_publish(
                WAIT
            )
        pair.pub.publish(topic, b"plain", qos=1).wait_for_publish(WAIT)
        first, second = received(got, 2)
    finally:
        pair.close()
    trace_id = hex_ids(root)[0]
    send, process, handle = assert_one_chain(traces, root, f"publish {topic}", f"process {topic}")
    assert messaging_attributes(send) == {
        "messaging.system": "mqtt",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
    }
    assert (send.attributes["server.address"], send.attributes["threadline.mqtt.carried"]) == (
        "127.0.0.1",
        True,
    )
    assert messaging_attributes(process) == {
        "messaging.system": "mqtt",
        "messaging.destination.name": topic,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
    }
    assert first[:2] == (
        b"order 1",
        [("tenant", "acme"), ("traceparent", f"00-{trace_id}-{send.span_id}-03")],
    )
    assert props.UserProperty == [("tenant", "acme")]  # the caller's properties as given
    assert second[:2] == (b"plain", None)
    plain = traces.trace(format(second[2].trace_id, "032x"))
    assert plain.trace_id != trace_id
    assert [(s.name, s.parent_id) for s in plain.roots] == [(f"process {topic}", None)]


def test_mqtt311_publishes_unchanged_and_the_subscriber_starts_its_own_trace(traces, topic):
    got = queue.Queue()

    def on_message(client, userdata, message):
        got.put((message.payload, message.properties, trace.get_current_span().get_span_context()))

    pair = Pair(topic, paho.MQTTv311, mqtt.handler(on_message))
    try:
        with tl.span("checkout") as root:
            mqtt.publish(pair.pub, topic, b'{"id": 1}', qos=1).wait_for_publish(WAIT)
        ((payload, properties, ctx),) = received(got, 1)
    finally:
        pair.close()
    assert (payload, properties) == (b'{"id": 1}', None)
    trace_id, root_id = hex_ids(root)
    send = traces.trace(trace_id).find(f"publish {topic}")
    assert (send.kind, send.parent_id, send.attributes["threadline.mqtt.carried"]) == (
        "PRODUCER",
        root_id,
        False,
    )
    own = traces.trace(format(ctx.trace_id, "032x"))
    assert own.trace_id != trace_id
    assert [(s.name, s.kind, s.parent_id) for s in own.spans] == [
        (f"process {topic}", "CONSUMER", None)
    ]


def test_a_batch_links_every_publisher(traces, topic):
    got = queue.Queue()
    pair = Pair(topic, paho.MQTTv5, lambda client, userdata, message: got.put(message))
    try:
        roots = []
        for i in range(3):
            with tl.span("reading") as root:
                mqtt.publish(pair.pub, topic, b"%d" % i, qos=1).wait_for_publish(WAIT)
            roots.append(hex_ids(root)[0])
        pair.pub.publish(topic, b"untraced", qos=1).wait_for_publish(WAIT)
        messages = received(got, 4)
    finally:
        pair.close()
    with mqtt.process_batch(messages) as span:
        pass
    assert [m.payload for m in messages] == [b"0", b"1", b"2", b"untraced"]
    sends = [traces.trace(r).find(f"publish {topic}").span_id for r in roots]
    batch = traces.trace(hex_ids(span)[0]).root
    assert batch.links == [(r, s, {}) for r, s in zip(roots, sends, strict=True)]
    assert (batch.name, batch.kind, batch.parent_id) == (f"process {topic}", "CONSUMER", None)
    assert batch.attributes["messaging.batch.message_count"] == 4


def test_garbled_user_properties_start_a_new_trace_and_are_counted(traces, topic):
    got = queue.Queue()
    pair = Pair(
        topic,
        paho.MQTTv5,
        mqtt.handler(lambda c, u, m: got.put(hex_ids(trace.get_current_span()))),
    )
    before = tl.export_stats()["garbled_handoffs"]
    try:
        for value in ("00-nope", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"):
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("traceparent", value)
            pair.pub.publish(topic, b"x", qos=1, properties=props).wait_for_publish(WAIT)
        ids = received(got, 2)
    finally:
        pair.close()
    assert tl.export_stats()["garbled_handoffs"] - before == 2
    for trace_id, span_id in ids:
        assert traces.trace(trace_id).root.span_id == span_id


def test_consumer_in_another_process(traces, topic):
    worker = Worker("mqtt", topic, 3, traces.endpoint)
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    try:
        with tl.span("checkout") as root:
            mqtt.publish(pub, topic, b"order 1", qos=1).wait_for_publish(WAIT)
            mqtt.publish(pub, topic, b"order 2", qos=1).wait_for_publish(WAIT)
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("x", "1")
        pub.publish(topic, b"plain", qos=1, properties=props).wait_for_publish(WAIT)
        worker.wait()
    finally:
        pub.loop_stop()
        pub.disconnect()
        worker.kill()
    assert_consumed_elsewhere(
        traces, root, worker, f"publish {topic}", f"process {topic}", {"x": "1"}
    )
