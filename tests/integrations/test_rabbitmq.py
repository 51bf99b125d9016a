"""RabbitMQ on 127.0.0.1:5672: pika and aio-pika publish and consume for real; one trace from the
publisher's span through the PRODUCER and CONSUMER spans to the handler."""

from __future__ import annotations

import asyncio

import aio_pika
import pika
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

import threadline as tl
from local_services import require
from threadline.integrations import rabbitmq
from threadline.testing import hex_ids


@pytest.fixture
def amqp():
    """(connection, channel, a queue of its own) on the local RabbitMQ; the queue is deleted after."""
    require(5672, "RabbitMQ")
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    queue = unique("rabbitmq")
    channel.queue_declare(queue)
    yield connection, channel, queue
    if channel.is_open:
        channel.queue_delete(queue)
    connection.close()


def drain(connection, got: list, count: int) -> None:
    for _ in range(WAIT):
        if len(got) >= count:
            return
        connection.process_data_events(time_limit=1)
    raise AssertionError(f"received {len(got)} of {count} messages")


def publish_span_attributes(queue: str, **extra) -> dict:
    return {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": queue,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.rabbitmq.destination.routing_key": queue,
        **extra,
    }


def process_span_attributes(queue: str, delivery_tag: int, **extra) -> dict:
    return {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.rabbitmq.destination.routing_key": queue,
        "messaging.rabbitmq.message.delivery_tag": delivery_tag,
        **extra,
    }


def test_pika_publish_and_consume_is_one_trace(traces, amqp):
    connection, channel, queue = amqp
    got = []

    def on_message(ch, method, properties, body):
        with tl.span("handle", attributes={"body": body.decode()}):
            got.append((body, properties.headers, trace.get_current_span().get_span_context()))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue))
    props = pika.BasicProperties(
        message_id="order-1", correlation_id="conv-1", headers={"tenant": "acme"}
    )
    with tl.span("checkout") as root:
        rabbitmq.publish(channel, "", queue, b"order 1", props)
    channel.basic_publish("", queue, b"plain", pika.BasicProperties(headers={"x": "1"}))
    drain(connection, got, 2)

    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    t.assert_connected()
    send = t.find(f"publish {queue}")
    process = t.find(f"process {queue}")
    handled = t.find("handle")
    assert (send.kind, send.parent_id) == ("PRODUCER", root_id)
    assert (process.kind, process.parent_id) == ("CONSUMER", send.span_id)
    assert (handled.parent_id, handled.attributes["body"]) == (process.span_id, "order 1")
    assert messaging_attributes(send) == publish_span_attributes(
        queue, **{"messaging.message.id": "order-1", "messaging.message.conversation_id": "conv-1"}
    )
    assert (send.attributes["server.address"], send.attributes["server.port"]) == (
        "127.0.0.1",
        5672,
    )
    assert messaging_attributes(process) == process_span_attributes(
        queue,
        1,
        **{"messaging.message.id": "order-1", "messaging.message.conversation_id": "conv-1"},
    )
    assert t.services() == {"tests"}
    # The message carried the caller's headers and the send span; the caller's props are as given.
    assert got[0][1] == {"tenant": "acme", "traceparent": f"00-{trace_id}-{send.span_id}-03"}
    assert props.headers == {"tenant": "acme"}

    # The untraced message arrived unchanged, processed by the same consumer in a trace of its own.
    body, headers, ctx = got[1]
    assert (body, headers) == (b"plain", {"x": "1"})
    plain = traces.trace(format(ctx.trace_id, "032x"))
    assert plain.trace_id != trace_id
    assert [(s.name, s.parent_id) for s in plain.roots] == [(f"process {queue}", None)]
    assert messaging_attributes(plain.root) == process_span_attributes(queue, 2)
    assert not trace.get_current_span().get_span_context().is_valid


