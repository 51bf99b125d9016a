"""Event-sourced systems: the trace of the command that appended an event travels in the event's
metadata, so the work the event causes later (projections, process managers, reactors, in other
processes, long after) is reachable from it.

    with events.append("orders") as out:                    # PRODUCER "send orders"
        for e in new_events:                                 # metadata["trace"] = the send span
            store.append("orders", e.data, metadata=out.metadata(e.metadata))

    with events.handle(row.metadata, "project orders"):     # CONSUMER: a new trace, linked to
        project(row)                                         # the send span of the command
    with events.handle_batch([r.metadata for r in rows], "project orders"):
        project_all(rows)                                    # one span linked to every command

The carrier (W3C ``traceparent``, and ``tracestate`` / ``baggage`` when present) is a JSON-able
dict under ``metadata["trace"]`` (``KEY``); the rest of the metadata is the user's, untouched.
``stamp(metadata)`` writes the trace of now without making a span, the cheapest way.

Handling links to the appending span by default (``relation="link"``): events are handled later,
in batches, and replayed, so continuing the command's trace would make traces without end and
attach every replay to an old trace. ``relation="child"`` continues it (a synchronous reactor);
``replay=True`` starts clean whatever the relation, so rebuilding a projection leaves the old
traces as they were. Events written before tracing was on are handled in a new trace of their
own; garbled metadata too (logged once, counted in ``tl.export_stats()["garbled_handoffs"]``):
nothing here raises into the handler except for wrong arguments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from threadline import seam, semconv
from threadline.integrations import messaging
from threadline.seam import Handoff, Relation, batch_span, check_name, inject

__all__ = ["KEY", "Append", "append", "handle", "handle_batch", "handoff_of", "stamp"]

KEY = "trace"  # where the carrier lives in an event's metadata
SYSTEM = "eventstore"  # messaging.system unless told: the store is a log of messages


def _with_carrier(metadata: Mapping[str, Any] | None, carrier: dict[str, str]) -> dict[str, Any]:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, not {type(metadata).__name__}")
    # A trace copied in from another event is stale: the event carries the one of now, or none.
    out = {k: v for k, v in (metadata or {}).items() if k != KEY}
    if carrier:
        out[KEY] = carrier
    return out


def stamp(metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of metadata with the trace of now under ``KEY`` (no span is made). With nothing
    current, the copy has no ``KEY``: the event is written as an untraced program would."""
    return _with_carrier(metadata, inject())


