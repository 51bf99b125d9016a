"""Logs that say which trace they belong to.

    from threadline.integrations import logs

    logs.install()                                   # trace_id, span_id on every record
    logging.basicConfig(format=logs.FORMAT)          # ... and printed
    logs.install(span_events=True)                   # WARNING and above: events on the span

    structlog.configure(processors=[logs.add_trace_ids, ...])   # the same for structlog

``install()`` wraps the logging module's record factory, so every record any logger makes, in
any thread or task, carries ``trace_id`` (32 hex digits) and ``span_id`` (16) of the span
current where the record was made: the format ``FORMAT`` prints them, and so does any
``%(trace_id)s`` in a format of your own. Outside a span both are zeros (the W3C "no id"), so a
format that prints them never fails. ``install()`` is idempotent; ``uninstall()`` puts the
previous factory back.

With ``span_events=True``, a record at ``event_level`` (WARNING) or above made inside a recording
span is also added to that span as an event named ``log``, with ``log.severity``,
``log.message`` (the formatted message), ``log.logger``, ``code.file.path``,
``code.line.number``, ``code.function.name`` and, when the record carries an exception,
``exception.type`` and ``exception.message``. The record itself is logged as before.

``TraceIdFilter`` does the same for one handler or logger only, where a global factory is not
wanted. ``add_trace_ids`` is a structlog processor (structlog is not imported: a processor is a
plain function) adding ``trace_id`` and ``span_id`` to the event dict inside a span.

The contrib ``opentelemetry-instrumentation-logging`` injects ``otelTraceID`` /
``otelSpanID`` through the same factory mechanism; both can be installed together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import trace

from threadline.semconv import (
    LOG_EVENT,
    LOG_LOGGER,
    LOG_MESSAGE,
    LOG_SEVERITY,
)

__all__ = [
    "FORMAT",
    "NO_SPAN_ID",
    "NO_TRACE_ID",
    "TraceIdFilter",
    "add_trace_ids",
    "install",
    "uninstall",
]

FORMAT = (
    "%(asctime)s %(levelname)s [%(name)s] [trace_id=%(trace_id)s span_id=%(span_id)s] %(message)s"
)
"""A logging format that prints the ids ``install()`` (or ``TraceIdFilter``) puts on records."""

NO_TRACE_ID, NO_SPAN_ID = "0" * 32, "0" * 16

_previous: Callable[..., logging.LogRecord] | None = None


def _ids() -> tuple[str, str, trace.Span | None]:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return NO_TRACE_ID, NO_SPAN_ID, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), span


def _stamp(record: logging.LogRecord) -> trace.Span | None:
    record.trace_id, record.span_id, span = _ids()
    return span


def _as_event(span: trace.Span, record: logging.LogRecord) -> None:
    attributes: dict[str, Any] = {
        LOG_SEVERITY: record.levelname,
        LOG_MESSAGE: record.getMessage(),
        LOG_LOGGER: record.name,
        "code.file.path": record.pathname,
        "code.line.number": record.lineno,
        "code.function.name": record.funcName,
    }
    if record.exc_info and record.exc_info[0] is not None:
        attributes["exception.type"] = record.exc_info[0].__qualname__
        attributes["exception.message"] = str(record.exc_info[1])
    span.add_event(LOG_EVENT, attributes, timestamp=int(record.created * 1e9))


def install(*, span_events: bool = False, event_level: int = logging.WARNING) -> None:
    """Put ``trace_id`` and ``span_id`` on every logging record; with ``span_events``, records
    at ``event_level`` and above also become events on the current span. Calling it again
    changes the switches; the factory is wrapped once."""
    global _previous
    if not isinstance(event_level, int) or isinstance(event_level, bool):
        raise TypeError(f"event_level is a logging level number, not {event_level!r}")
    base = _previous or logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        span = _stamp(record)
        if (
            span_events
            and span is not None
            and record.levelno >= event_level
            and span.is_recording()
        ):
            _as_event(span, record)
        return record

    _previous = base
    logging.setLogRecordFactory(factory)


def uninstall() -> None:
    """Put back the record factory ``install()`` wrapped."""
    global _previous
    if _previous is not None:
        logging.setLogRecordFactory(_previous)
        _previous = None


class TraceIdFilter(logging.Filter):
    """``trace_id`` and ``span_id`` on the records one handler (or logger) sees; lets every
    record through. Records already stamped by ``install()`` keep their ids: those are the ids
    where the record was made, which a handler running on another thread would not know."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            _stamp(record)
        return True


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, inside one (an
    event outside any span is left as it is)."""
    trace_id, span_id, span = _ids()
    if span is not None:
        event_dict.setdefault("trace_id", trace_id)
        event_dict.setdefault("span_id", span_id)
    return event_dict
