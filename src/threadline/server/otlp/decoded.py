"""What every OTLP decoder returns, and the errors and rules they share.

Malformed input raises `OTLPError`, whose message names the offending field by its JSON path.
Spans that parse but cannot be stored (an all-zero trace or span id) are not errors: they come
back counted in `Decoded.rejected` with the reason, for OTLP's partial success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.server.model import Span

if TYPE_CHECKING:
    from threadline.server.storage.layout import Rows

# the latest time a span may have: the store keeps nanoseconds in a signed 64-bit integer (2262)
MAX_TIME_NS = (1 << 63) - 1
ZERO_TRACE = "0" * 32
ZERO_SPAN = "0" * 16


class OTLPError(ValueError):
    """The payload is not a valid OTLP trace export (answered with 400 / INVALID_ARGUMENT)."""


@dataclass(slots=True)
class Decoded:
    """One decoded export: its accepted spans (`spans`, from the JSON and reference decoders) or
    their span table rows (`columns`, on the ingest path), and the spans it rejected, with why."""

    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    columns: Rows | None = None  # the accepted spans as span table rows, on the ingest path

    def accept(self, span: Span, ri: int, si: int, pi: int) -> None:
        if span.trace_id == ZERO_TRACE or span.span_id == ZERO_SPAN:
            self.reject("trace id" if span.trace_id == ZERO_TRACE else "span id", ri, si, pi)
            return
        self.spans.append(span)

    def reject(self, which: str, ri: int, si: int, pi: int) -> None:
        self.rejected += 1
        if len(self.reasons) < 5:  # enough to explain, bounded
            where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
            self.reasons.append(f"{where}: all-zero {which} is invalid")

    @property
    def rows(self) -> Rows:
        """The accepted spans as span table rows, which every decoder on the ingest path sets."""
        if self.columns is None:
            raise ValueError("these spans were decoded without their rows")
        return self.columns

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        return f"rejected {self.rejected} span(s): " + "; ".join(self.reasons)


def check_time(ns: int, where: str) -> int:
    """`ns` when the store can hold it; OTLPError naming `where` beyond MAX_TIME_NS."""
    if ns > MAX_TIME_NS:
        raise OTLPError(f"{where}: {ns} is past the latest time stored (2^63-1 ns, in 2262)")
    return ns


def service_name(resource: dict[str, Any]) -> str:
    """The span's service: the resource's `service.name`, else OTLP's "unknown_service"."""
    name = resource.get("service.name")
    return name if isinstance(name, str) and name else "unknown_service"
