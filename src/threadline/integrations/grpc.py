"""gRPC: the OpenTelemetry contrib instrumentation of grpcio, sync and ``grpc.aio``, server and
client, as ``tl.instrument()`` wires it.

A client call is a CLIENT span named after the method (``/package.Service/Method``) that carries
its context in the call's metadata; the server's SERVER span of the same name continues that
trace. Servers and channels created after ``tl.instrument()`` are instrumented.

OTLP's own gRPC services (an exporter sending spans, ``threadline serve`` receiving them) are
left out: tracing them would make spans about sending spans.

The contrib package is imported only when instrument() is called.
"""

from __future__ import annotations

from typing import Any

# (library, what it covers) -> (contrib module, instrumentor class)
CLIENTS = {
    "grpc": ("opentelemetry.instrumentation.grpc", "GrpcInstrumentorClient"),
    "grpc.aio": ("opentelemetry.instrumentation.grpc", "GrpcAioInstrumentorClient"),
}
SERVERS = {
    "grpc": ("opentelemetry.instrumentation.grpc", "GrpcInstrumentorServer"),
    "grpc.aio": ("opentelemetry.instrumentation.grpc", "GrpcAioInstrumentorServer"),
}
OTLP_SERVICES = "opentelemetry.proto.collector."


def not_otlp() -> Any:
    """The contrib's filter that traces every call but OTLP's own; None when the contrib is not
    installed (grpcio alone, as `threadline serve` has it): then nothing is instrumented."""
    try:
        from opentelemetry.instrumentation.grpc import filters
    except ImportError:
        return None
    return filters.negate(filters.service_prefix(OTLP_SERVICES))
