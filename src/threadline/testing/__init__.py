"""Capture traces in tests and assert on them.

The pytest plugin gives each test a `traces` fixture (a Capture). Spans ended in this process
arrive through a span processor; spans from other processes arrive as OTLP at the capture's
loopback collector (``traces.endpoint``), so tests across processes read like tests in one.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from threadline.testing.captured import CapturedSpan
from threadline.testing.collector import Collector

__all__ = ["Capture", "CapturedSpan", "Trace", "TraceAssertionError", "hex_ids"]


class TraceAssertionError(AssertionError):
    pass


def hex_ids(span: Any) -> tuple[str, str]:
    """(trace_id, span_id) as lowercase hex for a live span, a SpanContext or a Handoff."""
    sc = (
        span.get_span_context()
        if hasattr(span, "get_span_context")
        else getattr(span, "span_context", span)
    )
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


def _matcher(name: str | Callable[[CapturedSpan], bool]) -> Callable[[CapturedSpan], bool]:
    if callable(name):
        return name
    if isinstance(name, str):
        return lambda s: s.name == name
    raise TypeError(f"find_all() takes a span name or a predicate, not {type(name).__name__}")


class Trace:
    """The captured spans of one trace id."""

    def __init__(self, trace_id: str, spans: Sequence[CapturedSpan]) -> None:
        self.trace_id = trace_id
        self.spans = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))

    def __len__(self) -> int:
        return len(self.spans)

    def __iter__(self):
        return iter(self.spans)

    def __repr__(self) -> str:
        return f"<Trace {self.trace_id} spans={len(self.spans)}>"

    @property
    def roots(self) -> list[CapturedSpan]:
        ids = {s.span_id for s in self.spans}
        return [s for s in self.spans if s.parent_id is None or s.parent_id not in ids]

    @property
    def root(self) -> CapturedSpan:
        roots = self.roots
        if len(roots) != 1:
            raise TraceAssertionError(f"expected one root, found {len(roots)}\n{self.tree()}")
        return roots[0]

    def services(self) -> set[str]:
        return {s.service for s in self.spans}

    def find(self, name: str) -> CapturedSpan:
        """The one span with this name; fails if there are none or several."""
        found = self.find_all(name)
        if len(found) != 1:
            raise TraceAssertionError(
                f"expected one span named {name!r}, found {len(found)}\n{self.tree()}"
            )
        return found[0]

    def find_all(self, name: str | Callable[[CapturedSpan], bool]) -> list[CapturedSpan]:
        match = _matcher(name)
        return [s for s in self.spans if match(s)]

    def children(self, span: CapturedSpan) -> list[CapturedSpan]:
        return [s for s in self.spans if s.parent_id == span.span_id]

    @property
    def links(self) -> list[tuple[CapturedSpan, str, str]]:
        """(span, linked trace id, linked span id) for every link in the trace."""
        return [(s, t, sp) for s in self.spans for t, sp, _ in s.links]

    def assert_connected(self) -> None:
        """Exactly one root, and every other span's parent present in the trace."""
        ids = {s.span_id for s in self.spans}
        true_roots = [s for s in self.spans if s.parent_id is None]
        orphans = [s for s in self.spans if s.parent_id is not None and s.parent_id not in ids]
        problems = []
        for o in orphans:
            problems.append(
                f"orphan span {o.name!r} (service {o.service}, span {o.span_id}): "
                f"parent {o.parent_id} is missing"
            )
        if len(true_roots) > 1 or not (true_roots or orphans):  # orphans are reported above
            names = ", ".join(repr(r.name) for r in true_roots) or "none"
            problems.append(f"expected exactly one root, found {len(true_roots)} ({names})")
        if problems:
            raise TraceAssertionError(
                f"trace {self.trace_id} is not connected:\n  "
                + "\n  ".join(problems)
                + "\n"
                + self.tree()
            )

    def tree(self) -> str:
        ids = {s.span_id for s in self.spans}
        kids: dict[str | None, list[CapturedSpan]] = defaultdict(list)
        for s in self.spans:
            kids[s.parent_id if s.parent_id in ids else None].append(s)
        lines = [f"trace {self.trace_id}"]

        def walk(s: CapturedSpan, depth: int) -> None:
            missing = (
                ""
                if s.parent_id is None or s.parent_id in ids
                else f" (missing parent {s.parent_id})"
            )
            status = f" ERROR {s.status_message}" if s.status == "ERROR" else ""
            status += " (incomplete)" if s.pending else ""
            lines.append(
                f"{'  ' * (depth + 1)}{s.name} [{s.kind.lower()}] {s.service}{status}{missing}"
            )
            for k in kids.get(s.span_id, []):
                walk(k, depth + 1)

        for r in kids[None]:
            walk(r, 0)
        return "\n".join(lines)


