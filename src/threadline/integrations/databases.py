"""Databases: the OpenTelemetry contrib instrumentation of each installed driver, on the current
database semantic conventions, with the literals taken out of every query.

``tl.instrument()`` wires SQLAlchemy, psycopg (3), psycopg2, asyncpg, PyMySQL and sqlite3 (see
``DATABASES``). Each query is a CLIENT span carrying ``db.system.name``, ``db.namespace``,
``db.operation.name``, ``db.query.text`` and, for a server, ``server.address`` and
``server.port``:

* the contrib packages speak the current conventions once opted in
  (``OTEL_SEMCONV_STABILITY_OPT_IN=database``); ``opt_in()`` does that unless the program chose
  ``database`` or ``database/dup`` itself;
* ``db.query.text`` has every string and number literal replaced by ``?`` (``sanitise()``,
  tokenised with sqlparse), so a value written into the SQL never reaches a span;
* query parameters are never recorded: the instrumentations run with ``capture_parameters``
  off. A program that wants them instruments that driver itself, with the contrib's own
  ``capture_parameters=True``, before ``tl.instrument()``, which then leaves it alone;
* the driver instrumentations that still name the peer the old way (``net.peer.name``,
  ``net.peer.port``) have it named ``server.address`` and ``server.port``;
* a SQLite connection carries no database name the contrib could read, so threadline's
  sqlite3 instrumentor (the contrib's, given another connection integration) names it after the
  file: ``users_db.sqlite`` is ``db.namespace="users_db"``, and an in-memory one has none. A
  database node in the dependency graph needs that name.

The contrib packages and sqlparse are imported only when instrument() is called.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes, AttributeValue

log = logging.getLogger("threadline")

# library -> (contrib module, instrumentor class)
DATABASES = {
    "sqlalchemy": ("opentelemetry.instrumentation.sqlalchemy", "SQLAlchemyInstrumentor"),
    "psycopg": ("opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor"),
    "psycopg2": ("opentelemetry.instrumentation.psycopg2", "Psycopg2Instrumentor"),
    "asyncpg": ("opentelemetry.instrumentation.asyncpg", "AsyncPGInstrumentor"),
    "pymysql": ("opentelemetry.instrumentation.pymysql", "PyMySQLInstrumentor"),
    "sqlite3": ("opentelemetry.instrumentation.sqlite3", "SQLite3Instrumentor"),
}
OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
QUERY_TEXT = "db.query.text"
OLD_QUERY_TEXT = "db.statement"  # what "database/dup" records as well
OPERATION = "db.operation.name"
PLACEHOLDER = "?"
# the old names of the peer -> the current ones
RENAMED = {"net.peer.name": "server.address", "net.peer.port": "server.port"}


class OptIn:
    """What opt_in() changed, for tl.uninstrument() to undo: ``previous`` is the variable's
    value before (None: unset)."""

    is_instrumented_by_opentelemetry = True

    def __init__(self, previous: str | None) -> None:
        self.previous = previous

    def uninstrument(self) -> None:
        if self.previous is None:
            os.environ.pop(OPT_IN, None)
        else:
            os.environ[OPT_IN] = self.previous
        _read_again()
        self.is_instrumented_by_opentelemetry = False


def opt_in() -> OptIn | None:
    """Turn on the current database conventions for every contrib instrumentation, unless the
    program chose a database mode in ``OTEL_SEMCONV_STABILITY_OPT_IN`` itself. The variable is
    set (child processes inherit it) and the contrib's reading of it, made once per process,
    read again; its HTTP mode stays what it was. Returns how to undo it, or None when nothing
    changed."""
    previous = os.environ.get(OPT_IN)
    chosen = [s.strip() for s in (previous or "").split(",") if s.strip()]
    if "database" in chosen or "database/dup" in chosen:
        return None
    os.environ[OPT_IN] = ",".join([*chosen, "database"])
    _read_again()
    return OptIn(previous)


def _read_again() -> None:
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as stability,
    )

    with stability._lock:  # noqa: SLF001 - the contrib reads the variable once and keeps it
        stability._initialized = False  # noqa: SLF001
    stability._initialize()  # noqa: SLF001


@functools.lru_cache(maxsize=1024)  # a program runs the same few statements again and again
def sanitise(statement: str) -> str | None:
    """``statement`` with every string and number literal replaced by ``?``; placeholders
    (``%s``, ``$1``, ``:name``, ``?``), identifiers (quoted ones too) and keywords kept. None
    when it cannot be done (sqlparse missing, or failing on this statement): the query text is
    then left off the span rather than recorded with its values, and the count of statements
    left off goes up (``dropped``)."""
    try:
        from sqlparse import lexer, tokens

        literals = (tokens.Literal.String.Single, tokens.Literal.Number)
        out = []
        for ttype, value in lexer.tokenize(statement):
            out.append(PLACEHOLDER if any(ttype in kind for kind in literals) else value)
        return "".join(out)
    except Exception as exc:  # noqa: BLE001 - tracing never breaks the query it traces
        dropped[QUERY_TEXT] = dropped.get(QUERY_TEXT, 0) + 1
        if not _told:
            _told.append(exc)
            log.warning(
                "threadline: db.query.text left off the span, its literals could not be "
                "removed (%s: %s); pip install 'threadline[databases]'",
                type(exc).__name__,
                exc,
            )
        return None


dropped: dict[str, int] = {}  # attribute name -> how many times it was left off a span
_told: list[BaseException] = []  # the first failure, logged once


_LEADING_COMMENTS = re.compile(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*\s*", re.S)


def operation(statement: str) -> str:
    """The operation a statement starts with (``SELECT``, ``insert``, ...), as written: the
    contrib instrumentations name their spans after it the same way."""
    words = _LEADING_COMMENTS.sub("", statement, count=1).split(None, 1)
    return words[0].rstrip(";") if words else ""


def normal(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What the contrib instrumentation set, on the current conventions, literals removed."""
    out = {}
    for key, value in attributes.items():
        if key in (QUERY_TEXT, OLD_QUERY_TEXT) and isinstance(value, str):
            if key == QUERY_TEXT and operation(value):
                # SQLAlchemy's contrib gives its span name ("select users_db") as the operation
                out[OPERATION] = operation(value)
            value = sanitise(value)
            if value is None:
                continue
        elif key == OPERATION and QUERY_TEXT in attributes:
            continue
        out[RENAMED.get(key, key)] = value
    return out


