"""W3C Trace Context (Level 2) and W3C Baggage, as the OpenTelemetry propagators do them, with the
few rules the stock propagators miss put right. Each fix is a normalisation of what the stock
propagator reads or writes; parsing and validation stay theirs.

What the stock propagators (opentelemetry-api 1.4x) get wrong, and what is done here:

traceparent
  Several traceparent values (repeated headers, or one header holding a list) must make the
  traceparent invalid (a new trace starts); the stock one silently takes the first.

tracestate
  Over-long tracestate is dropped whole by the stock one; the spec says to truncate instead:
  drop members longer than 128 characters first, then members from the end, until the combined
  header fits 512 characters.

baggage
  * repeated baggage headers are one list (RFC 9110 §5.3); the stock one reads only the first;
  * values are percent-encoded (RFC 3986): "+" is a plus, not a space, and a space is "%20",
    not "+" (the stock one uses form encoding both ways, corrupting values shared with other
    languages);
  * member properties (``k=v;prop``) are metadata, not part of the value; the stock one glues
    them to the value and re-sends them percent-encoded inside it. They are dropped here (the
    OpenTelemetry Python baggage API has no place for them);
  * a header over the size limit keeps the members that fit instead of losing every one.

Sampled and random trace-id flags need nothing: the SDK carries both from a remote parent and
sets the random flag on trace ids it generates.
"""

from __future__ import annotations

import os
import re
from typing import Any

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACESTATE_LIMIT = 512  # characters a tracestate is truncated to (W3C Trace Context §3.3.1.5)
TRACESTATE_LONG_MEMBER = 128  # members longer than this go first when truncating
BAGGAGE_MAX_BYTES = 8192  # W3C Baggage §3.3 limits
BAGGAGE_MAX_MEMBERS = 180

_LIST_SPLIT = re.compile(r"[ \t]*,[ \t]*")


def _members(raw: Any) -> list[str]:
    """Every list member of every header value a getter returned, in order, without empties."""
    if not raw:
        return []
    if isinstance(raw, str):  # a getter that returns a bare string
        raw = [raw]
    out = []
    for value in raw:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out.extend(m for m in _LIST_SPLIT.split(str(value).strip(" \t")) if m)
    return out


def truncate_tracestate(members: list[str], limit: int = TRACESTATE_LIMIT) -> list[str]:
    """Members to keep so that ",".join(members) fits limit, the W3C way."""
    if len(",".join(members)) <= limit:
        return members
    members = [m for m in members if len(m) <= TRACESTATE_LONG_MEMBER]
    while members and len(",".join(members)) > limit:
        members.pop()
    return members


class _Normalising(textmap.Getter):
    """A getter that hands the stock propagator its headers already normalised."""

    def __init__(self, getter: textmap.Getter) -> None:
        self._getter = getter

    def keys(self, carrier: Any) -> list[str]:
        return self._getter.keys(carrier)


class _ReadsNormalised:
    """Propagator mixin: extract through a _Normalising getter, the rest stock."""

    _getter_class: type[_Normalising]

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        return super().extract(carrier, context, self._getter_class(getter))  # type: ignore[misc]


class _TraceContextGetter(_Normalising):
    def get(self, carrier: Any, key: str) -> list[str] | None:
        raw = self._getter.get(carrier, key)
        if key == "traceparent":
            values = _members(raw)
            return values if len(values) == 1 else None  # several traceparents: invalid
        if key == "tracestate" and raw is not None:
            return [",".join(truncate_tracestate(_members(raw)))]
        return raw


class TraceContextPropagator(_ReadsNormalised, TraceContextTextMapPropagator):
    """The stock traceparent/tracestate propagator, reading its headers the W3C way."""

    _getter_class = _TraceContextGetter


class _BaggageGetter(_Normalising):
    def get(self, carrier: Any, key: str) -> list[str] | None:
        if key != "baggage":
            return self._getter.get(carrier, key)
        members, size = [], 0
        for member in _members(self._getter.get(carrier, key)):
            # The value ends at the first ";" (properties follow); "+" is literal in RFC 3986,
            # so it is escaped before the stock form-decoding would turn it into a space.
            member = member.split(";", 1)[0].strip(" \t").replace("+", "%2B")
            if not member:
                continue
            if len(members) >= BAGGAGE_MAX_MEMBERS or size + len(member) + 1 > BAGGAGE_MAX_BYTES:
                break  # whole members only: the rest does not fit
            members.append(member)
            size += len(member) + 1
        return [",".join(members)] if members else None


class BaggagePropagator(_ReadsNormalised, W3CBaggagePropagator):
    """The stock baggage propagator with W3C list handling and RFC 3986 percent-encoding."""

    _getter_class = _BaggageGetter

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        written: dict[str, str] = {}
        super().inject(written, context)
        if "baggage" in written:
            # Form encoding wrote a space as "+" (and a real plus as %2B): make it "%20".
            setter.set(carrier, "baggage", written["baggage"].replace("+", "%20"))


def propagator() -> CompositePropagator:
    """traceparent + tracestate + baggage, as a composite like OpenTelemetry's default."""
    return CompositePropagator([TraceContextPropagator(), BaggagePropagator()])


def install() -> bool:
    """Make these the global propagators, unless the user chose others with OTEL_PROPAGATORS.
    Returns True when installed."""
    if os.environ.get("OTEL_PROPAGATORS", "").strip():
        return False
    current = propagate.get_global_textmap()
    if not getattr(current, "_threadline_w3c", False):
        composite = propagator()
        composite._threadline_w3c = True  # type: ignore[attr-defined]
        propagate.set_global_textmap(composite)
    return True
