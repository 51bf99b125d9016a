"""The server's span: what stores return on reads, analysis and the query API work on, and
the OTLP/JSON and reference decoders produce (protobuf ingest skips it: it decodes straight into
the span table's rows, storage/layout.py).

Ids are lowercase hex strings ("" for an absent parent). Kinds, status codes and flags keep their
OTLP integer values, so nothing is lost between OTLP and the store. Attribute values are Python
values: str, bool, int, float, bytes, list (array) and dict (kvlist), nested as OTLP allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from threadline.semconv import PENDING

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
