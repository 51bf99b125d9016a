"""Redis: the trace travels with Redis Streams entries (and, where it can, Pub/Sub messages).

    entry_id = redis.xadd(client, "orders", {"sku": "tea"})        # PRODUCER "send orders"
    for entry in redis.xreadgroup(client, "shipping", "worker-1", {"orders": ">"}, count=10):
        with redis.process(entry):                                  # CONSUMER "process orders"
            ship(entry.fields)                                      # the fields as sent
    with redis.process_batch(entries): ...                         # one span, linked to each

Streams: ``traceparent`` / ``tracestate`` / ``baggage`` (or the headers of the propagators
``OTEL_PROPAGATORS`` chose, such as ``b3``) are written as fields of the entry,
next to the payload's own, so any reader sees them as ordinary fields; ``Entry.fields`` is the
payload without them. Entries added by untraced code come through unchanged and are processed
in a new trace. Works with ``redis.Redis`` and ``redis.asyncio.Redis`` alike: with an asyncio
client, await the call (``await redis.xadd(client, ...)``), RESP2 or RESP3, bytes or decoded.

Pub/Sub messages have no headers. ``redis.publish(client, channel, message)`` carries the trace
only in a message that is a JSON object: the carrier keys are put first in the object
(``{"traceparent":"00-…","id":1}``), which any JSON reader still reads, and ``process()`` /
``handler()`` take them out again, giving back the exact bytes that were published. Any other
message is published unchanged and its subscribers start a trace of their own. Prefer Streams.

The OpenTelemetry contrib redis instrumentation traces commands (a CLIENT span per XADD,
XREADGROUP...); it carries no context in messages. It can be enabled alongside: its command
spans nest under these spans. Needs the ``redis`` extra.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from threadline.integrations import messaging
from threadline.seam import Relation, carrier_keys

__all__ = [
    "Entry",
    "handler",
    "process",
    "process_batch",
    "publish",
    "xadd",
    "xread",
    "xreadgroup",
]

SYSTEM = "redis"


def _server(client: Any) -> dict[str, Any]:
    try:
        kwargs = client.connection_pool.connection_kwargs
        return {"server.address": kwargs["host"], "server.port": kwargs["port"]}
    except Exception:  # noqa: BLE001 - a unix socket, a cluster client: no address then
        return {}


def _is_async(client: Any) -> bool:
    # redis.asyncio's command methods are plain functions returning coroutines: ask the type.
    return type(client).__module__.startswith("redis.asyncio")


# -- Streams -----------------------------------------------------------------------------------


class Entry:
    """One stream entry as read: ``stream``, ``id``, ``fields`` (the payload, without the trace
    carrier), ``headers`` (every field as stored) and the consumer ``group`` it was read in.
    ``entry_id`` is the entry's id as Redis returned it."""

    __slots__ = ("stream", "id", "fields", "headers", "group")

    def __init__(self, stream: str, entry_id: Any, headers: Mapping[Any, Any] | None, group=None):
        self.stream = stream
        self.id = entry_id
        self.headers = dict(headers or {})
        self.fields = messaging.strip(self.headers)
        self.group = group

    def __repr__(self) -> str:
        return f"Entry({self.stream!r}, {self.id!r}, {self.fields!r})"


def xadd(client: Any, stream: Any, fields: Mapping[Any, Any], **kwargs: Any) -> Any:
    """``client.xadd(stream, fields + carrier, **kwargs)`` inside a PRODUCER "send <stream>"
    span that records the entry id; returns it (awaitable with an asyncio client)."""
    if not isinstance(fields, Mapping):
        raise TypeError(f"fields must be a mapping, not {type(fields).__name__}")
    outgoing = messaging.publish(
        SYSTEM, messaging.text(stream), fields, operation="send", attributes=_server(client)
    )
    if _is_async(client):
        return _axadd(outgoing, client, stream, kwargs)
    with outgoing as out:
        entry_id = client.xadd(stream, out.headers, **kwargs)
        _record_id(out, entry_id)
        return entry_id


async def _axadd(outgoing: messaging.Outgoing, client: Any, stream: Any, kwargs: dict) -> Any:
    with outgoing as out:
        entry_id = await client.xadd(stream, out.headers, **kwargs)
        _record_id(out, entry_id)
        return entry_id


def _record_id(out: messaging.Outgoing, entry_id: Any) -> None:
    if isinstance(entry_id, str | bytes):  # not a pipeline, which answers later
        out.set_id(entry_id)


def xread(client: Any, streams: Mapping[Any, Any], **kwargs: Any) -> Any:
    """``client.xread(streams, **kwargs)`` as a list of Entry (awaitable with an asyncio
    client). Reading makes no span: process each entry, or the batch."""
    if _is_async(client):
        return _aread(client.xread(streams, **kwargs), None)
    return entries(client.xread(streams, **kwargs))


def xreadgroup(client: Any, group: str, consumer: str, streams: Mapping, **kwargs: Any) -> Any:
    """``client.xreadgroup(group, consumer, streams, **kwargs)`` as a list of Entry."""
    reply = client.xreadgroup(group, consumer, streams, **kwargs)
    return _aread(reply, group) if _is_async(client) else entries(reply, group)


async def _aread(reply: Any, group: str | None) -> list[Entry]:
    return entries(await reply, group)


