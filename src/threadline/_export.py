"""The export path's guard: an exporter failure is logged once, counted, and never raised."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext

from threadline.semconv import PENDING

log = logging.getLogger("threadline")


class ExportStats:
    """Counters of the export path, process-wide. Read them with threadline.export_stats().

    Every recorded span that ends is counted in `ended`; once the export path has shut down,
    ended == exported + failed + dropped (settle() counts what never left as dropped).
    Announcements (pending copies of started spans) are counted apart: they are not spans of
    their own."""

    def __init__(self) -> None:
        # Reentrant: a SIGTERM handler's final flush (threadline._exit) reports from the main
        # thread, which the signal may have caught inside one of these methods.
        self._lock = threading.RLock()
        self.ended = 0  # recorded spans handed to the batch processor
        self.exported = 0
        self.failed = 0  # spans in batches the exporter could not deliver
        self.dropped = 0  # spans that never reached the exporter (full queue, exit timeout)
        self.announced = 0  # pending copies exported when spans started
        self.announce_failed = 0  # pending copies that could not be sent
        self.announce_skipped = 0  # not even tried: announcing pauses after a failure
        self.errors: dict[str, int] = {}
        self.epoch = 0  # bumped by settle(): an export still in flight then was counted dropped
        self._reported_failure = False
        self._reported_drop = False
        self._reported_announce = False
        self._last_report: tuple | None = None
        # Queues (OTLPBatchProcessor) whose spans count as ended while they wait: they count no
        # span one by one, and take them out through taken().
        self._queues: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(
        self, *, exported: int = 0, failed: int = 0, dropped: int = 0, announced: int = 0
    ) -> None:
        with self._lock:
            self.exported += exported
            self.failed += failed
            self.dropped += dropped
            self.announced += announced

    def end(self) -> None:
        with self._lock:
            self.ended += 1

    def watch(self, queue: Any) -> None:
        """Count the spans queue.queued() reports as ended, until they are taken()."""
        with self._lock:
            self._queues.add(queue)

    def taken(self, take: Callable[[], int]) -> int:
        """Run take(), which takes spans out of a watched queue and says how many, and count them
        as ended: together, so that no snapshot counts a span twice or not at all."""
        with self._lock:
            n = take()
            self.ended += n
            return n

    def _ended(self) -> int:
        return self.ended + sum(queue.queued() for queue in self._queues)

    def delivered(self, spans: int, epoch: int) -> None:
        """An export that began in `epoch` succeeded (already counted dropped if settled since)."""
        with self._lock:
            if epoch == self.epoch:
                self.exported += spans

    def failure(self, kind: str, spans: int, message: str, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                return
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

    def announce_failure(self, kind: str, message: str, pause: float) -> None:
        with self._lock:
            self.announce_failed += 1
            self.errors[f"announce_{kind}"] = self.errors.get(f"announce_{kind}", 0) + 1
            first, self._reported_announce = not self._reported_announce, True
        if first:
            log.warning(
                "threadline: could not announce a started span: %s; announcing pauses for %gs "
                "after each failure (counted, not logged; see threadline.export_stats())",
                message,
                pause,
            )

    def skip_announce(self) -> None:
        with self._lock:
            self.announce_skipped += 1

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

    def settle(self, reason: str) -> int:
        """Count every ended span that was neither exported, failed nor dropped as dropped for
        `reason`: the export path has stopped, so they never will be. Returns how many."""
        with self._lock:
            missing = self._ended() - self.exported - self.failed - self.dropped
            if missing <= 0:
                return 0
            self.epoch += 1  # an export still in flight was among them: its outcome is moot
        self.drop(missing, reason)
        return missing

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "ended": self._ended(),
                "exported": self.exported,
                "failed": self.failed,
                "dropped": self.dropped,
                "announced": self.announced,
                "announce_failed": self.announce_failed,
                "announce_skipped": self.announce_skipped,
                "errors": dict(self.errors),
            }

    def report(self, reason: str = "not_exported") -> None:
        """Say at shutdown what never arrived, if anything: exact about the spans that ended."""
        self.settle(reason)
        s = self.snapshot()
        line = (s["exported"], s["failed"], s["dropped"], s["announce_failed"])
        if not (s["failed"] or s["dropped"] or s["announce_failed"]) or line == self._last_report:
            return
        self._last_report = line
        log.warning(
            "threadline: %d span(s) exported, %d failed to export, %d dropped%s",
            s["exported"],
            s["failed"],
            s["dropped"],
            f"; {s['announce_failed']} announcement(s) of started spans not sent"
            if s["announce_failed"]
            else "",
        )

    def reset(self) -> None:
        with self._lock:
            self.ended = self.exported = self.failed = self.dropped = 0
            self.announced = self.announce_failed = self.announce_skipped = 0
            self.errors.clear()
            self._reported_failure = self._reported_drop = self._reported_announce = False
            self._last_report = None


stats = ExportStats()
# A forked child starts its own count: the parent's spans are the parent's to report.
os.register_at_fork(after_in_child=stats.reset)


class _QueueFullFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Queue full" not in message and "Queue is full" not in message


_said_unknown = False


def count_drops(batch_span_processor) -> None:
    """Count every span handed to an SDK BatchSpanProcessor (`ended`) and each one it drops
    because its queue is full (`dropped`, logged once rather than once per span).

    The SDK keeps its queue in a bounded deque (`_batch_processor._queue` from 1.3x, `queue`
    before), which is what is read here. A processor without one is said once; its drops are
    then counted when the export path shuts down (ExportStats.settle), not as they happen."""
    global _said_unknown
    bsp = batch_span_processor
    inner = getattr(bsp, "_batch_processor", bsp)
    queue = next(
        (
            q
            for q in (getattr(inner, "_queue", None), getattr(bsp, "queue", None))
            if isinstance(q, deque) and q.maxlen
        ),
        None,
    )
    if queue is None and not _said_unknown:
        _said_unknown = True
        log.warning(
            "threadline: this opentelemetry-sdk's %s keeps no queue threadline knows; spans it "
            "drops are counted when threadline shuts down, not as they are dropped",
            type(bsp).__name__,
        )
    original = bsp.on_end

    def on_end(span: ReadableSpan) -> None:
        if cast(SpanContext, span.context).trace_flags.sampled:  # what the processor queues
            stats.end()
            if queue is not None and len(queue) >= (queue.maxlen or 0):  # the SDK drops the oldest
                stats.drop(1, "queue_full")
        original(span)

    bsp.on_end = on_end
    quiet = _QueueFullFilter()
    for name in ("opentelemetry.sdk._shared_internal", "opentelemetry.sdk.trace.export"):
        logging.getLogger(name).addFilter(quiet)


class _Quiet(logging.Filter):
    """The OTLP exporter logs every failed attempt; we log the first and count the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