class Append:
    """Events being appended inside a PRODUCER span: ``metadata(m)`` is ``m`` with that span's
    carrier under ``KEY``, for each event. ``count`` (the calls to ``metadata()``, or set it)
    becomes ``messaging.batch.message_count`` when it is not 1; ``set_id(id)`` records
    ``messaging.message.id`` for a single event. Made by append(), over the ``outgoing``
    ``messaging.Outgoing`` whose span it is."""

    __slots__ = ("count", "_outgoing")

    def __init__(self, outgoing: messaging.Outgoing) -> None:
        self._outgoing = outgoing
        self.count = 0

    @property
    def span(self) -> trace.Span:
        return self._outgoing.span

    def metadata(self, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.count += 1
        return _with_carrier(metadata, dict(self._outgoing.headers))

    def set_id(self, event_id: Any) -> None:
        self._outgoing.set_id(event_id)

    def __enter__(self) -> Append:
        self._outgoing.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        span = self._outgoing.span
        if self.count != 1 and span.is_recording():
            span.set_attribute("messaging.batch.message_count", self.count)
        self._outgoing.__exit__(exc_type, exc, tb)


def append(
    stream: str, *, system: str = SYSTEM, attributes: Mapping[str, Any] | None = None
) -> Append:
    """``with append(stream) as out:`` — a PRODUCER span "send <stream>" around appending
    events; write ``out.metadata(event_metadata)`` with each of them. ``stream`` is also
    ``messaging.destination.name``, ``system`` is ``messaging.system`` ("eventstore" unless
    given), and ``attributes`` are added to the span."""
    return Append(messaging.publish(system, stream, None, operation="send", attributes=attributes))


# -- the handling side -----------------------------------------------------------------------


def handoff_of(metadata: Any) -> Handoff:
    """The handoff in an event's metadata: a mapping (a JSONB column as read), its JSON text, or
    None. No ``KEY`` is an empty handoff (a new trace); anything unreadable too, logged once and
    counted."""
    if metadata is None:
        return Handoff(carrier={})
    if isinstance(metadata, str | bytes | bytearray):
        try:
            metadata = json.loads(metadata)
        except ValueError as exc:
            seam.count_garbled(f"event metadata is not JSON ({exc})")
            return Handoff(carrier={})
    if not isinstance(metadata, Mapping):
        seam.count_garbled(f"event metadata must be a mapping, got {type(metadata).__name__}")
        return Handoff(carrier={})
    carrier = metadata.get(KEY)
    if carrier is None:
        return Handoff(carrier={})
    if not isinstance(carrier, Mapping):
        seam.count_garbled(
            f"event metadata[{KEY!r}] must be a mapping, got {type(carrier).__name__}"
        )
        return Handoff(carrier={})
    return messaging.carrier_of(carrier)


def _attributes(
    system: str,
    stream: str | None,
    event_id: Any,
    replay: bool,
    attributes: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if not isinstance(system, str) or not system:
        raise ValueError(f"system must be a non-empty string, not {system!r}")
    if stream is not None and not isinstance(stream, str):
        raise TypeError(f"stream must be a string, not {type(stream).__name__}")
    if not isinstance(replay, bool):
        raise TypeError(f"replay must be True or False, not {replay!r}")
    attrs: dict[str, Any] = {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
    }
    if stream:
        attrs["messaging.destination.name"] = stream
    if event_id is not None and event_id != "":
        attrs["messaging.message.id"] = str(event_id)
    if replay:
        attrs[semconv.EVENT_REPLAY] = True
    if attributes:
        attrs.update(attributes)
    return attrs


def handle(
    metadata: Any,
    name: str,
    *,
    relation: Relation = "link",
    replay: bool = False,
    stream: str | None = None,
    event_id: Any = None,
    system: str = SYSTEM,
    attributes: Mapping[str, Any] | None = None,
) -> seam.resume:
    """``with handle(event_metadata, name) as span:`` — the block runs in a CONSUMER span:
    a new trace linked to the span that appended the event (``relation="link"``), a child of it
    (``"child"``) or a clean one (``"none"``, and always with ``replay=True``). ``stream`` and
    ``event_id`` become ``messaging.destination.name`` / ``messaging.message.id``. The previous
    context is current again after the block. ``metadata`` is what handoff_of() reads, ``name``
    the span's name, ``system`` its ``messaging.system`` ("eventstore" unless given), and
    ``attributes`` are added to it."""
    if relation not in seam.RELATIONS:  # checked even when a replay overrides it
        raise ValueError(f"relation must be one of {seam.RELATIONS}, not {relation!r}")
    attrs = _attributes(system, stream, event_id, replay, attributes)
    return seam.resume(
        None if replay else handoff_of(metadata),
        name,
        relation="none" if replay else relation,
        kind=SpanKind.CONSUMER,
        attributes=attrs,
    )


def handle_batch(
    metadatas: Iterable[Any],
    name: str,
    *,
    replay: bool = False,
    stream: str | None = None,
    system: str = SYSTEM,
    attributes: Mapping[str, Any] | None = None,
):
    """``with handle_batch([metadata, ...], name) as span:`` — one CONSUMER span for many
    events, under the handler's own context, linked to each distinct appending span (at most
    ``semconv.MAX_LINKS``; ``semconv.LINKS_DROPPED`` counts the rest), with
    ``messaging.batch.message_count`` (threadline.seam.batch_span()). A replay links none.
    ``metadatas``: each event's metadata, as handle() takes it; ``name``, ``stream``, ``system``
    and ``attributes`` are as for handle()."""
    check_name(name)
    attrs = _attributes(system, stream, None, replay, attributes)
    handoffs = [handoff_of(m) for m in metadatas]
    return batch_span(
        name, [] if replay else handoffs, message_count=len(handoffs), attributes=attrs
    )