def test_pika_consume_loop_leaves_no_context_behind(traces, amqp):
    connection, channel, queue = amqp
    with tl.span("send two") as root:
        rabbitmq.publish(channel, "", queue, b"1")
    channel.basic_publish("", queue, b"2")
    seen = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=WAIT):
        with rabbitmq.process(method, properties, queue=queue) as span:
            seen.append((body, hex_ids(span)[0]))
        channel.basic_ack(method.delivery_tag)
        if len(seen) == 2:
            break
    channel.cancel()
    trace_id, _ = hex_ids(root)
    assert seen[0] == (b"1", trace_id)
    assert seen[1][0] == b"2" and seen[1][1] != trace_id  # not the previous message's trace
    assert not trace.get_current_span().get_span_context().is_valid
    with tl.span("after the loop") as after:
        pass
    assert hex_ids(after)[0] not in (trace_id, seen[1][1])


@pytest.mark.parametrize("relation", ["link", "none"])
def test_relation_link_or_none(traces, amqp, relation):
    connection, channel, queue = amqp
    got = []

    def on_message(ch, method, properties, body):
        got.append(trace.get_current_span().get_span_context())

    channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue, relation=relation))
    with tl.span("checkout") as root:
        rabbitmq.publish(channel, "", queue, b"x")
    drain(connection, got, 1)
    trace_id, _ = hex_ids(root)
    send = traces.trace(trace_id).find(f"publish {queue}")
    consumer_trace = traces.trace(format(got[0].trace_id, "032x"))
    assert consumer_trace.trace_id != trace_id
    process = consumer_trace.root
    assert (process.name, process.kind, process.parent_id) == (f"process {queue}", "CONSUMER", None)
    assert process.links == ([(trace_id, send.span_id, {})] if relation == "link" else [])


def test_batch_links_every_publisher_once(traces, amqp):
    connection, channel, queue = amqp
    with tl.span("first") as first:
        rabbitmq.publish(channel, "", queue, b"a")
        rabbitmq.publish(channel, "", queue, b"b")
    with tl.span("second") as second:
        rabbitmq.publish(channel, "", queue, b"c")
    channel.basic_publish("", queue, b"plain")
    deliveries = []
    while len(deliveries) < 4:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            deliveries.append((method, properties, body))
    with rabbitmq.process_batch(deliveries, queue=queue) as span:
        assert [d[2] for d in deliveries] == [b"a", b"b", b"c", b"plain"]
    batch = traces.trace(hex_ids(span)[0]).root
    sends = [
        s.span_id
        for t in (first, second)
        for s in traces.trace(hex_ids(t)[0]).find_all(f"publish {queue}")
    ]
    assert len(sends) == 3
    assert (batch.name, batch.kind, batch.parent_id) == (f"process {queue}", "CONSUMER", None)
    assert [(s, attrs) for _, s, attrs in batch.links] == [(s, {}) for s in sends]
    assert [t for t, _, _ in batch.links] == [hex_ids(first)[0]] * 2 + [hex_ids(second)[0]]
    assert messaging_attributes(batch) == {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.batch.message_count": 4,
    }
    assert "threadline.links.dropped" not in batch.attributes


def test_garbled_headers_start_a_new_trace_and_are_counted(traces, amqp):
    connection, channel, queue = amqp
    bad = [
        {"traceparent": "00-not-a-trace-01"},
        {"traceparent": b"\xff\xfe\x00garbage"},
        {"traceparent": ["00-a", 42], "baggage": 7},
    ]
    for headers in bad:
        channel.basic_publish("", queue, b"x", pika.BasicProperties(headers=headers))
    got = []

    def on_message(ch, method, properties, body):
        got.append(trace.get_current_span().get_span_context())

    before = tl.export_stats()["garbled_handoffs"]
    channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue), auto_ack=True)
    drain(connection, got, 3)
    assert tl.export_stats()["garbled_handoffs"] - before == 3
    assert len({ctx.trace_id for ctx in got}) == 3 and all(ctx.is_valid for ctx in got)
    for ctx in got:
        assert traces.trace(format(ctx.trace_id, "032x")).root.parent_id is None


