"""W3C Trace Context Level 2 and W3C Baggage: the propagators threadline installs for every
carrier (HTTP headers, and handoffs across processes, nodes and brokers). They are the
OpenTelemetry propagators with what those get wrong (opentelemetry-api 1.4x) put right.

traceparent (parsed by the stock propagator)
  * Several values (repeated headers, or one header holding a list) make the traceparent invalid:
    a new trace starts. The stock one silently takes the first.
  * Trace-flags bits other than sampled and random-trace-id are set to zero ("Vendors MUST set
    those to zero"), so a future version's flags are not passed on as if they were known.

tracestate (parsed here)
  * Keys follow Level 2: ``( lcalpha / DIGIT ) 0*255 ( keychar )``, keychar being lcalpha, DIGIT
    and ``_ - * / @``; "@" is just a key character. The stock propagator checks Level 1's
    ``tenant@system`` form and drops the whole header for ``foo@=1`` or ``1abc=1``.
  * The list is checked before anything is truncated: an invalid member or more than 32 members
    (empty ones do not count) discard the header. A repeated key keeps its first entry and the
    rest of the header (the W3C test suite expects the tracestate inherited); the later entries
    are dropped and counted. A value keeps its leading spaces; trailing ones are white space.
  * A valid list longer than 512 characters is truncated instead of dropped (the stock one drops
    it): members over 128 characters go first, one at a time from the end, then members from the
    end, until it fits.

baggage (parsed and written here)
  * Repeated headers are one list (RFC 9110 §5.3); the stock one reads only the first.
  * Values are percent-encoded (RFC 3986): "+" is a plus and a space "%20" (the stock one uses
    form encoding both ways and strips decoded spaces). A "%" not followed by two hex digits
    makes the member invalid; octets that are not UTF-8 decode to U+FFFD.
  * Properties (``k=v;prop``) are metadata, not part of the value. They are dropped: the
    OpenTelemetry Python baggage API has no place for them.
  * An invalid member (a key that is not a token, a value with a space, DQUOTE, backslash,
    comma or semicolon) is dropped, the others kept.
  * At most 180 members and 8192 bytes, received or sent: whole members only, the ones that do
    not fit are dropped (the stock one loses every member of an over-long header).

What is discarded is counted in ``discarded`` (by kind) and logged once per kind.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from typing import Any
from urllib.parse import quote, unquote

from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("threadline")

KNOWN_FLAGS = 0x03  # sampled | random-trace-id (Level 2)
TRACESTATE_LIMIT = 512  # characters propagated (W3C Trace Context, tracestate limits)
TRACESTATE_LONG_MEMBER = 128  # members longer than this are the first to go
TRACESTATE_MAX_MEMBERS = 32
BAGGAGE_MAX_BYTES = 8192  # W3C Baggage limits
BAGGAGE_MAX_MEMBERS = 180

_LIST_SPLIT = re.compile(r"[ \t]*,[ \t]*")
_TRACESTATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_BAGGAGE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

discarded: Counter[str] = Counter()


def _discard(kind: str, why: str, n: int = 1) -> None:
    if not discarded[kind]:
        log.info(
            "threadline: discarded %s (%s); further ones are only counted, in "
            "threadline.integrations.w3c.discarded",
            kind,
            why,
        )
    discarded[kind] += n


def _members(raw: Any) -> list[str]:
    """Every list member of every header value a getter returned, in order, without empties."""
    if not raw:
        return []
    if isinstance(raw, str | bytes):  # a getter that returns a bare value
        raw = [raw]
    out = []
    for value in raw:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out.extend(m for m in _LIST_SPLIT.split(str(value).strip(" \t")) if m)
    return out


# -- traceparent + tracestate ------------------------------------------------------------------


def parse_tracestate(raw: Any) -> list[tuple[str, str]] | None:
    """The (key, value) members of received tracestate header values, truncated to fit
    TRACESTATE_LIMIT, or None when the header must be discarded."""
    members = _members(raw)
    if len(members) > TRACESTATE_MAX_MEMBERS:
        _discard("tracestate", f"{len(members)} members, at most {TRACESTATE_MAX_MEMBERS}")
        return None
    pairs: dict[str, str] = {}
    for member in members:
        key, eq, value = member.partition("=")
        if not eq or not _TRACESTATE_KEY.fullmatch(key) or not _TRACESTATE_VALUE.fullmatch(value):
            _discard("tracestate", f"invalid member {member[:60]!r}")
            return None
        if key in pairs:  # the first entry stands; a vendor writes its own at the front
            _discard("tracestate members", f"repeated key {key[:60]!r}")
            continue
        pairs[key] = value
    kept = truncate_tracestate([f"{k}={v}" for k, v in pairs.items()])
    if len(kept) < len(pairs):
        _discard("tracestate members", "tracestate over 512 characters", len(pairs) - len(kept))
    return [(k, pairs[k]) for k in (m.partition("=")[0] for m in kept)]


def truncate_tracestate(members: list[str], limit: int = TRACESTATE_LIMIT) -> list[str]:
    """Members to keep so that ",".join(members) fits limit, the W3C way: whole members, those
    longer than 128 characters first (from the end), then from the end."""
    members = list(members)
    size = len(",".join(members))
    while size > limit:
        long = [i for i, m in enumerate(members) if len(m) > TRACESTATE_LONG_MEMBER]
        gone = members.pop(long[-1] if long else -1)
        size -= len(gone) + (1 if members else 0)
    return members


def _trace_state(pairs: list[tuple[str, str]] | None) -> trace.TraceState | None:
    if pairs is None:
        return None
    state = trace.TraceState()
    # TraceState(pairs) would check the keys again, with the Level 1 grammar.
    state._dict.update(pairs)  # noqa: SLF001
    return state


class TraceContextPropagator(TraceContextTextMapPropagator):
    """The stock traceparent/tracestate propagator, reading its headers the Level 2 way."""

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        if context is None:
            context = Context()
        values = _members(getter.get(carrier, self._TRACEPARENT_HEADER_NAME))
        if len(values) != 1:
            if values:
                _discard("traceparent", f"{len(values)} traceparent values in one request")
            return context
        found = super().extract({self._TRACEPARENT_HEADER_NAME: values[0]}, Context())
        sc = trace.get_current_span(found).get_span_context()
        if not sc.is_valid:
            return context
        # Only a valid traceparent lets the tracestate be read (W3C Trace Context).
        state = _trace_state(parse_tracestate(getter.get(carrier, self._TRACESTATE_HEADER_NAME)))
        flags = trace.TraceFlags(sc.trace_flags & KNOWN_FLAGS)
        remote = trace.SpanContext(sc.trace_id, sc.span_id, True, flags, state)
        return trace.set_span_in_context(trace.NonRecordingSpan(remote), context)


# -- baggage -----------------------------------------------------------------------------------


def parse_baggage(raw: Any) -> list[tuple[str, str]]:
    """The (key, decoded value) members of received baggage header values that are valid and
    fit the limits."""
    out: list[tuple[str, str]] = []
    size = 0
    for member in _members(raw):
        key, eq, rest = member.partition("=")
        key, value = key.strip(" \t"), rest.split(";", 1)[0].strip(" \t")
        if not (eq and _TOKEN.fullmatch(key) and _BAGGAGE_VALUE.fullmatch(value)) or (
            _BAD_ESCAPE.search(value)
        ):
            _discard("baggage members", f"invalid member {member[:60]!r}")
            continue
        grown = size + (1 if out else 0) + len(key) + 1 + len(value)
        if len(out) >= BAGGAGE_MAX_MEMBERS or grown > BAGGAGE_MAX_BYTES:
            _discard("baggage members", "over the W3C Baggage limits")
            continue
        out.append((key, unquote(value, errors="replace")))
        size = grown
    return out


def encode_baggage(entries: dict[str, object]) -> str:
    """The baggage header for these entries: values percent-encoded, within the limits."""
    members: list[str] = []
    size = 0
    for key, value in entries.items():
        if not _TOKEN.fullmatch(key):
            _discard("outgoing baggage members", f"key {key[:60]!r} is not a token")
            continue
        member = f"{key}={quote(str(value), safe='')}"
        grown = size + (1 if members else 0) + len(member)
        if len(members) >= BAGGAGE_MAX_MEMBERS or grown > BAGGAGE_MAX_BYTES:
            _discard("outgoing baggage members", "over the W3C Baggage limits")
            continue
        members.append(member)
        size = grown
    return ",".join(members)


class BaggagePropagator(W3CBaggagePropagator):
    """The stock baggage propagator's interface, with W3C list handling, RFC 3986
    percent-encoding and whole-member limits."""

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        if context is None:
            context = get_current()
        for key, value in parse_baggage(getter.get(carrier, self._BAGGAGE_HEADER_NAME)):
            context = baggage.set_baggage(key, value, context)
        return context

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        entries = baggage.get_all(context)
        header = encode_baggage(dict(entries)) if entries else ""
        if header:
            setter.set(carrier, self._BAGGAGE_HEADER_NAME, header)


# -- installing --------------------------------------------------------------------------------


def propagator() -> CompositePropagator:
    """traceparent + tracestate + baggage, as a composite like OpenTelemetry's default."""
    return CompositePropagator([TraceContextPropagator(), BaggagePropagator()])


def install() -> bool:
    """Make these the global propagators, unless the user chose others: with OTEL_PROPAGATORS,
    or in code (``propagate.set_global_textmap(...)`` before configure()). Returns True when
    they are the global ones."""
    if os.environ.get("OTEL_PROPAGATORS", "").strip():
        return False
    current = propagate.get_global_textmap()
    if getattr(current, "_threadline_w3c", False):
        return True
    if not _stock(current):
        return False
    composite = propagator()
    composite._threadline_w3c = True  # type: ignore[attr-defined]  # noqa: SLF001 - our mark
    propagate.set_global_textmap(composite)
    return True


def _stock(textmap: Any) -> bool:
    """OpenTelemetry's default global propagator: W3C trace context and baggage, as it makes
    them when OTEL_PROPAGATORS is unset (anything else is the user's choice, kept)."""
    parts = getattr(textmap, "_propagators", None)
    return (
        isinstance(textmap, CompositePropagator)
        and parts is not None
        and [type(p) for p in parts] == [TraceContextTextMapPropagator, W3CBaggagePropagator]
    )
