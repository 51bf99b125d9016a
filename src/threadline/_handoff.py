"""The one mechanism every boundary uses: capture (sender) -> carry (transport) -> resume (receiver).

A Handoff holds the OpenTelemetry context as it was at hand-off time. Inside one process it is
carried as the context object itself (no formatting, no parsing: a hop costs a few attribute
reads); the moment it is pickled or turned into a carrier it becomes W3C headers (traceparent,
tracestate, baggage), so it crosses processes, nodes and brokers the same way.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import Token
from typing import Any, Literal, TypeVar, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from threadline._context import attach, current, detach, reset
from threadline._spans import (
    async_generator_in,
    check_name,
    clean_attributes,
    coerce_kind,
    continued,
    coroutine_in,
    generator_in,
    start_span,
)

log = logging.getLogger("threadline")

Relation = Literal["child", "link", "none"]
RELATIONS = ("child", "link", "none")
CARRIER_KEYS = ("traceparent", "tracestate", "baggage")  # the W3C ones, always read
_keys_of: tuple[Any, frozenset[str]] | None = None  # (global propagator, its carrier keys)

F = TypeVar("F", bound=Callable[..., Any])

_EMPTY = Context()
_INVALID_SPAN = trace.INVALID_SPAN
_warned_garbled = False
_garbled_count = 0  # handoffs that could not be read, this process (export_stats())
_garbled_lock = threading.Lock()
_SHOWN = 64  # characters of an untrusted header a log line shows


@functools.cache
def _propagate():
    """opentelemetry.propagate, imported when a context first crosses a process: it loads the
    configured propagators through package metadata, which is most of what importing costs."""
    from opentelemetry import propagate

    return propagate


def _reset_garbled() -> None:
    global _garbled_count
    _garbled_count = 0


os.register_at_fork(after_in_child=_reset_garbled)  # a child counts its own


class Handoff:
    """The context captured at hand-off time. Small, picklable, JSON-able (``.carrier``)."""

    __slots__ = ("_context", "_carrier")

    def __init__(self, context: Context | None = None, carrier: Mapping[str, str] | None = None):
        self._context = context
        self._carrier = dict(carrier) if carrier is not None else None

    # -- the carried form ----------------------------------------------------------------------

    @property
    def carrier(self) -> dict[str, str]:
        """W3C headers: traceparent, and tracestate / baggage when present."""
        if self._carrier is None:
            self._carrier = {}
            if self._context is not None:
                _propagate().inject(self._carrier, context=self._context)
        return dict(self._carrier)

    def to_json(self) -> str:
        import json  # not on `import threadline`'s path: most programs never ask

        return json.dumps(self.carrier, separators=(",", ":"))

    @classmethod
    def from_carrier(cls, carrier: Mapping[str, Any] | None) -> Handoff:
        """Accept any mapping of headers; keys are matched case-insensitively, others ignored."""
        if not carrier:
            return cls(carrier={})
        if not isinstance(carrier, Mapping):
            count_garbled(f"a handoff carrier must be a mapping, got {type(carrier).__name__}")
            return cls(carrier={})
        picked: dict[str, str] = {}
        keys = carrier_keys()
        for key, value in carrier.items():
            k = str(key).lower()
            if k in keys:
                if isinstance(value, bytes):
                    value = value.decode("latin-1")
                elif isinstance(value, list | tuple):  # repeated headers are combined (W3C)
                    value = ",".join(map(str, value))
                picked[k] = str(value)
        return cls(carrier=picked)

    @classmethod
    def from_json(cls, text: str | bytes) -> Handoff:
        import json

        try:
            return cls.from_carrier(json.loads(text))
        except (ValueError, TypeError) as exc:
            count_garbled(f"handoff JSON could not be read: {exc}")
            return cls(carrier={})

    def __reduce__(self):
        return (Handoff.from_carrier, (self.carrier,))

    # -- what it holds -------------------------------------------------------------------------

    @property
    def context(self) -> Context:
        """The OpenTelemetry context to continue from (empty when nothing was captured)."""
        if self._context is None:
            if self._carrier:
                self._context = _propagate().extract(self._carrier, context=_EMPTY)
                if "traceparent" in self._carrier and not self.span_context.is_valid:
                    count_garbled(
                        f"traceparent {_shown(self._carrier['traceparent'])} is not valid W3C"
                    )
            else:
                self._context = _EMPTY
        return self._context

    @property
    def span_context(self) -> trace.SpanContext:
        return trace.get_current_span(self.context).get_span_context()

    @property
    def trace_id(self) -> str | None:
        sc = self.span_context
        return format(sc.trace_id, "032x") if sc.is_valid else None

    @property
    def span_id(self) -> str | None:
        sc = self.span_context
        return format(sc.span_id, "016x") if sc.is_valid else None

    @property
    def sampled(self) -> bool:
        return self.span_context.trace_flags.sampled

    def __bool__(self) -> bool:
        return self.span_context.is_valid

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Handoff) and self.carrier == other.carrier

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.carrier.items())))

    def __repr__(self) -> str:
        sc = self.span_context
        if not sc.is_valid:
            return "Handoff(empty)"
        return f"Handoff(trace_id={sc.trace_id:032x}, span_id={sc.span_id:016x}, sampled={sc.trace_flags.sampled})"


# -- the compact form: a traceparent's three numbers --------------------------------------------
# Most handoffs carry nothing but a traceparent. Across processes that travels as its numbers,
# pickled as they are and read back without formatting or parsing a header.

_FLAGS = [trace.TraceFlags(n) for n in range(4)]  # sampled | random-trace-id: W3C's known flags
_tuple_new = tuple.__new__


def compact(handoff: Handoff) -> tuple[int, int, int] | None:
    """(trace_id, span_id, trace_flags) when that is all the carrier would hold: a valid span
    context without tracestate, no baggage, and threadline's W3C propagators installed (another
    propagator may carry more). None otherwise: send the Handoff itself."""
    ctx = handoff.context
    sc = cast(trace.Span, ctx.get(_SPAN_KEY, _INVALID_SPAN)).get_span_context()
    if (
        not sc.is_valid
        or sc.trace_state
        or ctx.get(_baggage_key())
        or not getattr(_propagate().get_global_textmap(), "_threadline_w3c", False)
    ):
        return None
    return sc.trace_id, sc.span_id, sc.trace_flags & 0x03  # the flags W3C knows (_w3c.KNOWN_FLAGS)


def from_compact(trace_id: int, span_id: int, flags: int) -> Handoff:
    """The Handoff of compact()'s numbers: the context a W3C extract of the same traceparent
    gives (a remote span context, the flags W3C knows, no tracestate, no baggage)."""
    if 0 < trace_id < 1 << 128 and 0 < span_id < 1 << 64:
        # SpanContext(trace_id, span_id, True, flags) for ids just checked: (trace_id, span_id,
        # is_remote, trace_flags, trace_state, is_valid), as threadline._tracer builds them
        sc = _tuple_new(
            trace.SpanContext,
            (trace_id, span_id, True, _FLAGS[flags & 0x03], DEFAULT_TRACE_STATE, True),
        )
    else:  # no traceparent holds these: the invalid context a garbled one gives
        sc = trace.SpanContext(trace_id, span_id, True, trace.TraceFlags(flags & 0x03))
    return Handoff(trace.set_span_in_context(trace.NonRecordingSpan(sc), _EMPTY))


@functools.cache
def _baggage_key() -> str:
    """The API's context key for baggage (opentelemetry.baggage, imported when first needed)."""
    from opentelemetry.baggage import _BAGGAGE_KEY

    return _BAGGAGE_KEY


