"""Spans for the store tests: one signature every engine's tests build their rows with."""

from threadline.server.model import Span

T1, T2 = "ab" * 16, "0f" * 16


def span(
    trace_id=T1, span_id="cd" * 8, parent="", name="op", service="a", start=1_000, end=2_000, **kw
):
    return Span(
        trace_id,
        span_id,
        parent,
        name,
        kw.pop("kind", 2),
        start,
        end,
        service,
        resource={"service.name": service, **kw.pop("resource", {})},
        **kw,
    )
