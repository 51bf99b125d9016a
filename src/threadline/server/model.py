"""The server's span: what stores return on reads, analysis and the query API work on, and
the OTLP/JSON and reference decoders produce (protobuf ingest skips it: it decodes straight into
the span table's rows, storage/layout.py).

Ids are lowercase hex strings ("" for an absent parent). Kinds, status codes and flags keep their
OTLP integer values, so nothing is lost between OTLP and the store. Attribute values are Python
values: str, bool, int, float, bytes, list (array) and dict (kvlist), nested as OTLP allows.

One span model, two views. This Span is the model: it is what OTLP carries, field for field
(event times, trace state, flags, dropped counts), so analysis works on it. The testing plugin's
`threadline.testing.CapturedSpan` is a view of the same span for assertions (kind and status as
names, `parent_id=None` for a root, events as (name, attributes)); it stays its own class
because the plugin depends on the core only and cannot import the server. The two convert here,
in one place: `as_span` (every analysis function takes either, and converts on the way in) and
`to_captured` (`Client.captured`, for the `traces` fixture).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from threadline.semconv import PENDING
from threadline.testing.captured import OTLP_KINDS, OTLP_STATUS, CapturedSpan

# OTLP Span.SpanKind
KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
KIND_NAMES = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
# OTLP Status.StatusCode
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(slots=True)
class Event:
    time_ns: int
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0


@dataclass(slots=True)
class Link:
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0
    flags: int = 0


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    service: str
    status_code: int = STATUS_UNSET
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    scope_attributes: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    trace_state: str = ""
    flags: int = 0
    dropped_attributes_count: int = 0
    dropped_events_count: int = 0
    dropped_links_count: int = 0
    resource_schema_url: str = ""
    scope_schema_url: str = ""
    resource_dropped_attributes_count: int = 0  # Resource.dropped_attributes_count
    scope_dropped_attributes_count: int = 0  # InstrumentationScope.dropped_attributes_count

    @property
    def pending(self) -> bool:
        """Announced at start and never completed (the worker died, or it is still running)."""
        return bool(self.attributes.get(PENDING))

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


_KIND_OF = {name: code for code, name in OTLP_KINDS.items() if code}  # INTERNAL is 1, not 0
_STATUS_OF = {name: code for code, name in OTLP_STATUS.items()}


AnySpan = Span | CapturedSpan  # what analysis functions take


def as_span(span: Span | CapturedSpan) -> Span:
    """The span as the model, from either view. A CapturedSpan keeps no event times and no
    scope version: its events take time 0."""
    if isinstance(span, Span):
        return span
    if not isinstance(span, CapturedSpan):
        raise TypeError(f"expected a threadline Span or CapturedSpan, not {type(span).__name__}")
    try:
        kind, status = _KIND_OF[span.kind], _STATUS_OF[span.status]
    except KeyError:
        raise ValueError(
            f"span {span.span_id} has kind {span.kind!r} and status {span.status!r}; kinds are "
            f"{', '.join(_KIND_OF)} and statuses {', '.join(_STATUS_OF)}"
        ) from None
    return Span(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_id or "",
        name=span.name,
        kind=kind,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        service=span.service,
        status_code=status,
        status_message=span.status_message,
        attributes=span.attributes,
        resource=span.resource,
        scope_name=span.scope,
        events=[Event(0, name, attrs) for name, attrs in span.events],
        links=[Link(t, s, attributes=attrs) for t, s, attrs in span.links],
    )


def as_spans(spans: Iterable[Span | CapturedSpan]) -> list[Span]:
    return [as_span(s) for s in spans]


def to_captured(span: Span) -> CapturedSpan:
    """The span as the testing plugin's view of it."""
    return CapturedSpan(
        name=span.name,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_id=span.parent_span_id or None,
        kind=OTLP_KINDS.get(span.kind, "INTERNAL"),
        status=OTLP_STATUS.get(span.status_code, "UNSET"),
        status_message=span.status_message,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        attributes=span.attributes,
        resource=span.resource,
        events=[(e.name, e.attributes) for e in span.events],
        links=[(lk.trace_id, lk.span_id, lk.attributes) for lk in span.links],
        scope=span.scope_name,
    )
