"""The consumer span of a batch: one span for many messages, linked to each of their senders.

OpenTelemetry's messaging conventions for a batch receive: the span runs under the consumer's own
context (a batch has many parents, so it is nobody's child) and links every message's sender.
Links are de-duplicated (one per distinct sending span, in the order first seen) and capped at
semconv.MAX_LINKS, the SDK's default span link limit; how many distinct senders did not fit is
recorded in semconv.LINKS_DROPPED. The mailboxes boundary, the broker integrations and the
event-sourcing integration all build their batch spans here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from threadline._handoff import Handoff
from threadline._spans import start_span
from threadline.semconv import LINKS_DROPPED, MAX_LINKS

BATCH_MESSAGE_COUNT = "messaging.batch.message_count"  # the OTel messaging convention's name


def sender_links(handoffs: Iterable[Handoff]) -> tuple[list[trace.SpanContext], int]:
    """The distinct valid senders among handoffs, in order, at most MAX_LINKS of them, and how
    many more there were (for semconv.LINKS_DROPPED)."""
    senders: dict[tuple[int, int], trace.SpanContext] = {}
    for h in handoffs:
        sc = h.span_context
        if sc.is_valid:
            senders.setdefault((sc.trace_id, sc.span_id), sc)
    links = list(senders.values())
    return links[:MAX_LINKS], max(0, len(links) - MAX_LINKS)


def batch_span(
    name: str,
    handoffs: Iterable[Handoff],
    *,
    message_count: int,
    attributes: Mapping[str, Any] | None = None,
):
    """A context manager for the CONSUMER span `name` over a batch of `message_count` messages,
    linked to the distinct senders among `handoffs` (pass none to link none: a replay, say).

    Args:
        name: the span name ("process orders").
        handoffs: what each message carried (messages that carried nothing may be left out).
        message_count: how many messages the batch holds (messaging.batch.message_count).
        attributes: more span attributes; the batch's own are added to a copy.
    """
    links, dropped = sender_links(handoffs)
    attrs = dict(attributes or {})
    attrs[BATCH_MESSAGE_COUNT] = message_count
    if dropped:
        attrs[LINKS_DROPPED] = dropped
    return start_span(name, attributes=attrs, kind=SpanKind.CONSUMER, links=links)
