"""W3C Trace Context Level 2 and W3C Baggage propagators. They live in the core
(``threadline._w3c``: every carrier uses them, not only HTTP); this is their public name. The
module docstring there says exactly what they do differently from the stock ones."""

from threadline._w3c import (
    BAGGAGE_MAX_BYTES,
    BAGGAGE_MAX_MEMBERS,
    KNOWN_FLAGS,
    TRACESTATE_LIMIT,
    TRACESTATE_LONG_MEMBER,
    TRACESTATE_MAX_MEMBERS,
    BaggagePropagator,
    TraceContextPropagator,
    discarded,
    encode_baggage,
    install,
    parse_baggage,
    parse_tracestate,
    propagator,
    truncate_tracestate,
)

__all__ = [
    "BAGGAGE_MAX_BYTES",
    "BAGGAGE_MAX_MEMBERS",
    "KNOWN_FLAGS",
    "TRACESTATE_LIMIT",
    "TRACESTATE_LONG_MEMBER",
    "TRACESTATE_MAX_MEMBERS",
    "BaggagePropagator",
    "TraceContextPropagator",
    "discarded",
    "encode_baggage",
    "install",
    "parse_baggage",
    "parse_tracestate",
    "propagator",
    "truncate_tracestate",
]
