"""The three OpenTelemetry set-ups threadline must work on, as users write them. Each exports
OTLP/HTTP to $INTEROP_ENDPOINT (the test's collector)."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def _exporter() -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=os.environ["INTEROP_ENDPOINT"] + "/v1/traces")


def own() -> None:
    """The program's own provider."""
    provider = TracerProvider(resource=Resource.create({"service.name": "interop-own"}))
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)


def logfire_setup() -> None:
    """Logfire, sending nowhere but to the collector."""
    import logfire

    logfire.configure(
        send_to_logfire=False,
        service_name="interop-logfire",
        console=False,
        distributed_tracing=True,  # contexts arrive from other processes: expected, not a warning
        additional_span_processors=[BatchSpanProcessor(_exporter())],
    )


def failing() -> None:
    """A set-up that raises: the child must run its tasks untraced, not die."""
    raise RuntimeError("no collector configured for this child")