class DatabaseSpan(Span):
    """A contrib instrumentation's span, whose attributes pass through normal() on the way in.
    Everything else is the span's own."""

    def __init__(self, span: Span, attributes: Attributes = None) -> None:
        self.span = span
        # the operation is the query's once the query is known, whatever is set after it
        self.named = bool(attributes) and QUERY_TEXT in attributes  # type: ignore[operator]

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        out = normal(attributes)
        if QUERY_TEXT in attributes:
            self.named = True
        elif self.named:
            out.pop(OPERATION, None)
        self.span.set_attributes(out)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.set_attributes({key: value})

    def end(self, end_time: int | None = None) -> None:
        self.span.end(end_time)

    def get_span_context(self) -> trace.SpanContext:
        return self.span.get_span_context()

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None):
        self.span.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Attributes = None) -> None:
        self.span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self.span.update_name(name)

    def is_recording(self) -> bool:
        return self.span.is_recording()

    def set_status(self, status: Any, description: str | None = None) -> None:
        self.span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.span.record_exception(exception, attributes, timestamp, escaped)

    def __getattr__(self, name: str) -> Any:  # what an SDK span has beyond the API
        return getattr(self.span, name)


class DatabaseTracer(trace.Tracer):
    """Starts its spans on ``tracer`` (the global provider's, looked up when first used) and
    hands them out as DatabaseSpan."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start_span(
        self,
        name: str,
        context: Any = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        span = self.tracer.start_span(
            name,
            context,
            kind,
            normal(attributes) if attributes else attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        return DatabaseSpan(span, attributes)

    @contextmanager  # type: ignore[override]
    def start_as_current_span(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        name: str,
        context: Any = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class DatabaseTracerProvider(trace.TracerProvider):
    """The provider the database instrumentations are given: the global one, through
    DatabaseTracer."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return DatabaseTracer(
            trace.get_tracer(
                instrumenting_module_name,
                instrumenting_library_version,
                None,
                schema_url,
                attributes,
            )  # fmt: skip
        )


def database_name(path: Any) -> str | None:
    """The name a SQLite database goes by: its file's stem; None in memory."""
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if not isinstance(path, str | os.PathLike):
        return None
    text = os.fspath(path)
    if text.startswith("file:"):  # a URI: file:users_db.sqlite?mode=ro
        text = text[5:].partition("?")[0]
    if not text or text == ":memory:" or "mode=memory" in os.fspath(path):
        return None
    return os.path.splitext(os.path.basename(text))[0] or None


@functools.cache
def sqlite3_instrumentor() -> type:
    """The contrib's SQLite3Instrumentor, with a connection integration that names each
    database (db.namespace) after its file. Made when first asked: the contrib is imported then."""
    from opentelemetry.instrumentation import dbapi
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.instrumentation.sqlite3.version import __version__

    class NamedDatabase(dbapi.DatabaseApiIntegration):
        def wrapped_connection(self, connect_method, args, kwargs):  # type: ignore[override]
            connection = super().wrapped_connection(connect_method, args, kwargs)
            name = database_name(args[0] if args else kwargs.get("database"))
            if name:
                self.database = name
            return connection

    class NamedSQLite3Instrumentor(SQLite3Instrumentor):
        _instance = None  # BaseInstrumentor keeps one instance per class: its own

        def _instrument(self, **kwargs: Any) -> None:
            for module in self._TO_WRAP:
                dbapi.wrap_connect(
                    "opentelemetry.instrumentation.sqlite3",
                    module,  # pyright: ignore[reportArgumentType] - the contrib passes modules too
                    "connect",
                    "sqlite",
                    {},
                    version=__version__,
                    tracer_provider=kwargs.get("tracer_provider"),
                    db_api_integration_factory=NamedDatabase,
                )

    return NamedSQLite3Instrumentor


def instrumentor(library: str, contrib: Any) -> Any:
    """The instrumentor tl.instrument() turns on for ``library``, given the contrib's (None when
    missing): the contrib's own, but sqlite3's names its databases. One the program turned on
    itself is left as it is."""
    if library != "sqlite3" or contrib is None or contrib.is_instrumented_by_opentelemetry:
        return contrib
    return sqlite3_instrumentor()()


def instrument_kwargs(library: str) -> dict[str, Any]:
    """The arguments tl.instrument() gives the contrib instrumentor of ``library``."""
    kwargs: dict[str, Any] = {"tracer_provider": DatabaseTracerProvider()}
    if library in ("psycopg", "psycopg2", "pymysql", "sqlite3"):
        kwargs["capture_parameters"] = False
    return kwargs
