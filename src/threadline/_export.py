"""The export path's guard: an exporter failure is logged once, counted, and never raised."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("threadline")


class ExportStats:
    """Counters of the export path, process-wide. Read them with threadline.export_stats()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exported = 0
        self.failed = 0  # spans in batches the exporter could not deliver
        self.dropped = 0  # spans discarded before reaching the exporter (full queue, shutdown)
        self.announced = 0  # pending copies exported when spans started
        self.errors: dict[str, int] = {}
        self._reported_failure = False
        self._reported_drop = False

    def add(
        self, *, exported: int = 0, failed: int = 0, dropped: int = 0, announced: int = 0
    ) -> None:
        with self._lock:
            self.exported += exported
            self.failed += failed
            self.dropped += dropped
            self.announced += announced

    def failure(self, kind: str, spans: int, message: str) -> None:
        with self._lock:
            self.failed += spans
            self.errors[kind] = self.errors.get(kind, 0) + 1
            first, self._reported_failure = not self._reported_failure, True
        if first:
            log.warning(
                "threadline: could not export %d span(s): %s (further failures are counted, "
                "not logged; see threadline.export_stats())",
                spans,
                message,
            )

    def drop(self, spans: int, reason: str) -> None:
        with self._lock:
            self.dropped += spans
            self.errors[reason] = self.errors.get(reason, 0) + spans
            first, self._reported_drop = not self._reported_drop, True
        if first:
            log.warning(
                "threadline: dropping spans before export (%s); further drops are counted, "
                "not logged; see threadline.export_stats()",
                reason,
            )

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "exported": self.exported,
                "failed": self.failed,
                "dropped": self.dropped,
                "announced": self.announced,
                "errors": dict(self.errors),
            }

    def report(self) -> None:
        """Say at shutdown what never arrived, if anything."""
        s = self.snapshot()
        if s["failed"] or s["dropped"]:
            log.warning(
                "threadline: %d span(s) exported, %d failed to export, %d dropped",
                s["exported"],
                s["failed"],
                s["dropped"],
            )

    def reset(self) -> None:
        with self._lock:
            self.exported = self.failed = self.dropped = self.announced = 0
            self.errors.clear()
            self._reported_failure = self._reported_drop = False


stats = ExportStats()
# A forked child starts its own count: the parent's spans are the parent's to report.
os.register_at_fork(after_in_child=stats.reset)


class _DropCounter:
    """Stands in for the SDK batch processor's metrics object so its drops reach our counters."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def register_queue_size(self, get_queue_size) -> None:
        self.inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        stats.drop(count, error_type)
        self.inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self.inner.finish_items(count)


class _QueueFullFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Queue full" not in record.getMessage()


def count_drops(batch_span_processor) -> None:
    """Count (and log once) the spans an SDK BatchSpanProcessor drops, instead of one warning
    per span. Tolerates SDK versions without the hook: drops are then only logged by the SDK."""
    inner = getattr(batch_span_processor, "_batch_processor", None)
    if inner is None or not hasattr(inner, "_metrics"):
        return
    inner._metrics = _DropCounter(inner._metrics)
    logging.getLogger("opentelemetry.sdk._shared_internal").addFilter(_QueueFullFilter())


class _Quiet(logging.Filter):
    """The OTLP exporter logs every failed attempt; we log the first and count the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


_quiet = _Quiet()


class GuardedExporter(SpanExporter):
    def __init__(
        self, exporter: SpanExporter, endpoint: str | None = None, counter: str = "exported"
    ) -> None:
        self.exporter = exporter
        self.endpoint = endpoint
        self.keep_open = False  # set when a reconfiguration reuses this exporter instance
        self.counter = counter
        if endpoint is not None:
            for name in (
                "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                "opentelemetry.exporter.otlp.proto.http",
            ):
                logging.getLogger(name).addFilter(_quiet)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        try:
            result = self.exporter.export(spans)
        except Exception as exc:  # noqa: BLE001 - tracing never breaks the program
            stats.failure(type(exc).__name__, n, f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            stats.add(**{self.counter: n})
        else:
            where = f" to {self.endpoint}" if self.endpoint else ""
            stats.failure("export_failed", n, f"the exporter reported failure{where}")
        return result

    def shutdown(self) -> None:
        if self.keep_open:
            return
        try:
            self.exporter.shutdown()
        except Exception:  # noqa: BLE001
            log.debug("threadline: exporter shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.exporter, "force_flush", None)
        return flush(timeout_millis) if flush else True


PENDING = "threadline.pending"


def pending_copy(span: ReadableSpan) -> ReadableSpan:
    """The announcement of a span that has just started: same ids, parent, name, kind and start,
    zero length, marked `threadline.pending = true` (docs/internals.md)."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes={**(span.attributes or {}), PENDING: True},
        links=span.links,
        kind=span.kind,
        start_time=span.start_time,
        end_time=span.start_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class _PlainOTLP(SpanExporter):
    """OTLP/HTTP protobuf over one kept-alive http.client connection: a third of the cost of the
    full exporter for the one-span requests of announcements, which the work waits for. Used
    only for a plain http endpoint without extra headers; anything else takes the full path."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = (
            parts.hostname,
            parts.port or 80,
            parts.path or "/v1/traces",
        )
        self._lock = threading.Lock()
        self._conn: Any = None  # http.client.HTTPConnection, imported when first used
        self._pid = 0

    @classmethod
    def suits(cls, exporter: SpanExporter, endpoint: str | None) -> bool:
        return (
            endpoint is not None
            and endpoint.startswith("http://")
            and type(exporter).__name__ in ("OTLPExporter", "OTLPSpanExporter")
            and not any(
                os.environ.get(k)
                for k in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            )
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        import http.client

        from threadline._otlp_encoder import encode_spans

        body = encode_spans(spans)
        headers = {"Content-Type": "application/x-protobuf"}
        with self._lock:
            for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
                if self._conn is None or self._pid != os.getpid():
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                    self._pid = os.getpid()
                try:
                    self._conn.request("POST", self.path, body, headers)
                    response = self._conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
                    continue
                return (
                    SpanExportResult.SUCCESS if response.status < 300 else SpanExportResult.FAILURE
                )
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PendingAnnouncer(SpanProcessor):
    """Exports a pending copy of every sampled span as it starts, before the work goes on, so
    work that is killed mid-span (SIGKILL) still shows as an incomplete span."""

    def __init__(self, guarded: GuardedExporter) -> None:
        real = guarded.exporter
        if _PlainOTLP.suits(real, guarded.endpoint):
            real = _PlainOTLP(getattr(guarded.exporter, "_endpoint", guarded.endpoint))
        self.exporter = GuardedExporter(real, guarded.endpoint, counter="announced")

    def on_start(self, span: Span, parent_context=None) -> None:
        if span.context.trace_flags.sampled:
            self.exporter.export([pending_copy(span)])

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        if isinstance(self.exporter.exporter, _PlainOTLP):
            self.exporter.exporter.shutdown()  # the full exporter is the batch processor's to close

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
