"""NATS (nats-py, core NATS and JetStream): the trace travels in the message headers.

    await nats.publish(nc, "orders", b"...")           # PRODUCER "publish orders"; nc or nc.jetstream()
    await nc.subscribe("orders", cb=nats.handler(cb))   # CONSUMER "process orders" per message
    msgs = await pull.fetch(10)                         # JetStream pull consumer
    with nats.process_batch(msgs): ...                  # one CONSUMER span, linked to each sender
    reply = await nats.request(nc, "price", b"tea")     # CLIENT "request price"; the responder's
                                                        # handler() span is SERVER, same trace

Messages without headers (untraced publishers) reach the callback unchanged and are processed in
a new trace. A JetStream message's id is its ``Nats-Msg-Id`` header when the publisher set one,
else its stream sequence. Needs the ``nats`` extra (nats-py).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from threadline.integrations import messaging
from threadline.seam import Relation

__all__ = ["handler", "process", "process_batch", "publish", "request"]

SYSTEM = "nats"
MSG_ID = "Nats-Msg-Id"
_ACK_PREFIX = "$JS.ACK."  # the reply subject of a JetStream delivery: an ack, not a request


def _server(client: Any) -> dict[str, Any]:
    try:
        url = getattr(client, "_nc", client).connected_url  # a JetStreamContext keeps its client
        return {"server.address": url.hostname, "server.port": url.port}
    except Exception:  # noqa: BLE001 - not connected: no address then
        return {}


def _is_jetstream(target: Any) -> bool:
    return callable(getattr(target, "pull_subscribe", None))


async def publish(
    client: Any,
    subject: str,
    payload: bytes = b"",
    *,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """``client.publish(subject, payload, headers=..., **kwargs)`` inside a PRODUCER
    "publish <subject>" span, the trace added to the headers. ``client`` is a connection or a
    JetStream context (whose PubAck is returned, its sequence recorded as the message id)."""
    jetstream = _is_jetstream(client)
    with messaging.publish(
        SYSTEM,
        subject,
        headers,
        operation="publish",
        message_id=(headers or {}).get(MSG_ID),
        attributes=_server(client),
    ) as out:
        result = await client.publish(subject, payload, headers=out.headers, **kwargs)
        if jetstream and not (headers or {}).get(MSG_ID):
            out.set_id(getattr(result, "seq", None))
        return result


async def request(
    client: Any,
    subject: str,
    payload: bytes = b"",
    *,
    timeout: float = 0.5,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """``client.request(...)`` inside a CLIENT "request <subject>" span, the trace in the
    request's headers; a responder using ``handler()`` serves it in a SERVER span of that
    trace. Returns the reply (timeouts and no-responders errors propagate as usual).
    ``client`` is the connection; ``subject``, ``payload``, ``timeout``, ``headers`` (copied,
    the trace added) and ``kwargs`` go to its ``request``."""
    with messaging.publish(
        SYSTEM,
        subject,
        headers,
        operation="request",
        kind=SpanKind.CLIENT,
        attributes=_server(client),
    ) as out:
        return await client.request(
            subject, payload, timeout=timeout, headers=out.headers, **kwargs
        )


def _message_id(msg: Any) -> Any:
    headers = msg.headers or {}
    if headers.get(MSG_ID):
        return headers[MSG_ID]
    if _from_jetstream(msg):
        try:
            return msg.metadata.sequence.stream
        except Exception:  # noqa: BLE001 - an ack subject of another shape: no id then
            return None
    return None


def _from_jetstream(msg: Any) -> bool:
    return bool(msg.reply) and msg.reply.startswith(_ACK_PREFIX)


def _consumer_group(msg: Any) -> str | None:
    if not _from_jetstream(msg):
        return None
    try:
        return msg.metadata.consumer
    except Exception:  # noqa: BLE001 - an ack subject of another shape: no group then
        return None


def process(msg: Any, *, relation: Relation | None = None):
    """``with process(msg):`` — the block in a CONSUMER "process <subject>" span continuing the
    publisher's trace, or, for a request (a reply subject that is not a JetStream ack), a SERVER
    "request <subject>" span continuing the requester's. ``relation`` ("child" unless given,
    "link" or "none") is how the span continues the sender's trace."""
    if not hasattr(msg, "subject") or not hasattr(msg, "headers"):
        raise TypeError(f"process takes a nats Msg, not {type(msg).__name__}")
    is_request = bool(msg.reply) and not _from_jetstream(msg)
    return messaging.process(
        msg.headers,
        SYSTEM,
        msg.subject,
        relation=relation,
        operation="request" if is_request else "process",
        kind=SpanKind.SERVER if is_request else SpanKind.CONSUMER,
        message_id=_message_id(msg),
        attributes={"messaging.consumer.group.name": _consumer_group(msg)},
    )


def process_batch(msgs: Iterable[Any]):
    """One CONSUMER "process <subject>" span for ``msgs``, many messages (a JetStream
    ``fetch()``), linked to each publisher."""
    msgs = list(msgs)
    subjects = {m.subject for m in msgs}
    groups = {_consumer_group(m) for m in msgs}
    return messaging.process_batch(
        [m.headers for m in msgs],
        SYSTEM,
        subjects.pop() if len(subjects) == 1 else "",
        attributes={"messaging.consumer.group.name": groups.pop() if len(groups) == 1 else None},
    )


def handler(
    cb: Callable[[Any], Awaitable[Any]], *, relation: Relation | None = None
) -> Callable[[Any], Awaitable[Any]]:
    """A subscription callback (``nc.subscribe(subject, cb=handler(cb))``, ``js.subscribe``),
    each message processed in its own span (see process()). ``cb`` is the coroutine function
    to call with each message; ``relation`` is as for process()."""
    if not callable(cb):
        raise TypeError(f"handler takes a coroutine function, not {type(cb).__name__}")

    @functools.wraps(cb)
    async def on_message(msg: Any) -> Any:
        with process(msg, relation=relation):
            return await cb(msg)

    return on_message