_quiet = _Quiet()


class GuardedExporter(SpanExporter):
    def __init__(self, exporter: SpanExporter, endpoint: str | None = None) -> None:
        self.exporter = exporter
        self.endpoint = endpoint
        self.keep_open = False  # set when a reconfiguration reuses this exporter instance
        if endpoint is not None:
            for name in (
                "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                "opentelemetry.exporter.otlp.proto.http",
            ):
                logging.getLogger(name).addFilter(_quiet)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._counted(len(spans), lambda: self.exporter.export(spans))

    def send(self, data: bytes, count: int) -> SpanExportResult:
        """Send `count` spans encoded ahead (an OTLPExporter's send()), counted as export() is."""
        return self._counted(count, lambda: self.exporter.send(data, count))  # type: ignore[attr-defined]

    def _counted(self, n: int, export: Callable[[], SpanExportResult]) -> SpanExportResult:
        epoch = stats.epoch
        try:
            result = export()
        except Exception as exc:  # noqa: BLE001 - tracing never breaks the program
            stats.failure(type(exc).__name__, n, f"{type(exc).__name__}: {exc}", epoch)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            stats.delivered(n, epoch)
        else:
            where = f" to {self.endpoint}" if self.endpoint else ""
            stats.failure("export_failed", n, f"the exporter reported failure{where}", epoch)
        return result

    def shutdown(self) -> None:
        if self.keep_open:
            return
        try:
            self.exporter.shutdown()
        except Exception:
            log.debug("threadline: exporter shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.exporter, "force_flush", None)
        return flush(timeout_millis) if flush else True


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


# Announcing is synchronous (the work waits for it), so it must never stall the work: a short
# timeout, no retry after one, and after any failure no announcing for a while.
ANNOUNCE_TIMEOUT = 0.5  # seconds
ANNOUNCE_PAUSE = 30.0  # seconds without announcements after a failure


class _PlainOTLP(SpanExporter):
    """OTLP/HTTP protobuf over one kept-alive connection (threadline._otlp_http), with no retry:
    for the one-span requests of announcements, which the work waits for. Used only for a plain
    http endpoint without extra headers; anything else takes the full path."""

    def __init__(self, url: str) -> None:
        from threadline._otlp_http import Connection

        self.connection = Connection(url, ANNOUNCE_TIMEOUT)

    @classmethod
    def suits(cls, exporter: SpanExporter, endpoint: str | None) -> bool:
        from threadline._otlp_http import suits

        return (
            endpoint is not None
            and suits(endpoint)
            and type(exporter).__name__ in ("OTLPExporter", "OTLPSpanExporter")
            and not any(
                os.environ.get(k)
                for k in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            )
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from threadline._otlp_encoder import encode_spans

        response, _ = self.connection.post(encode_spans(spans), _PROTOBUF)
        return SpanExportResult.SUCCESS if response.status < 300 else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.connection.close()


_PROTOBUF = {"Content-Type": "application/x-protobuf"}


class PendingAnnouncer(SpanProcessor):
    """Exports a pending copy of every sampled span as it starts, before the work goes on, so
    work that is killed mid-span (SIGKILL) still shows as an incomplete span. After a failed
    announcement it announces nothing for ANNOUNCE_PAUSE seconds (counted as skipped)."""

    def __init__(self, guarded: GuardedExporter) -> None:
        real = guarded.exporter
        if _PlainOTLP.suits(real, guarded.endpoint):
            # suits() saw an http:// endpoint
            real = _PlainOTLP(cast(str, getattr(guarded.exporter, "_endpoint", guarded.endpoint)))
        self.exporter = real
        self.endpoint = guarded.endpoint
        self._paused_until = 0.0

    def on_start(self, span: Span, parent_context=None) -> None:
        if not cast(SpanContext, span.context).trace_flags.sampled:
            return
        if self._paused_until and time.monotonic() < self._paused_until:
            stats.skip_announce()
            return
        try:
            result = self.exporter.export([pending_copy(span)])
        except Exception as exc:  # noqa: BLE001 - tracing never breaks the program
            kind, problem = type(exc).__name__, f"{type(exc).__name__}: {exc}"
        else:
            if result is SpanExportResult.SUCCESS:
                stats.add(announced=1)
                return
            where = f" to {self.endpoint}" if self.endpoint else ""
            kind, problem = "export_failed", f"the exporter reported failure{where}"
        self._paused_until = time.monotonic() + ANNOUNCE_PAUSE
        stats.announce_failure(kind, problem, ANNOUNCE_PAUSE)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        if isinstance(self.exporter, _PlainOTLP):
            self.exporter.shutdown()  # the full exporter is the batch processor's to close

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
