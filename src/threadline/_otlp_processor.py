"""The batch span processor of the OTLP export path: each span is encoded as it ends, and one
thread sends the encoded spans in batches.

The SDK's BatchSpanProcessor keeps every ended span alive until its export thread encodes it:
thousands of objects for the garbage collector to visit again and again, read by another thread
once they have left its cache. Encoded at the end, on the thread that ends it, a span is freed
at once and the queue holds bytes, which the collector never visits. That halves what exporting
a span costs (benchmarks/bench_export.py).

Queue size, batch size and schedule delay follow the SDK's OTEL_BSP_* variables and defaults.
Every span handed here is counted in export_stats(): exported, failed (its request failed, or it
could not be encoded) or dropped (the queue was full: the new span is the one dropped; or the
process stopped first)."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from threadline._export import GuardedExporter, stats
from threadline._otlp_encoder import encode_request, group, span_field

log = logging.getLogger("threadline")


class OTLPBatchProcessor(SpanProcessor):
    def __init__(self, exporter: GuardedExporter, max_queue_size: int | None = None) -> None:
        """exporter guards an OTLPExporter whose sends_encoded() is true."""
        sdk = BatchSpanProcessor  # its defaults, read from OTEL_BSP_*, and its checks
        self._max_queue = max_queue_size or sdk._default_max_queue_size()  # noqa: SLF001
        self._delay = sdk._default_schedule_delay_millis() / 1e3  # noqa: SLF001
        self._batch = sdk._default_max_export_batch_size()  # noqa: SLF001
        sdk._validate_arguments(self._max_queue, self._delay * 1e3, self._batch)  # noqa: SLF001
        self.span_exporter = exporter  # the SDK processor's name for it
        self._shutdown = False
        self._start()
        # A forked child starts with an empty queue and a thread of its own, as the SDK's does.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (p := ref()) and p._start())  # noqa: SLF001

    def _start(self) -> None:
        # The queue holds span fields (bytes) and, before the first span of each run of spans of
        # one resource and scope, that (resource, scope) pair; _queued counts the spans.
        self._queue: deque[bytes | tuple[Any, Any]] = deque()
        self._queued = 0
        self._resource: Any = None  # of the last span queued
        self._scope: Any = None
        self._lock = threading.Lock()  # the queue, _queued and the last span's pair
        self._export_lock = threading.Lock()  # one batch in flight at a time
        self._group: tuple[Any, Any] = (None, None)  # of the next span field taken from the queue
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="threadline-otlp-export", daemon=True
        )
        self._thread.start()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:  # pyright: ignore[reportOptionalMemberAccess]
            return
        stats.end()
        if self._shutdown:
            stats.drop(1, "ended_after_shutdown")
            return
        try:
            field = span_field(span)
        except Exception as error:  # noqa: BLE001 - this span fails, not its batch
            stats.failure("encode_error", 1, f"could not encode span {span.name!r}: {error}")
            return
        resource, scope = span.resource, span.instrumentation_scope or None
        wake = False
        with self._lock:
            if self._queued >= self._max_queue:
                full = True
            else:
                full = False
                if resource is not self._resource or scope is not self._scope:
                    self._resource, self._scope = resource, scope
                    self._queue.append((resource, scope))
                self._queue.append(field)
                self._queued += 1
                wake = self._queued >= self._batch
        if full:
            stats.drop(1, "queue_full")
        elif wake and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._shutdown:
            self._wake.wait(self._delay)
            self._wake.clear()
            if not self._shutdown:
                self._export(everything=False)
        self._export(everything=True)

    def _export(self, everything: bool) -> None:
        """Send full batches while there are any; with everything, the rest too."""
        with self._export_lock:
            while True:
                groups: dict[Any, dict[Any, list[bytes]]] = {}
                with self._lock:
                    queued = self._queued
                    if not queued or (queued < self._batch and not everything):
                        return
                    count = min(queued, self._batch)
                    self._queued -= count
                    queue, current = self._queue, self._group
                    fields = None
                    taken = 0
                    while taken < count:
                        item = queue.popleft()
                        if type(item) is tuple:
                            current, fields = item, None
                        else:
                            if fields is None:
                                fields = group(groups, *current)
                            fields.append(item)  # type: ignore[arg-type] - a field
                            taken += 1
                    self._group = current
                token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
                try:
                    self.span_exporter.send(encode_request(groups), count)
                finally:
                    detach(token)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if not self._shutdown:
            self._export(everything=True)
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        self._thread.join(30)
        self.span_exporter.shutdown()
