"""The store interface: what ingest writes to and the query API, analysis and UI read.

One interface, several engines (DuckDB; ClickHouse on the collector's `otel_traces`).
Engine SQL stays inside the engine module. Reads return `model.Span` lists with pending copies
already superseded by their completed twins (`supersede`, the one statement of that rule).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from threadline.server.model import Span

if TYPE_CHECKING:
    from threadline.server.storage.layout import Rows
    from threadline.server.storage.query import Query

T = TypeVar("T")


class StoreUnavailable(OSError):
    """The store cannot be opened or written for now (another process holds the database file,
    an I/O error); the receiver answers such a failed write with "retry later"."""


class QueryTooCostly(StoreUnavailable):
    """A read ran past the query time limit or the engine's memory limit and was cancelled:
    answered 503 with Retry-After, as the store being busy."""


class ResultTooLarge(ValueError):
    """A read would return more spans than its cap: refused (400) before it is built."""


_CHUNK = 64  # traces read at a time by `find_traces`


@dataclass(slots=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    start_ns: int
    duration_ns: int
    span_count: int
    services: list[str]
    error_count: int
    incomplete_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Dependency:
    """Calls from `parent`'s service to `child`'s. `kind`: "call" (a cross-service parent and
    child), "messaging" (a producer to its consumer: a PRODUCER parent of a CONSUMER child, or a
    link from a CONSUMER span or to a PRODUCER span), "link" (any other cross-service link),
    "database" or "external" (`child` is the peer a CLIENT span that no span answered names,
    `threadline.server.peers`; one call per such span)."""

    parent: str
    child: str
    call_count: int
    kind: str = "call"


def one_per_span(
    items: Iterable[T], key: Callable[[T], Hashable], pending: Callable[[T], bool]
) -> list[T]:
    """One item per span `key`, in first-seen order: a completed span supersedes its pending copy
    (the zero-length copy announced when the span started, `semconv.PENDING`); otherwise the
    first one read is kept. The one definition of that rule: engines that apply it in their own
    query language say so and cite this function."""
    best: dict[Hashable, T] = {}
    for item in items:
        k = key(item)
        have = best.get(k)
        if have is None or (pending(have) and not pending(item)):
            best[k] = item
    return list(best.values())


def supersede(spans: Iterable[Span]) -> list[Span]:
    """The spans in start order, each once: the completed span where a pending copy with the same
    ids also exists (`one_per_span`)."""
    kept = one_per_span(spans, lambda s: (s.trace_id, s.span_id), lambda s: s.pending)
    return sorted(kept, key=lambda s: (s.start_ns, s.end_ns))


class Store(ABC):
    """Engines implement these. Writes are durable when `write` returns; reads may run
    concurrently with writes from other threads. `retention_by_ttl`: the engine expires old spans
    itself (a table TTL set when it was opened), so ingest never calls `delete_before`."""

    retention_by_ttl: bool = False

    @abstractmethod
    def write(self, spans: list[Span]) -> None: ...

    @abstractmethod
    def write_columns(self, columns: list[Rows]) -> None:
        """Store decoded exports (the receiver's path: no model Span per span) in one commit."""

    @abstractmethod
    def get_traces(self, trace_ids: list[str]) -> dict[str, list[Span]]:
        """Spans of each known trace id (unknown ids are absent), pending copies superseded."""

    def get_trace(self, trace_id: str) -> list[Span]:
        """The trace's spans in start order; [] when unknown."""
        return self.get_traces([trace_id]).get(trace_id.lower(), [])

    @abstractmethod
    def find_trace_ids(self, query: Query) -> list[str]:
        """Matching trace ids, most recent first, at most `query.limit`."""

    def find_traces(self, query: Query, max_spans: int | None = None) -> list[list[Span]]:
        """The matching traces, most recent first. `max_spans`: ResultTooLarge as soon as the
        traces read hold more spans, so a result never grows past it (they are read a few at
        a time)."""
        ids = self.find_trace_ids(query)
        out: list[list[Span]] = []
        total = 0
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            found = self.get_traces(chunk)
            for t in chunk:
                if t in found:
                    out.append(found[t])
                    total += len(found[t])
            if max_spans is not None and total > max_spans:
                raise ResultTooLarge(
                    f"the {len(ids)} traces found hold more than {max_spans} spans: ask for fewer"
                )
        return out

    @abstractmethod
    def summaries(self, trace_ids: list[str]) -> list[TraceSummary]:
        """One summary per known trace id, in the order given."""

    def search(self, query: Query) -> list[TraceSummary]:
        return self.summaries(self.find_trace_ids(query))

    @abstractmethod
    def spans_between(
        self, start_ns: int, end_ns: int, service: str | None = None, limit: int | None = None
    ) -> list[Span]:
        """Spans starting in [start_ns, end_ns), optionally of one service."""

    def count_between(self, start_ns: int, end_ns: int, at_most: int) -> int:
        """How many spans start in [start_ns, end_ns), counted up to `at_most` + 1 (enough to
        tell a window is over a cap). Engines count in their query language."""
        return len(self.spans_between(start_ns, end_ns, limit=at_most + 1))

    @abstractmethod
    def services(self) -> list[str]: ...

    @abstractmethod
    def operations(
        self, service: str | None = None, kind: int | None = None
    ) -> list[tuple[str, int]]:
        """(span name, kind) pairs seen, for one service or all."""

    @abstractmethod
    def dependencies(self, start_ns: int, end_ns: int) -> list[Dependency]:
        """Calls between services, one entry per (parent, child, kind), each span counted once
        (a completed span supersedes its pending copy)."""

    @abstractmethod
    def delete_before(self, ns: int) -> int:
        """Retention: drop spans that started before `ns`; returns how many."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """At least {"spans": count}, plus engine facts (path, bytes on disk)."""

    def close(self) -> None:  # noqa: B027 - engines without resources need not override
        """Release the engine's resources."""


# How long one read may run before the engine cancels it (503 + Retry-After), on every engine.
DEFAULT_QUERY_TIMEOUT_S = 30.0


def query_timeout_s(value: float | None = None) -> float:
    """The per-query time limit: `value`, else THREADLINE_QUERY_TIMEOUT seconds, else 30."""
    if value is not None:
        return value
    raw = os.environ.get("THREADLINE_QUERY_TIMEOUT")
    if not raw:
        return DEFAULT_QUERY_TIMEOUT_S
    try:
        timeout = float(raw)
    except ValueError:
        timeout = 0.0
    if not 0 < timeout < 1e9:
        raise StoreUnavailable(f"THREADLINE_QUERY_TIMEOUT: {raw[:40]!r} is not seconds above 0")
    return timeout
