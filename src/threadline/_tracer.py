"""threadline's tracer: SDK spans, started without the SDK tracer's generic path.

The SDK's Tracer.start_span asks a sampler object, an id generator, internal metrics and a
ReadableSpan constructor for every span, and its Span copies itself into a fresh ReadableSpan when
it ends. For the configuration threadline builds (ParentBased(TraceIdRatioBased), random ids, no
SDK self-metrics) those answers are known, so this tracer computes them inline and builds the
SDK's own Span class directly: processors, exporters and instrumentations see exactly the spans
they always did. Any other set-up takes the SDK tracer's path unchanged.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
from time import time_ns
from types import MappingProxyType
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.trace.status import Status, StatusCode

from threadline._attributes import PLAIN as _PLAIN
from threadline._attributes import checked, clean
from threadline._context import current as _current

try:  # the SDK versions whose tracer and span this one mirrors
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
except ImportError:  # older SDKs: every tracer stays the SDK's own
    NoOpTracerMetrics = None  # type: ignore[assignment,misc]

_LOW64 = TraceIdRatioBased.TRACE_ID_LIMIT
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED_RANDOM = TraceFlags(TraceFlags.RANDOM_TRACE_ID)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)
_INVALID_SPAN = trace.INVALID_SPAN
_NONE = BoundedList(0)  # the empty events / links of every span until it gets one; never added to
_sdk_logger = logging.getLogger("opentelemetry.sdk.trace")
_tuple_new = tuple.__new__
_getrandbits = random.getrandbits
_new = object.__new__
_Lock = threading.Lock


class LeanSpan(SdkSpan):
    """The SDK's Span, its fields set by LeanTracer.start_span. Ended, it is its own ReadableSpan:
    nothing about it can change any more, so the SDK's copy at end() is not needed."""

    def _readable_span(self) -> LeanSpan:  # type: ignore[override]
        return self

    # Most spans get no event and no link: they share one empty list until their first.
    def _add_event(self, event: Any) -> None:
        if self._events is _NONE:
            with self._lock:
                if self._events is _NONE:
                    self._events = BoundedList(self._limits.max_events)
        SdkSpan._add_event(self, event)  # noqa: SLF001

    def _add_link(self, link: Any) -> None:
        if self._links is _NONE:
            with self._lock:
                if self._links is _NONE:
                    self._links = BoundedList(self._limits.max_links)
        SdkSpan._add_link(self, link)  # noqa: SLF001

    def end(self, end_time: int | None = None) -> None:
        # The SDK's end() for a span that was started here (no end metrics to record).
        with self._lock:
            if self._end_time is not None:
                _sdk_logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            self._attributes._immutable = True  # noqa: SLF001
        processor = self._span_processor
        processor._on_ending(self)  # noqa: SLF001
        processor.on_end(self)

    # Values set later are checked as span(attributes=...) checks them: kept when the API accepts
    # them, else kept as their repr with a warning naming the key (the SDK's names no key).
    def set_attribute(self, key: str, value: Any) -> None:
        if type(value) not in _PLAIN:
            value = checked(key, value)
        super().set_attribute(key, value)

    def set_attributes(self, attributes: Any) -> None:
        super().set_attributes(clean(attributes) or {})

    def __deepcopy__(self, memo: dict) -> ReadableSpan:
        # A copy is data, as the SDK's ReadableSpan copy is: no lock, processor or sampler.
        return copy.deepcopy(SdkSpan._readable_span(self), memo)  # noqa: SLF001

    # Exporters read these once per span. The same live views as the SDK's, without the generic
    # Mapping layer over BoundedAttributes, or the locks once the span has ended (nothing can be
    # added then).
    @property
    def attributes(self) -> MappingProxyType:
        return MappingProxyType(self._attributes._dict)  # noqa: SLF001

    @property
    def events(self) -> tuple:
        return tuple(self._events._dq if self._end_time is not None else self._events)  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue] - the SDK's stub omits it

    @property
    def links(self) -> tuple:
        return tuple(self._links._dq if self._end_time is not None else self._links)  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue] - the SDK's stub omits it


class OnceHashedResource(Resource):
    """A Resource that hashes once: the OTLP encoder groups every span by its resource, and the
    SDK's Resource re-serialises its attributes to JSON on each hash."""

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash: int = super().__hash__()
            return self._hash


def ratio_bound(sampler: Any) -> int | None:
    """The TraceIdRatioBased bound when `sampler` is exactly ParentBased(TraceIdRatioBased) with
    the default delegates; None for any other sampler."""
    if type(sampler) is not ParentBased:
        return None
    root = sampler._root  # noqa: SLF001
    if type(root) is not TraceIdRatioBased:
        return None
    if (
        sampler._remote_parent_sampled is not ALWAYS_ON  # noqa: SLF001
        or sampler._local_parent_sampled is not ALWAYS_ON  # noqa: SLF001
        or sampler._remote_parent_not_sampled is not ALWAYS_OFF  # noqa: SLF001
        or sampler._local_parent_not_sampled is not ALWAYS_OFF  # noqa: SLF001
    ):
        return None
    return root.bound


def lean_tracer(sdk_tracer: trace.Tracer) -> trace.Tracer:
    """A LeanTracer over an SDK tracer when its set-up allows; the SDK tracer itself otherwise."""
    if (
        NoOpTracerMetrics is None
        or type(sdk_tracer) is not SdkTracer
        or type(sdk_tracer.id_generator) is not RandomIdGenerator
        or type(getattr(sdk_tracer, "_tracer_metrics", None)) is not NoOpTracerMetrics
        or ratio_bound(sdk_tracer.sampler) is None
    ):
        return sdk_tracer
    return LeanTracer(sdk_tracer)


