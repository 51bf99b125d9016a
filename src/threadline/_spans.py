"""span() and @traced: the user's own spans."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from threadline import _config
from threadline._attributes import clean as clean_attributes

log = logging.getLogger("threadline")

F = TypeVar("F", bound=Callable[..., Any])

_KINDS = {k.name.lower(): k for k in SpanKind}


def coerce_kind(kind: SpanKind | str | None) -> SpanKind:
    if kind is None:
        return SpanKind.INTERNAL
    if isinstance(kind, SpanKind):
        return kind
    if isinstance(kind, str) and kind.lower() in _KINDS:
        return _KINDS[kind.lower()]
    raise ValueError(f"kind must be a SpanKind or one of {sorted(_KINDS)}, not {kind!r}")


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"span name must be a non-empty string, not {name!r}")


def _links(links: Iterable[Any] | None) -> list[Link] | None:
    if not links:
        return None
    out = []
    for item in links:
        if isinstance(item, Link):
            out.append(item)
        elif isinstance(item, trace.SpanContext):
            out.append(Link(item))
        elif isinstance(item, trace.Span):
            out.append(Link(item.get_span_context()))
        elif hasattr(item, "span_context"):  # a Handoff
            out.append(Link(item.span_context))
        else:
            raise TypeError(
                f"links takes Link, SpanContext, Span or Handoff items, not {type(item).__name__}"
            )
    return [link for link in out if link.context.is_valid] or None


def start_span(
    name: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Iterable[Any] | None = None,
) -> _Scope:
    """The context manager behind span(), resume() and @traced; records exceptions as events,
    sets ERROR status and re-raises unchanged."""
    return _Scope(name, kind, clean_attributes(attributes), _links(links))


class _Scope:
    """A span, current inside the block. The SDK's start_as_current_span does the same through
    two generator-based context managers; a plain class is cheaper on this, the hottest path."""

    __slots__ = ("_name", "_kind", "_attributes", "_links", "_span", "_token")

    def __init__(self, name: str, kind: SpanKind, attributes: Any, links: Any) -> None:
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._links = links

    def __enter__(self) -> trace.Span:
        span = self._span = _config.tracer().start_span(
            self._name, kind=self._kind, attributes=self._attributes, links=self._links
        )
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(self, exc_type, exc, tb) -> None:
        span = self._span
        try:
            otel_context.detach(self._token)
            if isinstance(exc, Exception) and span.is_recording():
                _record(span, exc)
        finally:
            span.end()


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind | str | None = None,
    links: Iterable[Any] | None = None,
):
    """A span around a block, current inside it: ``with tl.span("charge") as s: ...``"""
    check_name(name)
    return start_span(name, attributes=attributes, kind=coerce_kind(kind), links=links)


@overload
def traced(fn: F, /) -> F: ...
@overload
def traced(
    *, name: str | None = None, attributes: Mapping[str, Any] | None = None, kind: Any = None
) -> Callable[[F], F]: ...


def traced(fn=None, /, *, name=None, attributes=None, kind=None):
    """Trace every call of a function, coroutine, generator or async generator.

    The span is named after the function's qualified name unless `name` is given. For generators
    it covers the whole iteration, and is current only while the generator's own code runs.
    """
    if fn is None:
        return functools.partial(traced, name=name, attributes=attributes, kind=kind)
    if not callable(fn):
        raise TypeError(f"@traced decorates a callable, not {type(fn).__name__}")
    span_name = name or getattr(fn, "__qualname__", None) or repr(fn)
    span_kind = coerce_kind(kind)
    attrs = clean_attributes(attributes)

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen_wrapper(*args, **kwargs):
            s = _config.tracer().start_span(span_name, kind=span_kind, attributes=attrs)
            ctx = trace.set_span_in_context(s)
            agen = fn(*args, **kwargs)
            sent, thrown = None, None
            try:
                while True:
                    token = otel_context.attach(ctx)
                    try:
                        item = await (agen.athrow(thrown) if thrown else agen.asend(sent))
                    finally:
                        otel_context.detach(token)
                    sent, thrown = None, None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - forwarded into the generator
                        thrown = exc
            except StopAsyncIteration:
                pass
            except GeneratorExit:
                raise
            except BaseException as exc:
                _record(s, exc)
                raise
            finally:
                s.end()

        return agen_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            s = _config.tracer().start_span(span_name, kind=span_kind, attributes=attrs)
            ctx = trace.set_span_in_context(s)
            gen = fn(*args, **kwargs)
            sent, thrown = None, None
            try:
                while True:
                    token = otel_context.attach(ctx)
                    try:
                        item = gen.throw(thrown) if thrown else gen.send(sent)
                    finally:
                        otel_context.detach(token)
                    sent, thrown = None, None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - forwarded into the generator
                        thrown = exc
            except StopIteration as stop:
                return stop.value
            except GeneratorExit:
                raise
            except BaseException as exc:
                _record(s, exc)
                raise
            finally:
                s.end()

        return gen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            with start_span(span_name, attributes=attrs, kind=span_kind):
                return await fn(*args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with start_span(span_name, attributes=attrs, kind=span_kind):
            return fn(*args, **kwargs)

    return wrapper


def _record(s: trace.Span, exc: BaseException) -> None:
    s.record_exception(exc)
    s.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
