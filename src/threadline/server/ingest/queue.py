"""The bounded ingest queue in front of the store, and its one writer thread.

An export is acknowledged only after the store's write holding its spans returns, durable
(DuckDB: a synced segment, storage/segments.py), so a 200 survives `kill -9`. One writer thread merges whatever exports are waiting
into a single commit; when the queue holds more than its bound, exporters get 503 + Retry-After
(gRPC UNAVAILABLE with RetryInfo), which every OTLP exporter retries.

An export whose commit fails is answered 500 (gRPC INTERNAL) with the store's reason, or 503 +
Retry-After (UNAVAILABLE) when the failure may pass (an I/O error, no commit within 60 s). Exports
that shared the failed commit are stored one by one, and the writer carries on.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from threadline.server.model import Span
from threadline.server.storage.base import Store
from threadline.server.storage.layout import Rows, SpanColumns

log = logging.getLogger("threadline.server")

MAX_REQUEST_BYTES = 16 * 1024 * 1024  # the largest export taken, over HTTP or gRPC
RETRY_AFTER_S = 2
COMMIT_TIMEOUT_S = 60


class Busy(Exception):
    """The ingest queue is full; the exporter should retry later."""


class Ingest:
    """Bounded queue + one writer thread. `submit` returns a future resolved after commit."""

    def __init__(
        self,
        store: Store,
        max_queued_spans: int = 200_000,
        max_batch_spans: int = 20_000,
        retention_ns: int | None = None,
    ) -> None:
        self.store = store
        self.max_queued_spans = max_queued_spans
        self.max_batch_spans = max_batch_spans
        self.retention_ns = retention_ns
        self.committed = 0
        self.failed = 0
        self._queued = 0
        self._items: list[tuple[Rows, concurrent.futures.Future]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._listeners: list[Callable[[set[str]], None]] = []
        self._next_retention = 0.0
        self._thread = threading.Thread(target=self._run, name="threadline-ingest", daemon=True)
        self._thread.start()

    def subscribe(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        """Call `listener(trace_ids)` (on the writer thread) after each commit with the hex ids
        of the traces it touched; returns unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def submit(self, spans: Rows | list[Span]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()  # an accepted export is stored even if its caller leaves
        if isinstance(spans, list):
            spans = SpanColumns().add_spans(spans)
        if not len(spans):
            fut.set_result(0)
            return fut
        with self._cond:
            if self._closing:
                raise Busy("the server is shutting down")
            if self._queued and self._queued + len(spans) > self.max_queued_spans:
                raise Busy(f"ingest queue full ({self._queued} spans waiting to be stored)")
            self._items.append((spans, fut))
            self._queued += len(spans)
            self._cond.notify()
        return fut

    def _take(self) -> list[tuple[Rows, concurrent.futures.Future]] | None:
        """The next exports to commit together: [] once closing and drained, None when the wait
        ended with nothing queued (time to apply retention, outside the lock, so exporters are
        never held up by a delete)."""
        with self._cond:
            if not self._items and not self._closing:
                self._cond.wait(timeout=self._retention_wait())
            if not self._items:
                return [] if self._closing else None
            taken, n = [], 0
            while self._items and (not taken or n + len(self._items[0][0]) <= self.max_batch_spans):
                item = self._items.pop(0)
                taken.append(item)
                n += len(item[0])
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                self._retain()
                continue
            if not taken:
                return  # closing and drained
            try:
                self._store(taken)
            except Exception as exc:  # the writer outlives any failure (logged)
                log.exception("ingest writer failed")
                self._fail(taken, exc)
            finally:
                with self._cond:
                    self._queued -= sum(len(batch) for batch, _ in taken)
            self._retain()

    def _store(self, taken: list[tuple[Rows, concurrent.futures.Future]]) -> None:
        """Store exports in one commit; if that fails and it held several, store them one by one,
        so one bad export fails alone and those sharing its commit are unaffected."""
        exc = self._commit(taken)
        if exc is None:
            return
        if len(taken) == 1:
            self._fail(taken, exc)
            return
        for item in taken:
            exc = self._commit([item])
            if exc is not None:
                self._fail([item], exc)

    def _commit(self, taken: list[tuple[Rows, concurrent.futures.Future]]) -> Exception | None:
        """One commit; resolves the exports when it succeeds, else returns the store's error."""
        batches = [batch for batch, _ in taken]
        n = sum(len(b) for b in batches)
        try:
            self.store.write_columns(batches)
        except Exception as exc:  # noqa: BLE001 - the exporter is told
            return exc
        self.committed += n
        for _, fut in taken:
            _resolve(fut, result=n)
        listeners = list(self._listeners)
        trace_ids = set().union(*(b.trace_ids() for b in batches)) if listeners else set()
        for listener in listeners:
            try:
                listener(trace_ids)
            except Exception:  # a slow/broken live viewer never stops ingest (logged)
                log.exception("live listener failed")
        return None

    def _fail(self, taken: list[tuple[Rows, concurrent.futures.Future]], exc: Exception) -> None:
        n = sum(len(batch) for batch, fut in taken if not fut.done())
        if n:
            self.failed += n
            log.error("storing %d spans failed: %s", n, exc)
        for _, fut in taken:
            _resolve(fut, exc=exc)

    def _retention_wait(self) -> float | None:
        return None if self.retention_ns is None else 60.0

    def _retain(self) -> None:
        if self.retention_ns is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + 60
        try:  # a retention longer than the epoch deletes nothing
            deleted = self.store.delete_before(max(0, time.time_ns() - self.retention_ns))
            if deleted:
                log.info("retention: deleted %d spans", deleted)
        except Exception:  # retention retries next minute (logged)
            log.exception("retention failed")

    def close(self, timeout: float = 30) -> None:
        """Store everything already accepted, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)


def _resolve(
    fut: concurrent.futures.Future, result: Any = None, exc: Exception | None = None
) -> None:
    """Settle an export's future once; a second attempt is a no-op."""
    if fut.done():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


def not_stored(exc: BaseException, commit_timeout: float) -> tuple[bool, str]:
    """(retryable, message) for an export that was not stored. The queue being full, a slow
    commit and an I/O error pass; any other store error would fail again the same way."""
    if isinstance(exc, Busy):
        return True, str(exc)
    if isinstance(exc, TimeoutError):
        return True, f"spans not stored within {commit_timeout:g} s: the store is busy"
    return isinstance(exc, OSError | MemoryError), f"spans not stored: {str(exc)[:500]}"