class Capture(SpanProcessor):
    """Every span ended while capturing: in this process (as a span processor) and in any process
    that exports OTLP/HTTP to ``endpoint``."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._spans: list[CapturedSpan] = []
        self._index: dict[tuple[str, str], int] = {}  # (trace id, span id) -> position in _spans
        self._collector: Collector | None = None
        self._changed = time.monotonic()  # when a span last arrived
        # Where child processes started during the test export (read as each child starts):
        # True to this capture, False where the configuration says, None (default) to this
        # capture unless the test configured its own OTLP export.
        self.redirect_children: bool | None = None

    # SpanProcessor
    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.add([CapturedSpan.from_readable(span)])

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # collecting
    def add(self, spans: Iterable[CapturedSpan]) -> None:
        """Keep each span once: a completed span replaces its pending announcement (same ids),
        an announcement arriving after its completed twin is ignored, and a span already held
        (the same trace and span ids, from this process and again from a server, say) is kept
        as it first arrived.

        The rule is the server's (`threadline.server.storage.supersede`), applied here as spans
        arrive rather than over a finished read: this keeps arrival order in place, and the
        testing plugin depends on the core only, so it cannot import the server."""
        with self._lock:
            for s in spans:
                key = (s.trace_id, s.span_id)
                at = self._index.get(key)
                if at is None:
                    self._index[key] = len(self._spans)
                    self._spans.append(s)
                elif self._spans[at].pending and not s.pending:
                    self._spans[at] = s
            self._changed = time.monotonic()
            self._lock.notify_all()

    @property
    def endpoint(self) -> str:
        """Base OTLP/HTTP URL of a loopback collector feeding this capture (started on first use)."""
        if self._collector is None:
            self._collector = Collector(self.add)
            self._collector.start()
        return self._collector.endpoint

    def close(self) -> None:
        if self._collector is not None:
            self._collector.stop()
            self._collector = None

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._index.clear()

    # reading
    @property
    def spans(self) -> list[CapturedSpan]:
        with self._lock:
            return list(self._spans)

    def traces(self) -> list[Trace]:
        groups: dict[str, list[CapturedSpan]] = defaultdict(list)
        for s in self.spans:
            groups[s.trace_id].append(s)
        out = [Trace(t, spans) for t, spans in groups.items()]
        return sorted(out, key=lambda t: t.spans[0].start_ns)

    def trace(self, trace_id: str) -> Trace:
        spans = [s for s in self.spans if s.trace_id == trace_id]
        if not spans:
            raise TraceAssertionError(f"no spans captured for trace {trace_id}\n{self.describe()}")
        return Trace(trace_id, spans)

    def one(self) -> Trace:
        """The single captured trace; fails listing what was captured otherwise."""
        found = self.traces()
        if len(found) != 1:
            raise TraceAssertionError(
                f"expected exactly one trace, captured {len(found)}\n{self.describe()}"
            )
        return found[0]

    def find_all(self, name: str | Callable[[CapturedSpan], bool]) -> list[CapturedSpan]:
        """Spans with this name, or for which this predicate is true, in any trace."""
        match = _matcher(name)
        return [s for s in self.spans if match(s)]

    @property
    def incomplete(self) -> list[CapturedSpan]:
        """Spans announced when they started that never ended (their process was killed)."""
        return [s for s in self.spans if s.pending]

    def describe(self) -> str:
        found = self.traces()
        return "\n".join(t.tree() for t in found) if found else "(no spans captured)"

    def wait_for(
        self, count: int | Callable[[list[CapturedSpan]], bool], timeout: float = 10.0
    ) -> list[CapturedSpan]:
        """Block until `count` spans (or a predicate over the spans) holds; fail after timeout."""
        test = count if callable(count) else (lambda spans: len(spans) >= count)
        deadline = time.monotonic() + timeout
        with self._lock:
            while not test(self._spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TraceAssertionError(
                        f"timed out after {timeout}s waiting for spans; captured {len(self._spans)}\n"
                        + self.describe_unlocked()
                    )
                self._lock.wait(left)
            return list(self._spans)

    def settle(self, quiet: float = 0.5, timeout: float = 30.0) -> list[CapturedSpan]:
        """Wait until nothing has arrived for ``quiet`` seconds and the collector is in the middle
        of no request, then return the spans: to count exactly what other processes sent once
        wait_for() has seen the least expected (a duplicate or a straggler arrives by then)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                busy = self._collector is not None and self._collector.busy > 0
                still = quiet - (now - self._changed)
                if not busy and still <= 0:
                    return list(self._spans)
                if now >= deadline:
                    raise TraceAssertionError(
                        f"spans kept arriving for {timeout}s; captured {len(self._spans)}\n"
                        + self.describe_unlocked()
                    )
                self._lock.wait(min(max(still, 0.05), deadline - now))

    def describe_unlocked(self) -> str:
        groups: dict[str, list[CapturedSpan]] = defaultdict(list)
        for s in self._spans:
            groups[s.trace_id].append(s)
        return "\n".join(Trace(t, g).tree() for t, g in groups.items()) or "(no spans captured)"
