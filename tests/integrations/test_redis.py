"""Redis on 127.0.0.1:6379: Streams entries and Pub/Sub messages carry the trace from the producer's
span to the consumer's, with redis-py's sync and asyncio clients."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis as redis_client
import redis.asyncio as redis_asyncio
from brokers import WAIT, Worker, assert_consumed_elsewhere, messaging_attributes, unique
from opentelemetry import trace

import threadline as tl
from local_services import require
from threadline.integrations import redis
from threadline.testing import hex_ids


@pytest.fixture
def client():
    require(6379, "Redis")
    c = redis_client.Redis(host="127.0.0.1")
    keys = []
    yield c, keys
    if keys:
        c.delete(*keys)
    c.close()


def stream_of(keys: list) -> str:
    name = unique("stream")
    keys.append(name)
    return name


def send_attributes(stream: str, entry_id: str) -> dict:
    return {
        "messaging.system": "redis",
        "messaging.destination.name": stream,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": entry_id,
    }


def test_streams_xadd_and_xreadgroup_are_one_trace(traces, client):
    c, keys = client
    stream = stream_of(keys)
    c.xgroup_create(stream, "shipping", id="0", mkstream=True)
    with tl.span("checkout") as root:
        entry_id = redis.xadd(c, stream, {"sku": "tea", "qty": 2})
    plain_id = c.xadd(stream, {"sku": "pen"})
    read = redis.xreadgroup(c, "shipping", "w1", {stream: ">"}, count=10)
    assert [(e.stream, e.id) for e in read] == [(stream, entry_id), (stream, plain_id)]
    contexts = []
    for entry in read:
        with redis.process(entry):
            with tl.span("ship", attributes={"sku": entry.fields[b"sku"].decode()}):
                contexts.append(trace.get_current_span().get_span_context())
    assert not trace.get_current_span().get_span_context().is_valid

    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    t.assert_connected()
    send, process, ship = t.find(f"send {stream}"), t.find(f"process {stream}"), t.find("ship")
    assert [(s.kind, s.parent_id) for s in (send, process, ship)] == [
        ("PRODUCER", root_id),
        ("CONSUMER", send.span_id),
        ("INTERNAL", process.span_id),
    ]
    assert messaging_attributes(send) == send_attributes(stream, entry_id.decode())
    assert (send.attributes["server.address"], send.attributes["server.port"]) == (
        "127.0.0.1",
        6379,
    )
    assert messaging_attributes(process) == {
        "messaging.system": "redis",
        "messaging.destination.name": stream,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": entry_id.decode(),
        "messaging.consumer.group.name": "shipping",
    }
    # The carrier is stored as fields of the entry; Entry.fields is the payload as sent.
    assert read[0].headers == {
        b"sku": b"tea",
        b"qty": b"2",
        b"traceparent": f"00-{trace_id}-{send.span_id}-03".encode(),
    }
    assert read[0].fields == {b"sku": b"tea", b"qty": b"2"}
    # The untraced entry is unchanged, processed in a new trace by the same loop.
    assert read[1].fields == read[1].headers == {b"sku": b"pen"}
    plain = traces.trace(format(contexts[1].trace_id, "032x"))
    assert plain.trace_id != trace_id
    assert [(s.name, s.parent_id) for s in plain.roots] == [(f"process {stream}", None)]


def test_streams_with_the_asyncio_client_and_resp3(traces, client):
    c, keys = client
    stream = stream_of(keys)

    async def scenario():
        a = redis_asyncio.Redis(host="127.0.0.1", decode_responses=True, protocol=3)
        with tl.span("checkout") as root:
            entry_id = await redis.xadd(a, stream, {"sku": "tea"})
        read = await redis.xread(a, {stream: "0"}, count=10)
        with redis.process(read[0]) as span:
            pass
        await a.aclose()
        return root, entry_id, read, span

    root, entry_id, read, span = asyncio.run(scenario())
    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    send = t.find(f"send {stream}")
    assert (send.kind, send.parent_id) == ("PRODUCER", root_id)
    assert messaging_attributes(send) == send_attributes(stream, entry_id)
    assert [(e.id, e.fields) for e in read] == [(entry_id, {"sku": "tea"})]
    process = t.find(f"process {stream}")
    assert (process.span_id, process.kind, process.parent_id) == (
        hex_ids(span)[1],
        "CONSUMER",
        send.span_id,
    )
    assert "messaging.consumer.group.name" not in process.attributes  # XREAD: no group


def test_a_batch_read_links_every_producer(traces, client):
    c, keys = client
    stream = stream_of(keys)
    roots = []
    for sku in ("a", "b", "c"):
        with tl.span("order") as root:
            redis.xadd(c, stream, {"sku": sku})
        roots.append(hex_ids(root)[0])
    c.xadd(stream, {"sku": "untraced"})
    c.xgroup_create(stream, "billing", id="0")
    read = redis.xreadgroup(c, "billing", "w1", {stream: ">"}, count=10)
    with redis.process_batch(read) as span:
        skus = [e.fields[b"sku"] for e in read]
    assert skus == [b"a", b"b", b"c", b"untraced"]
    batch = traces.trace(hex_ids(span)[0]).root
    sends = [traces.trace(r).find(f"send {stream}").span_id for r in roots]
    assert batch.links == [(r, s, {}) for r, s in zip(roots, sends, strict=True)]
    assert (batch.name, batch.kind, batch.parent_id) == (f"process {stream}", "CONSUMER", None)
    assert batch.attributes["messaging.batch.message_count"] == 4
    assert batch.attributes["messaging.consumer.group.name"] == "billing"


def test_pubsub_json_objects_carry_the_trace_and_come_back_exactly(traces, client):
    c, _ = client
    channel = unique("channel")
    traced_sub, plain_sub = c.pubsub(), c.pubsub()
    received = []
    traced_sub.subscribe(**{channel: redis.handler(lambda m: received.append(dict(m)))})
    plain_sub.subscribe(channel)
    for sub in (traced_sub, plain_sub):
        assert sub.get_message(timeout=WAIT)["type"] == "subscribe"
    messages = ['{"id": 1, "sku": "tea"}', "{}", "not json", "[1, 2]"]
    with tl.span("announce") as root:
        for m in messages:
            assert redis.publish(c, channel, m) == 2
    for _ in range(WAIT * 10):
        if len(received) == len(messages):
            break
        traced_sub.get_message(timeout=0.1)
    plain = [plain_sub.get_message(timeout=WAIT)["data"] for _ in messages]
    traced_sub.close()
    plain_sub.close()

    # The traced subscriber gets exactly what was published.
    assert [m["data"] for m in received] == [m.encode() for m in messages]
    # A plain subscriber still reads the JSON objects, with the carrier keys in front.
    trace_id, _ = hex_ids(root)
    sends = traces.trace(trace_id).find_all(f"publish {channel}")
    assert [json.loads(p) for p in plain[:2]] == [
        {"traceparent": f"00-{trace_id}-{sends[0].span_id}-03", "id": 1, "sku": "tea"},
        {"traceparent": f"00-{trace_id}-{sends[1].span_id}-03"},
    ]
    assert plain[2:] == [b"not json", b"[1, 2]"]  # no object: published unchanged
    processes = [s for s in traces.spans if s.name == f"process {channel}"]
    assert [(p.trace_id == trace_id, p.parent_id) for p in processes] == [
        (True, sends[0].span_id),
        (True, sends[1].span_id),
        (False, None),
        (False, None),
    ]
    assert messaging_attributes(sends[0]) == {
        "messaging.system": "redis",
        "messaging.destination.name": channel,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
    }


def test_garbled_fields_start_a_new_trace_and_are_counted(traces, client):
    c, keys = client
    stream = stream_of(keys)
    c.xadd(stream, {"traceparent": "00-zz-zz-01", "sku": "tea"})
    c.xadd(stream, {"traceparent": b"\xff\xfe", "sku": "pen"})
    before = tl.export_stats()["garbled_handoffs"]
    ids = []
    for entry in redis.xread(c, {stream: "0"}):
        with redis.process(entry) as span:
            ids.append(hex_ids(span))
    assert tl.export_stats()["garbled_handoffs"] - before == 2
    for trace_id, span_id in ids:
        assert traces.trace(trace_id).root.span_id == span_id


def test_consumer_in_another_process(traces, client):
    c, keys = client
    stream = stream_of(keys)
    c.xgroup_create(stream, "workers", id="0", mkstream=True)
    worker = Worker("redis", stream, 3, traces.endpoint)
    try:
        with tl.span("checkout") as root:
            redis.xadd(c, stream, {"body": "order 1"})
            redis.xadd(c, stream, {"body": "order 2"})
        c.xadd(stream, {"body": "plain", "x": "1"})
        worker.wait()
    finally:
        worker.kill()
    assert_consumed_elsewhere(
        traces, root, worker, f"send {stream}", f"process {stream}", {"body": "plain", "x": "1"}
    )
