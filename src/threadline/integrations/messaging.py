"""The messaging conventions for brokers whose messages carry headers: what every broker
integration (rabbitmq, redis, nats, mqtt) is built on.

    with messaging.publish("rabbitmq", "orders", headers) as out:   # PRODUCER "send orders"
        broker_send(body, headers=out.headers)                       # + traceparent, tracestate, baggage
    with messaging.process(headers, "rabbitmq", "orders"):          # CONSUMER "process orders",
        handle(body)                                                 # a child of the send span
    with messaging.process_batch([h1, h2], "redis", "orders"):      # one CONSUMER span linked
        handle_all(bodies)                                           # to every sender

Spans follow the OpenTelemetry messaging semantic conventions (development status): the name is
``{messaging.operation.name} {destination}``; ``messaging.system``,
``messaging.destination.name``, ``messaging.operation.type`` (send | receive | process) and
``messaging.operation.name`` are set when the span starts; ``messaging.message.id`` when known,
``messaging.batch.message_count`` on batches.

A single message's process span is a child of the message's creation context (the send span)
by default; ``relation="link"`` starts a new trace linked to it, ``relation="none"`` a clean one.
A message without readable headers (an untraced producer, garbled values) is processed in a new
trace of its own, never in whatever happens to be current in the consumer, and the consumer is
back to its previous context when the block ends: a reused consumer never leaks one message's
trace into the next. Garbled headers are logged once and counted in
``tl.export_stats()["garbled_handoffs"]``; nothing here raises into the user's program except
for wrong arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from threadline import seam
from threadline.seam import (
    Handoff,
    Relation,
    as_handoff,
    batch_span,
    inject,
    start_span,
)

__all__ = [
    "Outgoing",
    "carrier_of",
    "message_attributes",
    "process",
    "process_batch",
    "publish",
    "strip",
    "text",
]

OPERATION_TYPES = {"send": "send", "publish": "send", "request": "send", "process": "process"}


def _check_names(system: Any, destination: Any) -> None:
    if not isinstance(system, str) or not system:
        raise ValueError(f"system must be a non-empty string, not {system!r}")
    if not isinstance(destination, str):
        raise TypeError(f"destination must be a string, not {type(destination).__name__}")


def message_attributes(
    system: str,
    destination: str,
    operation: str,
    operation_type: str,
    message_id: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The messaging semantic-convention attributes of one span: ``messaging.system``,
    ``messaging.destination.name``, ``messaging.operation.name`` (``operation``, such as
    "publish") and ``.type`` (``operation_type``: "send", "receive" or "process"), and
    ``messaging.message.id`` when ``message_id`` is given; ``extra`` adds to them (None values
    left out)."""
    attrs: dict[str, Any] = {
        "messaging.system": system,
        "messaging.destination.name": destination,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
    }
    if message_id is not None and message_id != "":
        attrs["messaging.message.id"] = text(message_id)
    if extra:
        attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def text(value: Any) -> str:
    """``value``, a broker's name, id or header, as text (bytes decoded as UTF-8, never
    raising)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def span_name(operation: str, destination: str) -> str:
    return f"{operation} {destination}" if destination else operation


# -- the carrier in a message's headers ------------------------------------------------------


def carrier_of(headers: Any) -> Handoff:
    """The handoff in a message's headers: any mapping (str or bytes keys, str / bytes / list
    values) or a sequence of (key, value) pairs. Anything unreadable is an empty handoff
    (a new trace), logged once and counted."""
    if not headers:
        return Handoff(carrier={})
    try:
        picked: dict[str, Any] = {}
        keys = seam.carrier_keys()
        for key, value in headers.items() if isinstance(headers, Mapping) else headers:
            k = text(key).lower()
            if k in keys:
                if k in picked:  # the same key twice (MQTT user properties may repeat)
                    picked[k] = f"{text(picked[k])},{text(value)}"
                else:
                    picked[k] = value
        h = as_handoff(picked)
        h.context  # noqa: B018 - parse now, inside the guard: a garbled value is counted here
        return h
    except Exception as exc:  # noqa: BLE001 - tracing never breaks the consumer: a new trace
        seam.count_garbled(f"message headers could not be read ({type(exc).__name__}: {exc})")
        return Handoff(carrier={})


def strip(headers: Mapping[Any, Any]) -> dict[Any, Any]:
    """headers without the trace carrier keys (str or bytes, any case)."""
    keys = seam.carrier_keys()
    return {k: v for k, v in headers.items() if text(k).lower() not in keys}


# -- the producer side -----------------------------------------------------------------------


class Outgoing:
    """A message being published: ``headers`` (the user's, with the carrier of the send span
    added) go out with it. ``set_id(id)`` records ``messaging.message.id`` once the broker has
    told it. Made by publish(), around ``scope``, the span's context manager."""

    __slots__ = ("headers", "span", "_scope")

    def __init__(self, headers: dict[str, Any], scope: Any) -> None:
        self.headers = headers
        self._scope = scope
        self.span: trace.Span = trace.INVALID_SPAN

    def set_id(self, message_id: Any) -> None:
        if message_id is not None and self.span.is_recording():
            self.span.set_attribute("messaging.message.id", text(message_id))

    def __enter__(self) -> Outgoing:
        self.span = self._scope.__enter__()
        # The carrier keys the user passed are replaced: the message carries the send span.
        keys = seam.carrier_keys()
        self.headers = {k: v for k, v in self.headers.items() if text(k).lower() not in keys}
        inject(self.headers)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._scope.__exit__(exc_type, exc, tb)


