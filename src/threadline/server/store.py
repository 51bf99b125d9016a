"""The store interface: what the receiver writes to and the query API, analysis and UI read.

One interface, several engines (DuckDB now; ClickHouse on the collector's `otel_traces` later).
Engine SQL stays inside the engine module. Reads return `model.Span` lists with pending copies
already superseded by their completed twins (docs/internals.md).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.server.model import Span

if TYPE_CHECKING:
    from threadline.server.columns import SpanColumns

OPS = ("=", "!=", "<", ">", "<=", ">=", "exists", "!exists")
SCOPES = ("any", "span", "resource")


class StoreUnavailable(OSError):
    """The store cannot be opened or written for now (another process holds the database file,
    an I/O error); the receiver answers such a failed write with "retry later"."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One attribute condition. `scope` says where the key is looked up: span attributes,
    resource attributes, or either ("any"). `=`/`!=` compare the value's text form (so `200`
    matches the int 200 and the string "200"); `<`/`>`/`<=`/`>=` compare numeric (int, double)
    span attributes, and resource attributes whose text is a number. `!=` needs the attribute to
    exist (like TraceQL)."""

    key: str
    op: str = "exists"
    value: str | float | None = None
    scope: str = "any"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}; expected one of {', '.join(OPS)}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; expected one of {', '.join(SCOPES)}")
        if not self.key:
            raise ValueError("a filter needs an attribute key")
        if self.op in ("<", ">", "<=", ">="):
            try:
                object.__setattr__(self, "value", float(self.value))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.key} {self.op} needs a number, got {self.value!r}"
                ) from None


_TERM = re.compile(
    r"^\s*(!?)\s*(?:(span|resource|any):)?([^\s=!<>]+)\s*(?:(!=|<=|>=|=|<|>)\s*(.*?))?\s*$"
)
# a quoted value (skipped whole, so it may hold " OR " or "|"), or a separator of alternatives
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ALTERNATIVES = re.compile(rf"{_QUOTED}|(\s+OR\s+|\s*\|\s*)")


def parse_filter(text: str) -> list[Filter]:
    """`key=value`, `key!=value`, `key<n`, `key>=n`, `key` (exists), `!key` (missing), optionally
    prefixed `span:` or `resource:`, alternatives joined by ` OR ` (or `|`). Values may be
    "double-quoted" (then they may hold spaces, ` OR ` and `|`; `\"` is a quote, `\\` a backslash).
    Returns the alternatives (OR) of one condition."""
    alternatives = []
    for part in _split_alternatives(text.strip()):
        m = _TERM.match(part)
        if not m or not part.strip():
            raise ValueError(
                f"cannot parse filter {part!r}: expected key=value, key>n, key or !key"
            )
        neg, scope, key, op, value = m.groups()
        if op is None:
            alternatives.append(Filter(key, "!exists" if neg else "exists", None, scope or "any"))
            continue
        if neg:
            raise ValueError(f"cannot parse filter {part!r}: '!' only negates existence (!key)")
        if value.startswith('"'):
            if not re.fullmatch(_QUOTED, value):
                raise ValueError(f"cannot parse filter {part!r}: unterminated quoted value")
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        alternatives.append(Filter(key, op, value, scope or "any"))
    return alternatives


def _split_alternatives(text: str) -> list[str]:
    parts, start = [], 0
    for m in _ALTERNATIVES.finditer(text):
        if m[1] is not None:
            parts.append(text[start : m.start()])
            start = m.end()
    return [*parts, text[start:]]


@dataclass(slots=True)
class Query:
    """Which traces to find. A trace matches when one of its spans matches every condition (the
    Jaeger rule); `filters` is a conjunction of disjunctions (AND of ORs)."""

    service: str | None = None
    operation: str | None = None
    kind: int | None = None
    start_ns: int | None = None  # span start window
    end_ns: int | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    status_code: int | None = None
    filters: list[list[Filter]] = field(default_factory=list)
    limit: int = 20


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
    link from a CONSUMER span or to a PRODUCER span) or "link" (any other cross-service link)."""

    parent: str
    child: str
    call_count: int
    kind: str = "call"


def supersede(spans: Iterable[Span]) -> list[Span]:
    """Keep the completed span where a pending copy with the same span id also exists."""
    best: dict[tuple[str, str], Span] = {}
    for s in spans:
        key = (s.trace_id, s.span_id)
        have = best.get(key)
        if have is None or (have.pending and not s.pending):
            best[key] = s
    return sorted(best.values(), key=lambda s: (s.start_ns, s.end_ns))


class Store(ABC):
    """Engines implement these. Writes are durable when `write` returns; reads may run
    concurrently with writes from other threads."""

    @abstractmethod
    def write(self, spans: list[Span]) -> None: ...

    @abstractmethod
    def write_columns(self, columns: list[SpanColumns]) -> None:
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

    def find_traces(self, query: Query) -> list[list[Span]]:
        ids = self.find_trace_ids(query)
        found = self.get_traces(ids)
        return [found[t] for t in ids if t in found]

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


def open_store(db: str | None = None) -> Store:
    """The default engine for a path (or ":memory:")."""
    from threadline.server.duckdb_store import DuckDBStore

    return DuckDBStore(db or ":memory:")
