"""What the broker tests share, and their consumer in another OS process.

As a program: ``python brokers.py BROKER DESTINATION COUNT ENDPOINT`` configures threadline as
service "worker" exporting to ENDPOINT, consumes COUNT messages from DESTINATION through the
integration, handles each in a "handle" span that records what arrived, prints "ready" once it
is subscribed, and exits after exporting everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import threadline as tl
from threadline.testing import hex_ids

WAIT = 60


def unique(prefix: str) -> str:
    return f"tl-test-{prefix}-{uuid.uuid4().hex[:10]}"


def messaging_attributes(span: Any) -> dict[str, Any]:
    return {k: v for k, v in span.attributes.items() if k.startswith("messaging.")}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Worker:
    """The consumer program, started and waited for by a test."""

    def __init__(self, broker: str, destination: str, count: int, endpoint: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, broker, destination, str(count), endpoint],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise AssertionError(f"the {broker} worker did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self) -> None:
        assert self.proc.wait(WAIT) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


def assert_consumed_elsewhere(traces, root, worker: Worker, sent: str, processed: str, plain):
    """The two messages sent under root ("order 1", "order 2") were processed by the worker, in
    root's trace, each a child of its own send span; the untraced one ("plain", arriving with
    the fields / headers ``plain``) in a trace of its own."""
    traces.wait_for(
        lambda spans: sum(s.name == "handle" and s.pid == worker.pid for s in spans) == 3,
        timeout=WAIT,
    )
    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    t.assert_connected()
    sends, processes = t.find_all(sent), t.find_all(processed)
    assert [(s.kind, s.parent_id, s.service) for s in sends] == [("PRODUCER", root_id, "tests")] * 2
    assert [(p.kind, p.parent_id, p.service, p.pid) for p in processes] == [
        ("CONSUMER", s.span_id, "worker", worker.pid) for s in sends
    ]
    assert [[h.attributes["body"] for h in t.children(p)] for p in processes] == [
        ["order 1"],
        ["order 2"],
    ]
    untraced = [s for s in traces.spans if s.name == "handle" and s.attributes["body"] == "plain"]
    assert [(s.trace_id != trace_id, s.attributes.get("fields")) for s in untraced] == [
        (True, json.dumps(plain, sort_keys=True) if plain else None)
    ]
    assert traces.trace(untraced[0].trace_id).root.name == processed


# -- the worker program ----------------------------------------------------------------------


def assert_one_chain(traces, root, sent: str, processed: str):
    """The trace of `root` is one tree: root -> PRODUCER `sent` -> CONSUMER `processed` ->
    "handle". Returns the three spans."""
    from threadline.testing import hex_ids

    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    t.assert_connected()
    send, process, handled = t.find(sent), t.find(processed), t.find("handle")
    assert [(s.kind, s.parent_id) for s in (send, process, handled)] == [
        ("PRODUCER", root_id),
        ("CONSUMER", send.span_id),
        ("INTERNAL", process.span_id),
    ]
    return send, process, handled


def handle(body: Any, fields: Any = None) -> None:
    attrs = {"body": text(body)}
    if fields:
        attrs["fields"] = json.dumps({text(k): text(v) for k, v in fields.items()}, sort_keys=True)
    with tl.span("handle", attributes=attrs):
        pass


def _ready() -> None:
    print("ready", flush=True)


def rabbitmq_worker(queue: str, count: int) -> None:
    import pika

    from threadline.integrations import rabbitmq

    seen = []

    def on_message(channel, method, properties, body):
        handle(body, properties.headers)
        channel.basic_ack(method.delivery_tag)
        seen.append(body)

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue))
    _ready()
    while len(seen) < count:
        connection.process_data_events(time_limit=1)
    connection.close()


def redis_worker(stream: str, count: int) -> None:
    import redis as redis_client

    from threadline.integrations import redis

    client = redis_client.Redis()
    _ready()
    seen = 0
    while seen < count:
        for entry in redis.xreadgroup(client, "workers", "w1", {stream: ">"}, block=1000):
            with redis.process(entry):
                handle(entry.fields.get(b"body", b""), entry.fields)
            client.xack(stream, "workers", entry.id)
            seen += 1
    client.close()


def nats_worker(subject: str, count: int) -> None:
    import asyncio

    import nats as nats_client

    from threadline.integrations import nats

    async def main() -> None:
        nc = await nats_client.connect("nats://127.0.0.1:4222")
        done = asyncio.Event()
        seen = []

        async def on_message(msg):
            handle(msg.data, msg.headers)
            seen.append(msg)
            if len(seen) == count:
                done.set()

        await nc.subscribe(subject, cb=nats.handler(on_message))
        await nc.flush()
        _ready()
        await asyncio.wait_for(done.wait(), WAIT)
        await nc.close()

    asyncio.run(main())


def mqtt_worker(topic: str, count: int) -> None:
    import threading

    import paho.mqtt.client as paho

    from threadline.integrations import mqtt

    subscribed, done = threading.Event(), threading.Event()
    seen = []

    def on_message(client, userdata, message):
        handle(message.payload, dict(getattr(message.properties, "UserProperty", None) or []))
        seen.append(message)
        if len(seen) == count:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = mqtt.handler(on_message)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", 1883)
    client.subscribe(topic, qos=1)
    client.loop_start()
    assert subscribed.wait(WAIT)
    _ready()
    assert done.wait(WAIT)
    client.loop_stop()
    client.disconnect()


WORKERS = {
    "rabbitmq": rabbitmq_worker,
    "redis": redis_worker,
    "nats": nats_worker,
    "mqtt": mqtt_worker,
}

if __name__ == "__main__":
    broker, destination, count, endpoint = sys.argv[1:]
    tl.configure("worker", endpoint=endpoint)
    WORKERS[broker](destination, int(count))
    tl.shutdown()
