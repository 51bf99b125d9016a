"""W3C Trace Context Level 2 and W3C Baggage propagators. They live in the core
(``threadline.seam.w3c``: every carrier uses them, not only HTTP); this is their public name.
That module's docstring says exactly what they do differently from the stock ones."""

from threadline.seam import w3c

BAGGAGE_MAX_BYTES = w3c.BAGGAGE_MAX_BYTES
BAGGAGE_MAX_MEMBERS = w3c.BAGGAGE_MAX_MEMBERS
KNOWN_FLAGS = w3c.KNOWN_FLAGS
TRACESTATE_LIMIT = w3c.TRACESTATE_LIMIT
TRACESTATE_LONG_MEMBER = w3c.TRACESTATE_LONG_MEMBER
TRACESTATE_MAX_MEMBERS = w3c.TRACESTATE_MAX_MEMBERS
BaggagePropagator = w3c.BaggagePropagator
TraceContextPropagator = w3c.TraceContextPropagator
discarded = w3c.discarded
encode_baggage = w3c.encode_baggage
install = w3c.install
parse_baggage = w3c.parse_baggage
parse_tracestate = w3c.parse_tracestate
propagator = w3c.propagator
truncate_tracestate = w3c.truncate_tracestate

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
