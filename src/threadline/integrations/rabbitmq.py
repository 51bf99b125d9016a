"""RabbitMQ: the trace travels in the AMQP message headers (pika and aio-pika).

    rabbitmq.publish(channel, "", "orders", b"...")            # pika: PRODUCER "publish orders"
    channel.basic_consume("orders", rabbitmq.consumer(on_message, queue="orders"))
    for method, props, body in channel.consume("orders"):      # or any delivery got another way:
        with rabbitmq.process(method, props, queue="orders"):  # CONSUMER "process orders"
            ...

    await rabbitmq.publish(exchange, aio_pika.Message(b"..."), "orders")     # aio-pika
    await queue.consume(rabbitmq.consumer(handler, queue="orders"))
    with rabbitmq.process(message, queue="orders"): ...       # an aio-pika IncomingMessage

Names and attributes follow the messaging conventions for RabbitMQ: the destination is
``{exchange}:{routing key}`` when publishing (``amq.default`` for the default exchange with no
routing key) and ``{exchange}:{routing key}:{queue}`` when consuming (empty parts left out, the
routing key once when it is the queue's name); ``messaging.rabbitmq.destination.routing_key``,
``messaging.rabbitmq.message.delivery_tag``, ``messaging.message.id`` and
``messaging.message.conversation_id`` (the AMQP message and correlation ids) are recorded.

The OpenTelemetry contrib pika / aio-pika instrumentations are not used: they name spans after
the pre-1.24 conventions (``<destination> send`` / ``<destination> receive``, marking every
publish as a temporary destination), pika's doubles the PRODUCER span of a BlockingChannel
publish, and its ``channel.consume()`` generator leaves the last message's context current after
the loop, so unrelated work joins that trace. Do not enable them alongside this module.

Needs the ``rabbitmq`` extra (pika, aio-pika).
"""

from __future__ import annotations

import copy
import functools
import inspect
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from threadline.integrations import messaging
from threadline.seam import Relation

__all__ = ["consumer", "destination", "process", "process_batch", "publish"]

SYSTEM = "rabbitmq"


def destination(exchange: str, routing_key: str = "", queue: str | None = None) -> str:
    """``messaging.destination.name`` for a publish (queue None) or a delivery from a queue:
    ``exchange``, ``routing_key`` (left out when it is the queue's name) and ``queue``, joined
    with ":"."""
    if queue is None:
        return ":".join(p for p in (exchange, routing_key) if p) or "amq.default"
    if routing_key == queue:
        routing_key = ""
    return ":".join(p for p in (exchange, routing_key, queue) if p)


def _server(connection_params: Any) -> dict[str, Any]:
    try:
        return {"server.address": connection_params.host, "server.port": connection_params.port}
    except AttributeError:
        return {}


def _pika_server(channel: Any) -> dict[str, Any]:
    impl = getattr(channel, "connection", None)
    impl = getattr(impl, "_impl", impl)  # BlockingConnection wraps the real one
    return _server(getattr(impl, "params", None))


def _aio_server(exchange: Any) -> dict[str, Any]:
    try:
        url = exchange.channel._connection.url  # noqa: SLF001 - aio-pika keeps it there
        return {"server.address": url.host, "server.port": url.port or 5672}
    except Exception:  # noqa: BLE001 - a closed channel, another client version: no address
        return {}


def _message_attributes(routing_key: str, props: Any, delivery_tag: Any = None) -> dict:
    return {
        "messaging.rabbitmq.destination.routing_key": routing_key or None,
        "messaging.rabbitmq.message.delivery_tag": delivery_tag,
        "messaging.message.conversation_id": getattr(props, "correlation_id", None),
    }


# -- publish -----------------------------------------------------------------------------------


def publish(target: Any, *args: Any, **kwargs: Any) -> Any:
    """Publish inside a PRODUCER "publish <destination>" span, the trace in the headers.

    pika (``BlockingChannel`` or ``Channel``): ``publish(channel, exchange, routing_key, body,
    properties=None, mandatory=False)``, as ``channel.basic_publish``.
    aio-pika: ``await publish(exchange, message, routing_key, **publish_kwargs)``, as
    ``exchange.publish``. The caller's properties / message are not changed: a copy carrying the
    headers is published. ``target`` is the pika channel or the aio-pika exchange; ``args`` and
    ``kwargs`` are the rest of the arguments above."""
    if _is_aio_exchange(target):
        return _apublish(target, *args, **kwargs)
    return _publish(target, *args, **kwargs)


def _sending(exchange: str, routing_key: str, props: Any, server: dict) -> messaging.Outgoing:
    """The PRODUCER span of one publish; props is pika's BasicProperties or aio-pika's Message."""
    return messaging.publish(
        SYSTEM,
        destination(exchange, routing_key),
        props.headers,
        operation="publish",
        message_id=props.message_id,
        attributes={**_message_attributes(routing_key, props), **server},
    )