def test_a_sampled_out_publisher_is_not_recorded_downstream(traces, amqp):
    connection, channel, queue = amqp
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    got = []

    def on_message(ch, method, properties, body):
        with tl.span("handle") as s:
            got.append((properties.headers["traceparent"], s.is_recording()))

    channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue), auto_ack=True)
    with tl.resume({"traceparent": f"00-{tid}-{sid}-00"}):
        rabbitmq.publish(channel, "", queue, b"x")
    drain(connection, got, 1)
    carried, recording = got[0]
    assert carried.startswith(f"00-{tid}-") and carried.endswith("-00")
    assert recording is False
    assert [s for s in traces.spans if s.trace_id == tid] == []


def test_aio_pika_publish_consume_and_iterate(traces):
    require(5672, "RabbitMQ")
    queue_name = unique("aio-pika")

    async def scenario():
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1/")
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name)
        handled = asyncio.Queue()

        async def handler(message):
            async with message.process():
                with tl.span("handle") as s:
                    await handled.put((message.body, message.headers, hex_ids(s)))

        with tl.span("checkout") as root:
            message = aio_pika.Message(b"order 1", headers={"tenant": "acme"})
            await rabbitmq.publish(channel.default_exchange, message, queue_name)
        assert message.headers == {"tenant": "acme"}  # the caller's message is left as it was
        tag = await queue.consume(rabbitmq.consumer(handler, queue=queue_name))
        consumed = await asyncio.wait_for(handled.get(), WAIT)
        await queue.cancel(tag)
        with tl.span("again") as again:
            await rabbitmq.publish(channel.default_exchange, aio_pika.Message(b"2"), queue_name)
        await channel.default_exchange.publish(aio_pika.Message(b"plain"), queue_name)
        iterated = []
        async with queue.iterator() as it:
            async for incoming in it:
                async with incoming.process():
                    with rabbitmq.process(incoming, queue=queue_name) as span:
                        iterated.append((incoming.body, hex_ids(span)))
                if len(iterated) == 2:
                    break
        await queue.delete()
        await connection.close()
        return root, consumed, again, iterated

    root, consumed, again, iterated = asyncio.run(scenario())
    trace_id = hex_ids(root)[0]
    send, process, handle = assert_one_chain(
        traces, root, f"publish {queue_name}", f"process {queue_name}"
    )
    message_id = send.attributes["messaging.message.id"]
    assert len(message_id) == 32
    assert messaging_attributes(send) == publish_span_attributes(
        queue_name, **{"messaging.message.id": message_id}
    )
    assert messaging_attributes(process) == process_span_attributes(
        queue_name, 1, **{"messaging.message.id": message_id}
    )
    body, headers, _ = consumed
    assert (body, headers) == (
        b"order 1",
        {"tenant": "acme", "traceparent": f"00-{trace_id}-{send.span_id}-03"},
    )
    again_trace = traces.trace(hex_ids(again)[0])
    again_send = again_trace.find(f"publish {queue_name}")
    assert iterated[0][0] == b"2"
    assert again_trace.find(f"process {queue_name}").parent_id == again_send.span_id
    assert iterated[1][0] == b"plain"
    plain = traces.trace(iterated[1][1][0])
    assert [(s.name, s.parent_id) for s in plain.spans] == [(f"process {queue_name}", None)]


def test_consumer_in_another_process(traces, amqp):
    connection, channel, queue = amqp
    worker = Worker("rabbitmq", queue, 3, traces.endpoint)
    try:
        with tl.span("checkout") as root:
            rabbitmq.publish(channel, "", queue, b"order 1")
            rabbitmq.publish(channel, "", queue, b"order 2")
        channel.basic_publish("", queue, b"plain", pika.BasicProperties(headers={"x": "1"}))
        worker.wait()
    finally:
        worker.kill()
    assert_consumed_elsewhere(
        traces, root, worker, f"publish {queue}", f"process {queue}", {"x": "1"}
    )
