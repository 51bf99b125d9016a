"""The batch span processor of the OTLP export path: each span is encoded as it ends, and one
thread sends the encoded spans in batches.

The SDK's BatchSpanProcessor keeps every ended span alive until its export thread encodes it:
thousands of objects for the garbage collector to visit again and again, read by another thread
once they have left its cache. Encoded at the end, on the thread that ends it, a span is freed
at once and the queue holds bytes, which the collector never visits; and ending a span takes no
lock here. benchmarks/bench_export.py measures what that saves.

Queue size (for each resource and instrumentation scope), batch size and schedule delay follow
the SDK's OTEL_BSP_* variables and defaults. Every span handed here is counted in
export_stats(): exported, failed (its request failed, or it could not be encoded) or dropped
(the queue was full: the new span is the one dropped; or the process stopped first)."""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from functools import partial
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from threadline._export import GuardedExporter, stats
from threadline._otlp_encoder import OWN, encode_request, group, span_field

_NOTHING = object()  # the resource and scope of no span


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
        # A queue of span fields (bytes) for each resource and scope: ending a span takes no
        # lock, and leaves nothing the garbage collector visits. The last one used is at hand.
        self._queues: dict[tuple[int, int], tuple[Any, Any, deque[bytes]]] = {}
        self._last: tuple[Any, Any, deque[bytes]] = (_NOTHING, _NOTHING, deque())
        self._lock = threading.Lock()  # adding a queue
        self._export_lock = threading.Lock()  # one batch in flight at a time
        self._wake = threading.Event()
        stats.watch(self)
        self._thread = threading.Thread(
            target=self._run, name="threadline-otlp-export", daemon=True
        )
        self._thread.start()

    def queued(self) -> int:
        """How many spans wait to be sent."""
        return sum(len(q) for _, _, q in list(self._queues.values()))

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context[3] & 1:  # pyright: ignore[reportOptionalSubscript] - trace_flags.sampled
            return
        if self._shutdown:
            stats.end()
            stats.drop(1, "ended_after_shutdown")
            return
        try:
            field = span_field(span)
        except Exception as error:  # noqa: BLE001 - this span fails, not its batch
            stats.end()
            stats.failure("encode_error", 1, f"could not encode span {span.name!r}: {error}")
            return
        if type(span) in OWN:
            resource, scope = span._resource, span._instrumentation_scope or None  # noqa: SLF001
        else:
            resource, scope = span.resource, span.instrumentation_scope or None
        last = self._last  # one read: another thread may replace it
        queue = (
            last[2] if last[0] is resource and last[1] is scope else self._queue(resource, scope)
        )
        if len(queue) >= self._max_queue:
            stats.end()
            stats.drop(1, "queue_full")
            return
        queue.append(field)  # counted ended from now on (queued())
        if len(queue) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def _queue(self, resource: Any, scope: Any) -> deque[bytes]:
        with self._lock:
            found = self._queues.get((id(resource), id(scope)))  # the pair keeps both ids taken
            if found is None:
                found = self._queues[(id(resource), id(scope))] = (resource, scope, deque())
            self._last = found
            return found[2]

    def _run(self) -> None:
        while not self._shutdown:
            woken = self._wake.wait(self._delay)  # by a full batch; else the delay has passed
            self._wake.clear()
            if not self._shutdown:
                self._export(everything=not woken)
        self._export(everything=True)

    def _export(self, everything: bool) -> None:
        """Send full batches while there are any; with everything, the rest too."""
        with self._export_lock:
            while True:
                queued = self.queued()
                if not queued or (queued < self._batch and not everything):
                    return
                groups: dict[Any, dict[Any, list[bytes]]] = {}
                count = stats.taken(partial(self._take, groups))
                token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
                try:
                    self.span_exporter.send(encode_request(groups), count)
                finally:
                    detach(token)

    def _take(self, groups: dict[Any, dict[Any, list[bytes]]]) -> int:
        """Move up to a batch of span fields from the queues into groups (as encode_request()
        takes them); how many."""
        taken = 0
        for resource, scope, queue in list(self._queues.values()):
            n = min(len(queue), self._batch - taken)
            if n:
                group(groups, resource, scope).extend([queue.popleft() for _ in range(n)])
                taken += n
        return taken

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