def count_garbled(message: str) -> None:
    """Count a handoff that could not be read (``export_stats()["garbled_handoffs"]``) and log
    the first one, saying why in `message`; the receiver then starts a new trace."""
    global _warned_garbled, _garbled_count
    with _garbled_lock:
        _garbled_count += 1
        first, _warned_garbled = not _warned_garbled, True
    if first:
        log.warning(
            "threadline: %s; starting a new trace instead (logged once; "
            "threadline.export_stats()['garbled_handoffs'] counts them)",
            message,
        )


def _shown(value: str) -> str:
    """An untrusted header value for a log line: its repr, cut to a short prefix."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"


def garbled_handoffs() -> int:
    """How many handoffs this process could not read (each started a new trace)."""
    return _garbled_count


def carrier_keys() -> frozenset[str]:
    """The header names a carrier holds: the W3C ones, and every field the global propagator
    reads and writes (``OTEL_PROPAGATORS=b3`` adds ``b3``; a team's own propagator, its own
    headers), lower case. Transports keep these keys and nothing else."""
    global _keys_of
    textmap = _propagate().get_global_textmap()
    known = _keys_of
    if known is None or known[0] is not textmap:
        try:
            fields = {str(f).lower() for f in textmap.fields}
        except Exception:  # noqa: BLE001 - a propagator without fields: the W3C keys still hold
            fields = set()
        known = _keys_of = (textmap, frozenset(fields | set(CARRIER_KEYS)))
    return known[1]


def capture() -> Handoff:
    """The context of now, to be resumed elsewhere: in another thread, process, node or service.

    Takes no arguments: what is captured is the current OpenTelemetry context (its span,
    sampling decision, tracestate and baggage)."""
    return Handoff(current())


def as_handoff(value: Handoff | Mapping[str, Any] | str | bytes | None) -> Handoff:
    """A Handoff from whatever a transport carried: a Handoff, a header mapping, JSON, or None."""
    if isinstance(value, Handoff):
        return value
    if value is None:
        return Handoff(carrier={})
    if isinstance(value, str | bytes):
        return Handoff.from_json(value)
    return Handoff.from_carrier(value)


class resume:  # used like a function: `with tl.resume(h, "work"):`
    """Continue from a Handoff around a unit of work, then restore what was current before.

    relation="child" continues the captured trace; "link" starts a new trace whose span links to
    the captured one; "none" starts clean. With no name, no span is made: the captured context is
    simply current inside the block (the cheapest hop). Empty or garbled handoffs start a new root.

    Args:
        handoff: what the sender captured: a Handoff, a mapping of W3C headers, their JSON, or
            None (a new trace).
        name: the span to run the block in; None makes no span (not with relation="link").
        relation: "child", "link" or "none", as above.
        kind: a SpanKind or its name, as for span(); default INTERNAL.
        attributes: the span's attributes.
    """

    __slots__ = ("_handoff", "_name", "_relation", "_kind", "_attributes", "_token", "_scope")

    def __init__(
        self,
        handoff: Handoff | Mapping[str, Any] | str | bytes | None,
        name: str | None = None,
        *,
        relation: Relation = "child",
        kind: trace.SpanKind | str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
        if name is None and relation == "link":
            raise ValueError("relation='link' needs a span name: the link lives on that span")
        if name is not None:
            check_name(name)
        self._handoff = handoff
        self._name = name
        self._relation = relation
        self._kind = coerce_kind(kind) if kind is not None else None
        self._attributes = clean_attributes(attributes)
        self._token = None
        self._scope = None

    def __enter__(self) -> trace.Span:
        h = as_handoff(self._handoff)
        relation = self._relation
        if relation == "child":
            ctx = h.context
        elif relation == "link":
            # A fresh trace that keeps the sender's baggage but not its span.
            ctx = _baggage_only(h.context)
        else:
            ctx = _EMPTY
        if self._name is None:
            self._token = attach(ctx)
            return trace.get_current_span(ctx)
        links = None
        if relation == "link":
            sc = h.span_context
            links = [trace.Link(sc)] if sc.is_valid else None
        # The span starts in ctx and the block runs in ctx with it: one context switch, undone
        # by the scope itself.
        self._scope = start_span(
            self._name,
            attributes=self._attributes,
            kind=self._kind or trace.SpanKind.INTERNAL,
            links=links,
            context=ctx,
        )
        return self._scope.__enter__()

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if self._scope is not None:
            return self._scope.__exit__(exc_type, exc, tb)
        detach(cast("Token[Context]", self._token))  # set by __enter__
        return None


def _baggage_only(ctx: Context) -> Context:
    from opentelemetry import baggage as otel_baggage

    entries = otel_baggage.get_all(ctx)
    out = _EMPTY
    for key, value in entries.items():
        out = otel_baggage.set_baggage(key, value, out)
    return out


def call(handoff: Handoff, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) with the handoff's context current and the previous one restored after:
    ``with resume(handoff): fn(...)`` as a plain call, for the hot path of in-process hops."""
    token = attach(handoff.context)
    try:
        return fn(*args, **kwargs)
    finally:
        reset(token)


