"""CapturedSpan: one finished span in plain values, whichever way it reached the capture (a span
processor in this process, or the loopback collector for other processes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.semconv import PENDING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

# OTLP's integer span kinds and status codes as CapturedSpan names them (unspecified: INTERNAL)
OTLP_KINDS = {0: "INTERNAL", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
OTLP_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass
class CapturedSpan:
    """One finished span, from this process or another, in plain values (ids in lowercase hex)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str  # INTERNAL | SERVER | CLIENT | PRODUCER | CONSUMER
    status: str  # UNSET | OK | ERROR
    status_message: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # trace, span, attrs
    scope: str = ""

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", "?"))

    @property
    def pid(self) -> int | None:
        return self.resource.get("process.pid")

    @property
    def pending(self) -> bool:
        """True for a span announced at start whose completed version never arrived: the work
        stopped mid-span (a killed process)."""
        return self.attributes.get(PENDING) is True

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def event(self, name: str) -> dict[str, Any] | None:
        """Attributes of the first event with this name, or None."""
        return next((attrs for n, attrs in self.events if n == name), None)

    def __repr__(self) -> str:
        pending = " PENDING" if self.pending else ""
        return f"<{self.name!r} {self.kind}{pending} service={self.service} span={self.span_id} parent={self.parent_id}>"

    @classmethod
    def from_readable(cls, s: ReadableSpan) -> CapturedSpan:
        ctx = s.context
        if ctx is None:  # the SDK gives every span it ends a context
            raise ValueError(f"span {s.name!r} has no context")
        return cls(
            name=s.name,
            trace_id=format(ctx.trace_id, "032x"),
            span_id=format(ctx.span_id, "016x"),
            parent_id=format(s.parent.span_id, "016x") if s.parent else None,
            kind=s.kind.name,
            status=s.status.status_code.name,
            status_message=s.status.description or "",
            start_ns=s.start_time or 0,
            end_ns=s.end_time or 0,
            attributes=dict(s.attributes or {}),
            resource=dict(s.resource.attributes),
            events=[(e.name, dict(e.attributes or {})) for e in s.events],
            links=[
                (
                    format(lk.context.trace_id, "032x"),
                    format(lk.context.span_id, "016x"),
                    dict(lk.attributes or {}),
                )
                for lk in s.links
            ],
            scope=s.instrumentation_scope.name if s.instrumentation_scope else "",
        )