def _is_aio_exchange(target: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(target, "publish", None))


def _publish(
    channel: Any,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Any = None,
    mandatory: bool = False,
) -> Any:
    if not callable(getattr(channel, "basic_publish", None)):
        raise TypeError(
            f"publish takes a pika channel or an aio-pika exchange, not {type(channel).__name__}"
        )
    import pika

    props = copy.copy(properties) if properties is not None else pika.BasicProperties()
    with _sending(exchange, routing_key, props, _pika_server(channel)) as out:
        props.headers = out.headers
        return channel.basic_publish(exchange, routing_key, body, props, mandatory)


async def _apublish(exchange: Any, message: Any, routing_key: str, **kwargs: Any) -> Any:
    message = copy.copy(message)
    if message.message_id is None and kwargs.get("mandatory", True):
        # aiormq would make one up inside publish (to match returns); made here, the span has it
        message.message_id = uuid.uuid4().hex
    with _sending(exchange.name, routing_key, message, _aio_server(exchange)) as out:
        message.headers = out.headers
        return await exchange.publish(message, routing_key, **kwargs)


# -- consume -----------------------------------------------------------------------------------


def _delivery(delivery: Any, properties: Any) -> tuple[str, str, Any, Any]:
    """(exchange, routing key, delivery tag, properties-like) of a pika delivery (Basic.Deliver
    or Basic.GetOk with its BasicProperties) or an aio-pika IncomingMessage."""
    if properties is None and hasattr(delivery, "headers"):  # aio-pika: all in one
        properties = delivery
    return (
        getattr(delivery, "exchange", "") or "",
        getattr(delivery, "routing_key", "") or "",
        getattr(delivery, "delivery_tag", None),
        properties,
    )


def process(
    delivery: Any,
    properties: Any = None,
    *,
    queue: str | None = None,
    relation: Relation | None = None,
):
    """``with process(method, properties, queue=...)`` (pika) or ``with process(message,
    queue=...)`` (aio-pika): the block in a CONSUMER "process <destination>" span continuing the
    publisher's trace (``relation="link"`` / ``"none"`` on request). Messages from untraced
    publishers are processed in a new trace. ``delivery`` is pika's Basic.Deliver or
    Basic.GetOk, with its ``properties``, or aio-pika's IncomingMessage alone; ``queue`` is the
    queue it was taken from, for the destination's name."""
    if not hasattr(delivery, "routing_key"):
        raise TypeError(
            "process takes a pika delivery (Basic.Deliver / Basic.GetOk) and its properties, or "
            f"an aio-pika IncomingMessage, not {type(delivery).__name__}"
        )
    exchange, routing_key, tag, props = _delivery(delivery, properties)
    return messaging.process(
        getattr(props, "headers", None),
        SYSTEM,
        destination(exchange, routing_key, queue or ""),
        relation=relation,
        message_id=getattr(props, "message_id", None),
        attributes=_message_attributes(routing_key, props, tag),
    )


def process_batch(deliveries: Iterable[Any], *, queue: str | None = None):
    """One CONSUMER "process <destination>" span for many deliveries (pika ``(method,
    properties, body)`` tuples or aio-pika messages), linked to each publisher. ``queue`` is
    the queue they were taken from, as for process()."""
    headers, names = [], set()
    for d in deliveries:
        exchange, routing_key, _, props = (
            _delivery(d, None) if hasattr(d, "headers") else _delivery(d[0], d[1])
        )
        headers.append(getattr(props, "headers", None))
        names.add(destination(exchange, routing_key, queue or ""))
    # One destination for all goes on the span; mixed ones are named after the queue.
    name = names.pop() if len(names) == 1 else (queue or "")
    return messaging.process_batch(headers, SYSTEM, name)


def consumer(
    callback: Callable[..., Any], *, queue: str | None = None, relation: Relation | None = None
) -> Callable[..., Any]:
    """The callback, each delivery processed in its own CONSUMER span.

    pika: ``channel.basic_consume(queue, consumer(on_message, queue=queue))`` with
    ``on_message(channel, method, properties, body)``. aio-pika: ``await
    queue.consume(consumer(handler, queue=queue.name))`` with ``async def handler(message)``.
    ``queue`` and ``relation`` are as for process()."""
    if not callable(callback):
        raise TypeError(f"consumer takes a callback, not {type(callback).__name__}")
    if inspect.iscoroutinefunction(callback):

        @functools.wraps(callback)
        async def on_message_async(message: Any) -> Any:
            with process(message, queue=queue, relation=relation):
                return await callback(message)

        return on_message_async

    @functools.wraps(callback)
    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> Any:
        with process(method, properties, queue=queue, relation=relation):
            return callback(channel, method, properties, body)

    return on_message
