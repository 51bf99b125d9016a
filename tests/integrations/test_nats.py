"""NATS with JetStream on 127.0.0.1:4222: core publish / subscribe, request / reply and JetStream
pull consumers carry the trace in message headers."""

from __future__ import annotations

import asyncio

import nats as nats_client
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
from threadline.integrations import nats
from threadline.testing import hex_ids


@pytest.fixture
def subject():
    require(4222, "NATS")
    return unique("nats").replace("-", ".")


async def connect():
    return await nats_client.connect("nats://127.0.0.1:4222")


def attributes(subject: str, operation: str, op_type: str, **extra) -> dict:
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": op_type,
        "messaging.operation.name": operation,
        **extra,
    }


def test_publish_and_subscribe_are_one_trace(traces, subject):
    async def scenario():
        nc = await connect()
        got = asyncio.Queue()

        async def on_message(msg):
            with tl.span("handle"):
                await got.put((msg.data, msg.headers, trace.get_current_span().get_span_context()))

        await nc.subscribe(subject, cb=nats.handler(on_message))
        with tl.span("checkout") as root:
            await nats.publish(nc, subject, b"order 1", headers={"tenant": "acme"})
        await nc.publish(subject, b"plain")
        first = await asyncio.wait_for(got.get(), WAIT)
        second = await asyncio.wait_for(got.get(), WAIT)
        await nc.close()
        return root, first, second

    root, first, second = asyncio.run(scenario())
    trace_id = hex_ids(root)[0]
    send, process, handle = assert_one_chain(
        traces, root, f"publish {subject}", f"process {subject}"
    )
    assert messaging_attributes(send) == attributes(subject, "publish", "send")
    assert (send.attributes["server.address"], send.attributes["server.port"]) == (
        "127.0.0.1",
        4222,
    )
    assert messaging_attributes(process) == attributes(subject, "process", "process")
    assert first[:2] == (
        b"order 1",
        {"tenant": "acme", "traceparent": f"00-{trace_id}-{send.span_id}-03"},
    )
    # The untraced message arrives unchanged, in a trace of its own.
    assert second[:2] == (b"plain", None)
    plain = traces.trace(format(second[2].trace_id, "032x"))
    assert plain.trace_id != trace_id
    assert [(s.name, s.kind, s.parent_id) for s in plain.roots] == [
        (f"process {subject}", "CONSUMER", None)
    ]


def test_request_and_reply_are_client_and_server_spans_of_one_trace(traces, subject):
    async def scenario():
        nc = await connect()

        async def price(msg):
            with tl.span("look up price", attributes={"item": msg.data.decode()}):
                await msg.respond(b"9.5")

        await nc.subscribe(subject, cb=nats.handler(price))
        with tl.span("checkout") as root:
            reply = await nats.request(nc, subject, b"tea", timeout=WAIT)
        untraced = await nc.request(subject, b"pen", timeout=WAIT)
        await nc.close()
        return root, reply, untraced

    root, reply, untraced = asyncio.run(scenario())
    assert (reply.data, untraced.data) == (b"9.5", b"9.5")
    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    t.assert_connected()
    requests = t.find_all(f"request {subject}")
    client = [s for s in requests if s.kind == "CLIENT"]
    server = [s for s in requests if s.kind == "SERVER"]
    assert [s.parent_id for s in client] == [root_id]
    assert [s.parent_id for s in server] == [client[0].span_id]
    assert [s.attributes["item"] for s in t.children(server[0])] == ["tea"]
    assert messaging_attributes(client[0]) == attributes(subject, "request", "send")
    assert messaging_attributes(server[0]) == attributes(subject, "request", "process")
    other = [s for s in traces.spans if s.attributes.get("item") == "pen"]
    assert other[0].trace_id != trace_id
    assert traces.trace(other[0].trace_id).root.kind == "SERVER"


