"""exporter="console": trees printed as local roots end."""

from __future__ import annotations

import io

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from threadline._console import ConsoleTreeExporter


def test_a_span_that_ends_after_its_parents_tree_names_that_parent():
    out = io.StringIO()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter(out)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        with tracer.start_as_current_span("send orders") as send:
            pass
    # A consumer that runs after the sender's tree was printed (a queue, another thread).
    parent = trace.set_span_in_context(send)
    with tracer.start_as_current_span("process orders", context=parent) as process:
        pass
    trace_id = f"{send.get_span_context().trace_id:032x}"
    first, second = out.getvalue().split("trace ")[1:]
    assert first.startswith(trace_id) and "└─ send orders" in first
    assert second.startswith(trace_id)
    line = second.splitlines()[1]
    send_id = f"{send.get_span_context().span_id:016x}"
    assert line.startswith("  process orders")
    assert line.endswith(f"(child of 'send orders' {send_id}, printed above)")
    assert process.parent.span_id == send.get_span_context().span_id