def publish(
    system: str,
    destination: str,
    headers: Mapping[str, Any] | None = None,
    *,
    operation: str = "send",
    message_id: Any = None,
    kind: SpanKind = SpanKind.PRODUCER,
    attributes: Mapping[str, Any] | None = None,
) -> Outgoing:
    """``with publish(system, destination, headers) as out:`` — a PRODUCER span
    "<operation> <destination>" around the block; ``out.headers`` is a copy of headers with
    traceparent / tracestate / baggage of that span (the user's mapping is left as it was).
    ``system`` and ``destination`` become ``messaging.system`` and
    ``messaging.destination.name``; ``message_id``, when known before sending,
    ``messaging.message.id``; ``kind`` is the span's kind (PRODUCER, or CLIENT for a request);
    ``attributes`` are added to the span."""
    _check_names(system, destination)
    if headers is not None and not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping, not {type(headers).__name__}")
    op_type = OPERATION_TYPES.get(operation, "send")
    attrs = message_attributes(system, destination, operation, op_type, message_id, attributes)
    scope = start_span(span_name(operation, destination), attributes=attrs, kind=kind)
    return Outgoing(dict(headers or {}), scope)


# -- the consumer side -----------------------------------------------------------------------


def process(
    headers: Any,
    system: str,
    destination: str,
    *,
    relation: Relation | None = None,
    operation: str = "process",
    message_id: Any = None,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
) -> seam.resume:
    """``with process(headers, system, destination) as span:`` — the block runs in a CONSUMER
    span "<operation> <destination>": a child of the sender's span (``relation="child"``), a new
    trace linked to it (``"link"``) or a clean one (``"none"``). Headers that carry no readable
    context give a new trace. The previous context is current again after the block.
    ``headers`` are what carrier_of() reads; ``system``, ``destination``, ``message_id`` and
    ``attributes`` are as for publish(); ``kind`` is the span's kind (CONSUMER, or SERVER for a
    request's handler)."""
    _check_names(system, destination)
    attrs = message_attributes(system, destination, operation, "process", message_id, attributes)
    return seam.resume(
        carrier_of(headers),
        span_name(operation, destination),
        relation=relation or "child",
        kind=kind,
        attributes=attrs,
    )


def process_batch(
    headers: Iterable[Any],
    system: str,
    destination: str,
    *,
    operation: str = "process",
    attributes: Mapping[str, Any] | None = None,
):
    """``with process_batch([headers, ...], system, destination) as span:`` — one CONSUMER
    span for many messages, under the consumer's own context, linked to each distinct sender
    (at most ``semconv.MAX_LINKS``; ``semconv.LINKS_DROPPED`` counts the rest) with
    ``messaging.batch.message_count`` (threadline.seam.batch_span()). ``headers``: each
    message's, as carrier_of() reads them; ``operation`` names the span; ``system``,
    ``destination`` and ``attributes`` are as for publish()."""
    _check_names(system, destination)
    handoffs = [carrier_of(h) for h in headers]
    return batch_span(
        span_name(operation, destination),
        handoffs,
        message_count=len(handoffs),
        attributes=message_attributes(system, destination, operation, "process", None, attributes),
    )