class LeanTracer(trace.Tracer):
    """Starts spans exactly as the SDK tracer it wraps would, sampling decision, trace flags,
    trace state, attribute limits and processor calls included."""

    __slots__ = ("sdk", "_bound", "_processor", "_limits", "_fields")

    def __init__(self, sdk_tracer: SdkTracer) -> None:
        self.sdk = sdk_tracer
        # lean_tracer() builds one only over a sampler that has a bound
        self._bound = cast(int, ratio_bound(sdk_tracer.sampler))
        self._processor = sdk_tracer.span_processor
        self._limits = sdk_tracer._span_limits  # noqa: SLF001
        # Every field SdkSpan.__init__ sets (tests/core/test_tracer.py keeps the two in step), as
        # they are for every span of this tracer: a span's own are set over a copy of these.
        self._fields = {
            "_name": None,
            "_context": None,
            "_kind": SpanKind.INTERNAL,
            "_instrumentation_info": sdk_tracer.instrumentation_info,
            "_instrumentation_scope": sdk_tracer._instrumentation_scope,  # noqa: SLF001
            "_parent": None,
            "_start_time": None,
            "_end_time": None,
            "_resource": sdk_tracer.resource,
            "_status": _UNSET,
            "_sampler": sdk_tracer.sampler,
            "_trace_config": None,
            "_record_exception": True,
            "_set_status_on_exception": True,
            "_span_processor": self._processor,
            "_limits": self._limits,
            "_lock": None,
            "_attributes": None,
            "_events": _NONE,
            "_links": _NONE,
            "_record_end_metrics": None,
        }

    def __getattr__(self, name: str) -> Any:  # resource, sampler, ... as on the SDK tracer
        return getattr(self.sdk, name)

    # The SDK's own: lazy, usable as a decorator, and it starts its span with self.start_span.
    start_as_current_span = SdkTracer.start_as_current_span

    def start_span(
        self,
        name: str,
        context=None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes=None,
        links=(),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        current = cast(
            "trace.Span",
            (context if context is not None else _current()).get(_SPAN_KEY, _INVALID_SPAN),
        )
        parent = current.get_span_context()
        if parent is not None and not isinstance(parent, SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        sdk = self.sdk
        if not sdk._is_enabled():  # noqa: SLF001
            return trace.NonRecordingSpan(context=parent)
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = _getrandbits(128)
            while not trace_id:
                trace_id = _getrandbits(128)
            sampled = trace_id & _LOW64 < self._bound
            flags = _SAMPLED_RANDOM if sampled else _UNSAMPLED_RANDOM
            trace_state = None
        else:
            trace_id = parent.trace_id
            sampled = parent.trace_flags.sampled
            if parent.trace_flags.random_trace_id:
                flags = _SAMPLED_RANDOM if sampled else _UNSAMPLED_RANDOM
            else:
                flags = _SAMPLED if sampled else _UNSAMPLED
            trace_state = parent.trace_state
        span_id = _getrandbits(64)
        while not span_id:
            span_id = _getrandbits(64)
        # SpanContext(trace_id, span_id, False, flags, trace_state) for ids known to be valid
        span_context = _tuple_new(
            SpanContext, (trace_id, span_id, False, flags, trace_state or DEFAULT_TRACE_STATE, True)
        )
        if not sampled:
            return trace.NonRecordingSpan(context=span_context)

        span = _new(LeanSpan)
        fields = self._fields.copy()
        fields["_name"] = name
        fields["_context"] = span_context
        fields["_lock"] = _Lock()
        fields["_attributes"] = _attributes(attributes, self._limits)
        if kind is not SpanKind.INTERNAL:
            fields["_kind"] = kind
        if parent is not None:
            fields["_parent"] = parent
        if record_exception is not True or set_status_on_exception is not True:
            fields["_record_exception"] = record_exception
            fields["_set_status_on_exception"] = set_status_on_exception
        span.__dict__ = fields  # pyright: ignore[reportAttributeAccessIssue] - an instance's is a dict
        if links:
            span._links = span._new_links(links)  # noqa: SLF001
        span._start_time = start_time if start_time is not None else time_ns()  # noqa: SLF001
        self._processor.on_start(span, parent_context=context)
        return span


def _attributes(attributes: Any, limits: Any) -> BoundedAttributes:
    """The span's BoundedAttributes; none, or plain values within the limits, skip the SDK's
    cleaning, which would return them unchanged."""
    maxlen = limits.max_span_attributes
    max_value_len = limits.max_span_attribute_length
    if attributes and not _plain(attributes, maxlen, max_value_len):
        return BoundedAttributes(maxlen, attributes, immutable=False, max_value_len=max_value_len)
    # Every field BoundedAttributes.__init__ sets, one by one: kept in the object itself, not in a
    # dict of its own, one object less for the garbage collector to visit while spans queue.
    out = _new(BoundedAttributes)
    out._dict = dict(attributes) if attributes else {}  # noqa: SLF001
    out.maxlen = maxlen
    out.dropped = 0
    out.max_value_len = max_value_len
    out._lock = _Lock()  # noqa: SLF001
    out._immutable = False  # noqa: SLF001
    return out


def _plain(attributes: Any, maxlen: int | None, max_value_len: int | None) -> bool:
    if type(attributes) is not dict or (maxlen is not None and len(attributes) > maxlen):
        return False
    for key, value in attributes.items():
        kind = type(value)
        if (
            type(key) is not str
            or not key
            or kind not in _PLAIN
            or (kind is str and max_value_len is not None)
        ):
            return False
    return True