def test_jetstream_pull_fetch_links_the_batch_and_continues_each_message(traces, subject):
    stream = unique("stream").replace("-", "_")

    async def scenario():
        nc = await connect()
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        try:
            roots = []
            for i in range(3):
                with tl.span("order") as root:
                    ack = await nats.publish(js, subject, b"%d" % i)
                roots.append((hex_ids(root)[0], ack.seq))
            with tl.span("with id") as with_id:
                await nats.publish(js, subject, b"3", headers={"Nats-Msg-Id": "order-3"})
            await js.publish(subject, b"plain")
            pull = await js.pull_subscribe(subject, durable="billing")
            msgs = await pull.fetch(5, timeout=WAIT)
            with nats.process_batch(msgs) as batch:
                pass
            singles = []
            for msg in msgs:
                with nats.process(msg) as span:
                    singles.append(hex_ids(span))
                await msg.ack()
        finally:
            await js.delete_stream(stream)
            await nc.close()
        return roots, with_id, msgs, batch, singles

    roots, with_id, msgs, batch_span, singles = asyncio.run(scenario())
    assert [m.data for m in msgs] == [b"0", b"1", b"2", b"3", b"plain"]
    sends = [traces.trace(r).find(f"publish {subject}") for r, _ in roots]
    sends.append(traces.trace(hex_ids(with_id)[0]).find(f"publish {subject}"))
    assert [s.attributes["messaging.message.id"] for s in sends] == ["1", "2", "3", "order-3"]
    batch = traces.trace(hex_ids(batch_span)[0]).root
    assert (batch.name, batch.kind, batch.parent_id) == (f"process {subject}", "CONSUMER", None)
    assert batch.links == [(s.trace_id, s.span_id, {}) for s in sends]
    assert messaging_attributes(batch) == attributes(
        subject,
        "process",
        "process",
        **{"messaging.consumer.group.name": "billing", "messaging.batch.message_count": 5},
    )
    # Processed one by one, each message continues its own publisher's trace.
    processes = [traces.trace(t).spans[-1] for t, _ in singles]
    assert [(p.trace_id, p.parent_id) for p in processes[:4]] == [
        (s.trace_id, s.span_id) for s in sends
    ]
    assert [p.attributes["messaging.message.id"] for p in processes] == [
        "1",
        "2",
        "3",
        "order-3",
        "5",
    ]
    assert processes[4].parent_id is None and processes[4].trace_id not in {
        s.trace_id for s in sends
    }


def test_garbled_headers_start_a_new_trace_and_are_counted(traces, subject):
    async def scenario():
        nc = await connect()
        got = asyncio.Queue()

        async def on_message(msg):
            await got.put(hex_ids(trace.get_current_span()))

        await nc.subscribe(subject, cb=nats.handler(on_message))
        before = tl.export_stats()["garbled_handoffs"]
        await nc.publish(subject, b"x", headers={"traceparent": "00-garbage"})
        await nc.publish(subject, b"y", headers={"traceparent": "ff-" + "a" * 32 + "-" + "b" * 16})
        ids = [await asyncio.wait_for(got.get(), WAIT) for _ in range(2)]
        await nc.close()
        return before, ids

    before, ids = asyncio.run(scenario())
    assert tl.export_stats()["garbled_handoffs"] - before == 2
    for trace_id, span_id in ids:
        assert traces.trace(trace_id).root.span_id == span_id


def test_consumer_in_another_process(traces, subject):
    worker = Worker("nats", subject, 3, traces.endpoint)

    async def publish():
        nc = await connect()
        with tl.span("checkout") as root:
            await nats.publish(nc, subject, b"order 1")
            await nats.publish(nc, subject, b"order 2")
        await nc.publish(subject, b"plain", headers={"x": "1"})
        await nc.flush()
        await nc.close()
        return root

    try:
        root = asyncio.run(publish())
        worker.wait()
    finally:
        worker.kill()
    assert_consumed_elsewhere(
        traces, root, worker, f"publish {subject}", f"process {subject}", {"x": "1"}
    )
