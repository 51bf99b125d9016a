"""span() and @traced: the user's own spans."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping
from types import GeneratorType
from typing import Any, TypeVar, overload

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation import _SPAN_KEY

from threadline import _runtime
from threadline._attributes import clean as clean_attributes
from threadline._context import attach, current, detach

log = logging.getLogger("threadline")

F = TypeVar("F", bound=Callable[..., Any])

_KINDS = {k.name.lower(): k for k in SpanKind}
_INTERNAL = SpanKind.INTERNAL


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
    context: Context | None = None,
) -> _Scope:
    """The context manager behind span(), resume() and @traced; records exceptions as events,
    sets ERROR status and re-raises unchanged. The span starts in `context` when given (its
    span is the parent, and the block runs in it), else in the current context."""
    return _Scope(name, kind, clean_attributes(attributes), _links(links), context)


class _Scope:
    """A span, current inside the block. The SDK's start_as_current_span does the same through
    two generator-based context managers; a plain class is cheaper on this, the hottest path.

    The span starts in `context` when one is given (resume(): the sender's), else in the current
    one; either way the block runs in that context with the span added."""

    __slots__ = ("_name", "_kind", "_attributes", "_links", "_context", "_span", "_token")

    def __init__(
        self, name: str, kind: SpanKind, attributes: Any, links: Any, context: Context | None = None
    ) -> None:
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._links = links
        self._context = context

    def __enter__(self) -> trace.Span:
        ctx = self._context
        span = self._span = _runtime.tracer().start_span(
            self._name, ctx, self._kind, self._attributes, self._links
        )
        if ctx is None:
            ctx = current()
        self._token = attach(Context({**ctx, _SPAN_KEY: span}))  # set_span_in_context
        return span

    def __exit__(self, exc_type, exc, tb) -> None:
        span = self._span
        try:
            detach(self._token)
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
    """A span around a block, current inside it: ``with tl.span("charge") as s: ...``

    An exception leaving the block is recorded on the span (an event, ERROR status) and
    re-raised unchanged.

    Args:
        name: the span name, a non-empty string.
        attributes: span attributes; a value OpenTelemetry cannot carry is kept as its repr,
            with a warning naming the key.
        kind: a SpanKind, or its name ("server", "client", "producer", "consumer",
            "internal"); default INTERNAL.
        links: spans this one links to: Links, SpanContexts, Spans or Handoffs (invalid ones
            are left out).
    """
    if type(name) is not str or not name:
        check_name(name)
    return _Scope(
        name,
        _INTERNAL if kind is None else coerce_kind(kind),
        clean_attributes(attributes),
        _links(links) if links else None,
    )


@overload
def traced(fn: F, /) -> F: ...
@overload
def traced(
    *, name: str | None = None, attributes: Mapping[str, Any] | None = None, kind: Any = None
) -> Callable[[F], F]: ...


def traced(fn=None, /, *, name=None, attributes=None, kind=None) -> Any:
    """Trace every call of a function, coroutine, generator or async generator.

    The span is named after the function's qualified name unless `name` is given. For generators
    it covers the whole iteration, and is current only while the generator's own code runs. A
    plain function that returns a coroutine, generator or async generator (one decorated by a
    plain decorator, say) gets a span that covers that too, up to its end. An exception is
    recorded on the span and re-raised unchanged.

    Args:
        fn: the callable to trace (``@traced``); left out, traced(...) returns the decorator
            (``@traced(name=..., attributes=..., kind=...)``).
        name: the span name; default the function's qualified name.
        attributes: attributes of every call's span.
        kind: a SpanKind or its name, as for span(); default INTERNAL.
    """
    if fn is None:
        return functools.partial(traced, name=name, attributes=attributes, kind=kind)
    if not callable(fn):
        raise TypeError(f"@traced decorates a callable, not {type(fn).__name__}")
    import inspect  # a few ms of `import threadline` saved; decorating is rare, calls are not

    span_name = name or getattr(fn, "__qualname__", None) or repr(fn)
    span_kind = coerce_kind(kind)
    attrs = clean_attributes(attributes)

    def begin() -> tuple[Context, trace.Span]:
        s = _runtime.tracer().start_span(span_name, kind=span_kind, attributes=attrs)
        return trace.set_span_in_context(s), s

    if inspect.isasyncgenfunction(fn):
        return functools.wraps(fn)(async_generator_in(fn, begin))
    if inspect.isgeneratorfunction(fn):
        return functools.wraps(fn)(generator_in(fn, begin))
    if inspect.iscoroutinefunction(fn):
        return functools.wraps(fn)(coroutine_in(fn, begin))

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx, s = begin()
        token = attach(ctx)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _end(s, exc)
            raise
        finally:
            detach(token)
        later = continued(result, ctx, s)
        if later is None:
            s.end()
            return result
        return later

    return wrapper


# -- code that runs in steps -------------------------------------------------------------------
# A generator, async generator or coroutine runs its own code step by step, long after the call
# that made it. Each of these runs `fn`'s steps with the context begin() returns current, and
# ends the span it returns (if any) when the last step is done.

Begin = Callable[[], "tuple[Context, trace.Span | None]"]


def generator_in(fn: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    """A generator function running fn's generator under begin()'s context, step by step."""

    def gen_wrapper(*args, **kwargs):
        ctx, s = begin()
        sent, thrown = None, None
        try:
            gen = fn(*args, **kwargs)
            while True:
                token = attach(ctx)
                try:
                    item = gen.throw(thrown) if thrown else gen.send(sent)
                finally:
                    detach(token)
                sent, thrown = None, None
                try:
                    sent = yield item
                except GeneratorExit:
                    token = attach(ctx)
                    try:
                        gen.close()
                    finally:
                        detach(token)
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded into the generator
                    thrown = exc
        except StopIteration as stop:
            _end(s, None)
            return stop.value
        except BaseException as exc:
            _end(s, exc)
            raise

    return gen_wrapper


def async_generator_in(fn: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    """An async generator function running fn's async generator under begin()'s context."""

    async def agen_wrapper(*args, **kwargs):
        ctx, s = begin()
        sent, thrown = None, None
        try:
            agen = fn(*args, **kwargs)
            while True:
                token = attach(ctx)
                try:
                    item = await (agen.athrow(thrown) if thrown else agen.asend(sent))
                finally:
                    detach(token)
                sent, thrown = None, None
                try:
                    sent = yield item
                except GeneratorExit:
                    token = attach(ctx)
                    try:
                        await agen.aclose()
                    finally:
                        detach(token)
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded into the generator
                    thrown = exc
        except StopAsyncIteration:
            _end(s, None)
        except BaseException as exc:
            _end(s, exc)
            raise

    return agen_wrapper


def coroutine_in(fn: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    """A coroutine function awaiting fn's coroutine under begin()'s context."""

    async def async_wrapper(*args, **kwargs):
        ctx, s = begin()
        token = attach(ctx)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            _end(s, exc)
            raise
        finally:
            detach(token)
        _end(s, None)
        return result

    return async_wrapper


def continued(result: Any, ctx: Context, s: trace.Span | None) -> Any:
    """For what a plain call returned: the coroutine, generator or async generator it made, run
    under ctx (and inside s) when it is awaited or iterated; None for anything else."""
    if result is None:
        return None
    if isinstance(result, GeneratorType):
        return generator_in(lambda: result, lambda: (ctx, s))()
    if isinstance(result, Coroutine):
        return coroutine_in(lambda: result, lambda: (ctx, s))()
    if isinstance(result, AsyncGenerator):
        return async_generator_in(lambda: result, lambda: (ctx, s))()
    return None


def _end(s: trace.Span | None, exc: BaseException | None) -> None:
    """End the span; an Exception marks it ERROR. BaseExceptions that are not Exceptions
    (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit) are not application
    errors: the span ends with its status unset, as the OTel API's use_span does."""
    if s is None:
        return
    if isinstance(exc, Exception) and s.is_recording():
        _record(s, exc)
    s.end()


def _record(s: trace.Span, exc: BaseException) -> None:
    s.record_exception(exc)
    s.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