def entries(reply: Any, group: str | None = None) -> list[Entry]:
    """The entries of an XREAD / XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, Mapping):  # RESP3: {stream: [[(id, fields), ...]]}
        pairs = [(name, [e for chunk in chunks for e in chunk]) for name, chunks in reply.items()]
    else:  # RESP2: [[stream, [(id, fields), ...]], ...]
        pairs = [(name, items) for name, items in reply]
    return [
        Entry(messaging.text(name), entry_id, fields, group)
        for name, items in pairs
        for entry_id, fields in items
    ]


# -- Pub/Sub -----------------------------------------------------------------------------------


def _prefix(carrier: Mapping[str, Any]) -> bytes:
    members = (f"{json.dumps(k)}:{json.dumps(v)}" for k, v in carrier.items())
    return ("{" + ",".join(members)).encode()


# The first key of a JSON object, read without parsing the rest: is it a carrier key?
_FIRST_KEY = re.compile(rb'^\{"([a-z0-9_\-]{1,64})":')


def seal(message: Any, carrier: Mapping[str, str]) -> Any:
    """message with the carrier keys first in it, if it is a JSON object; else unchanged. The
    keys are those of the propagators in use (W3C's by default; OTEL_PROPAGATORS)."""
    keys = carrier_keys()
    carrier = {k: v for k, v in carrier.items() if k in keys}
    raw = message.encode() if isinstance(message, str) else message
    if not carrier or not isinstance(raw, bytes) or not raw.startswith(b"{"):
        return message
    try:
        obj = json.loads(raw)
    except ValueError:
        return message
    if not isinstance(obj, dict):
        return message
    sealed = _prefix(carrier) + (b"," + raw[1:] if obj else b"}")
    return sealed.decode() if isinstance(message, str) else sealed


def unseal(message: Any) -> tuple[Any, dict[str, Any]]:
    """(the message as published, its carrier) for a Pub/Sub message's data."""
    raw = message.encode() if isinstance(message, str) else message
    keys = carrier_keys()
    first = _FIRST_KEY.match(raw) if isinstance(raw, bytes) else None
    if first is None or first.group(1).decode() not in keys:
        return message, {}
    try:
        obj = json.loads(raw)
    except ValueError:
        return message, {}
    carrier = {}
    for k, v in obj.items():  # the carrier is the object's leading members, in sealed order
        if k not in keys:
            break
        carrier[k] = v
    prefix = _prefix(carrier)
    if raw == prefix + b"}":
        raw = b"{}"
    elif raw.startswith(prefix + b","):
        raw = b"{" + raw[len(prefix) + 1 :]
    else:  # put there by someone else: read the context, leave the message as it is
        return message, carrier
    return (raw.decode() if isinstance(message, str) else raw), carrier


def publish(client: Any, channel: Any, message: Any) -> Any:
    """``client.publish(channel, message)`` inside a PRODUCER "publish <channel>" span; a JSON
    object message carries the trace (see the module docs). Returns the receiver count."""
    outgoing = messaging.publish(
        SYSTEM, messaging.text(channel), None, operation="publish", attributes=_server(client)
    )
    if _is_async(client):
        return _apublish(outgoing, client, channel, message)
    with outgoing as out:
        return client.publish(channel, seal(message, out.headers))


async def _apublish(outgoing: messaging.Outgoing, client: Any, channel: Any, message: Any):
    with outgoing as out:
        return await client.publish(channel, seal(message, out.headers))


# -- processing --------------------------------------------------------------------------------


def process(message: Entry | dict, *, relation: Relation | None = None):
    """``with process(entry_or_message):`` — the block in a CONSUMER "process <stream or
    channel>" span continuing the producer's trace (``relation="link"`` / ``"none"`` on request).

    A Pub/Sub message (the dict redis-py gives) has its ``data`` put back as published."""
    if isinstance(message, Entry):
        return messaging.process(
            message.headers,
            SYSTEM,
            message.stream,
            relation=relation,
            message_id=message.id,
            attributes={"messaging.consumer.group.name": message.group},
        )
    if not isinstance(message, dict) or "data" not in message:
        raise TypeError(
            f"process takes an Entry or a Pub/Sub message dict, not {type(message).__name__}"
        )
    message["data"], carrier = unseal(message["data"])
    return messaging.process(
        carrier, SYSTEM, messaging.text(message.get("channel", "")), relation=relation
    )


def process_batch(batch: Iterable[Entry]):
    """One CONSUMER "process <stream>" span for the entries of ``batch``, linked to each
    producer."""
    batch = list(batch)
    streams = {e.stream for e in batch}
    groups = {e.group for e in batch}
    return messaging.process_batch(
        [e.headers for e in batch],
        SYSTEM,
        streams.pop() if len(streams) == 1 else "",
        attributes={"messaging.consumer.group.name": groups.pop() if len(groups) == 1 else None},
    )


def handler(fn: Callable[[dict], Any], *, relation: Relation | None = None) -> Callable:
    """A Pub/Sub message handler (``pubsub.subscribe(**{channel: handler(fn)})``), each message
    processed in its own CONSUMER span; ``fn`` may be a coroutine function (redis.asyncio).
    ``relation`` is as for process()."""
    if not callable(fn):
        raise TypeError(f"handler takes a function, not {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def on_message_async(message: dict) -> Any:
            with process(message, relation=relation):
                return await fn(message)

        return on_message_async

    @functools.wraps(fn)
    def on_message(message: dict) -> Any:
        with process(message, relation=relation):
            return fn(message)

    return on_message
