"""Logs that carry the trace: ids on stdlib records (every logger, every thread), the documented
format, records at WARNING and above as span events, and the structlog processor."""

from __future__ import annotations

import io
import logging
import re
import threading

import pytest
import structlog

import threadline as tl
from threadline.integrations import logs
from threadline.testing import hex_ids


@pytest.fixture
def installed():
    before = logging.getLogRecordFactory()
    yield logs
    logs.uninstall()
    assert logging.getLogRecordFactory() is before


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept():
    handler = Keep()
    log = logging.getLogger("shop.payments")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield log, handler.records
    log.removeHandler(handler)


def test_every_record_carries_the_current_span_ids(traces, installed, kept):
    log, records = kept
    installed.install()
    log.info("before any span")
    with tl.span("charge") as span:
        log.info("charging %s", "card")
        child = logging.getLogger("shop.payments.card")  # a child logger's record, propagated
        child.debug("authorised")
        done = threading.Event()
        # a thread started inside the span runs in its context (threadline's boundaries)
        threading.Thread(target=lambda: (log.info("from a thread"), done.set())).start()
        assert done.wait(10)
    log.info("after")
    trace_id, span_id = hex_ids(span)
    assert [(r.getMessage(), r.trace_id, r.span_id) for r in records] == [  # type: ignore[attr-defined]
        ("before any span", "0" * 32, "0" * 16),
        ("charging card", trace_id, span_id),
        ("authorised", trace_id, span_id),
        ("from a thread", trace_id, span_id),
        ("after", "0" * 32, "0" * 16),
    ]
    assert traces.one().find("charge").events == []  # no events unless asked for


def test_asyncio_tasks_log_under_their_own_spans(installed, kept):
    import asyncio

    log, records = kept
    installed.install()
    ids = {}

    async def work(name: str) -> None:
        with tl.span(name) as span:
            ids[name] = hex_ids(span)
            await asyncio.sleep(0)  # the other task runs in between
            log.info(name)

    async def main() -> None:
        await asyncio.gather(work("a"), work("b"))

    asyncio.run(main())
    assert sorted((r.getMessage(), r.trace_id, r.span_id) for r in records) == [  # type: ignore[attr-defined]
        ("a", *ids["a"]),
        ("b", *ids["b"]),
    ]
    assert ids["a"] != ids["b"]


def test_the_documented_format_prints_the_ids(installed):
    installed.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(logs.FORMAT))
    log = logging.getLogger("shop.orders")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with tl.span("place order") as span:
            log.warning("stock low for %s", "tea")
        log.info("idle")
    finally:
        log.removeHandler(handler)
    trace_id, span_id = hex_ids(span)
    first, second = out.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(
        f"{stamp} WARNING \\[shop.orders\\] \\[trace_id={trace_id} span_id={span_id}\\] "
        "stock low for tea",
        first,
    ), first
    assert re.fullmatch(
        f"{stamp} INFO \\[shop.orders\\] \\[trace_id={'0' * 32} span_id={'0' * 16}\\] idle",
        second,
    ), second


def test_warnings_and_above_become_events_on_the_current_span(traces, installed, kept):
    log, records = kept
    installed.install(span_events=True)
    with tl.span("charge"):
        log.info("not an event")
        log.warning("retrying %s", "card")
        try:
            raise TimeoutError("bank did not answer")
        except TimeoutError:
            log.exception("charge failed")
    log.error("outside any span: no event, still logged")
    [charge] = traces.one()
    assert [name for name, _ in charge.events] == ["log", "log"]
    (_, warning), (_, error) = charge.events
    line = records[1].lineno
    assert warning == {
        "log.severity": "WARNING",
        "log.message": "retrying card",
        "log.logger": "shop.payments",
        "code.file.path": __file__,
        "code.line.number": line,
        "code.function.name": "test_warnings_and_above_become_events_on_the_current_span",
    }
    assert {k: error[k] for k in ("log.severity", "log.message", "exception.type")} == {
        "log.severity": "ERROR",
        "log.message": "charge failed",
        "exception.type": "TimeoutError",
    }
    assert error["exception.message"] == "bank did not answer"
    assert [r.getMessage() for r in records] == [
        "not an event",
        "retrying card",
        "charge failed",
        "outside any span: no event, still logged",
    ]


def test_event_level_and_reinstalling(traces, installed, kept):
    log, _ = kept
    installed.install(span_events=True, event_level=logging.ERROR)
    installed.install(span_events=True, event_level=logging.ERROR)  # wraps the factory once
    with tl.span("charge"):
        log.warning("a warning: below the level")
        log.error("an error")
    [charge] = traces.one()
    assert [attrs["log.message"] for _, attrs in charge.events] == ["an error"]
    with pytest.raises(TypeError, match="event_level is a logging level number, not 'WARNING'"):
        installed.install(event_level="WARNING")  # type: ignore[arg-type]


def test_filter_for_one_handler():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.TraceIdFilter())
    handler.setFormatter(logging.Formatter("%(trace_id)s %(span_id)s %(message)s"))
    log = logging.getLogger("shop.filtered")
    log.addHandler(handler)
    log.propagate = False
    try:
        with tl.span("work") as span:
            log.warning("inside")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    trace_id, span_id = hex_ids(span)
    assert out.getvalue() == f"{trace_id} {span_id} inside\n"


def test_structlog_processor():
    with structlog.testing.capture_logs(processors=[logs.add_trace_ids]) as events:
        log = structlog.get_logger()
        with tl.span("ship") as span:
            log.info("shipped", order=7)
        log.info("idle")
    trace_id, span_id = hex_ids(span)
    assert events == [
        {
            "event": "shipped",
            "order": 7,
            "trace_id": trace_id,
            "span_id": span_id,
            "log_level": "info",
        },
        {"event": "idle", "log_level": "info"},
    ]


def test_import_threadline_does_not_import_logs():
    import subprocess
    import sys

    code = "import sys, threadline; print('threadline.integrations.logs' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_beside_the_contrib_logging_instrumentation(installed, kept):
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    log, records = kept
    contrib = LoggingInstrumentor()
    contrib.instrument(inject_trace_context=True, enable_log_auto_instrumentation=False)
    installed.install()
    try:
        with tl.span("charge") as span:
            log.info("both")
    finally:
        installed.uninstall()
        contrib.uninstrument()
    trace_id, span_id = hex_ids(span)
    [r] = records
    assert (r.trace_id, r.span_id) == (trace_id, span_id)  # type: ignore[attr-defined]
    assert (r.otelTraceID, r.otelSpanID) == (trace_id, span_id)  # type: ignore[attr-defined]