def wrap(fn: F) -> F:
    """Return fn bound to the context of now: however much later, wherever it runs, it continues
    this trace. A coroutine, generator or async generator (made by fn, or returned by it) runs
    each of its steps in that context.

    Args:
        fn: the callable to bind; TypeError for anything else.
    """
    if not callable(fn):
        raise TypeError(f"wrap takes a function, not {type(fn).__name__}")
    import inspect  # a few ms of `import threadline` saved; wrap() is called far less often

    h = capture()

    def begin() -> tuple[Context, None]:
        return h.context, None

    if inspect.isasyncgenfunction(fn):
        return functools.wraps(fn)(async_generator_in(fn, begin))  # type: ignore[return-value]
    if inspect.isgeneratorfunction(fn):
        return functools.wraps(fn)(generator_in(fn, begin))  # type: ignore[return-value]
    if inspect.iscoroutinefunction(fn):
        return functools.wraps(fn)(coroutine_in(fn, begin))  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = call(h, fn, *args, **kwargs)
        later = continued(result, h.context, None)
        return result if later is None else later

    return wrapped  # type: ignore[return-value]


def inject(carrier: dict[str, str] | None = None, context: Context | None = None) -> dict[str, str]:
    """Write traceparent / tracestate / baggage for the current (or given) context into carrier.

    Args:
        carrier: the dict of headers to write into (returned); None makes a new one.
        context: the context to describe; default the current one.
    """
    carrier = {} if carrier is None else carrier
    if not isinstance(carrier, MutableMapping):
        raise TypeError(f"inject writes into a dict of headers, not {type(carrier).__name__}")
    _propagate().inject(carrier, context=context)
    return carrier


def extract(carrier: Mapping[str, Any] | None) -> Context:
    """The context a carrier describes (an empty context for an empty or garbled carrier).

    Args:
        carrier: a mapping of headers (keys matched case-insensitively, others ignored), or None.
    """
    return as_handoff(carrier).context
