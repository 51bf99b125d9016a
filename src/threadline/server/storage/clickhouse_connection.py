"""Connections to ClickHouse for its engine (clickhouse.py), and clickhouse:// URLs.

Two connections behind one small interface (`Connection`): `ChdbConnection`, the engine embedded
in this process (the `chdb` package, one data directory per process), and `HttpConnection`, a
server or cluster over HTTP (`clickhouse-connect`). Both take `{name:Type}` placeholders with
their values passed apart from the SQL text, return rows as Python values (maps as dicts,
arrays as lists, 64-bit integers as ints), and insert JSONCompactEachRow lines through a SELECT that
converts them (`insert`).

A password (from the URL or THREADLINE_CLICKHOUSE_PASSWORD) appears in no error and no log line:
`ClickHouseURL.display` is the URL without it, and errors from the client are scrubbed of it.

A server that does not answer within THREADLINE_CLICKHOUSE_TIMEOUT seconds (default 30; each
connect and each wait for an answer) is unavailable (`StoreUnavailable`): at start that stops
`serve` with one line naming the host, afterwards an export is answered "retry later".

Every query is bounded by ClickHouse itself: `max_execution_time` (THREADLINE_QUERY_TIMEOUT,
default 30 s, as DuckDB's) and `max_memory_usage` (THREADLINE_CLICKHOUSE_MAX_MEMORY bytes,
default 1 GB). A query cancelled at either bound is `QueryTooCostly`: answered 503 + Retry-After.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from threadline.server.storage.base import QueryTooCostly, StoreUnavailable, query_timeout_s

PASSWORD_ENV = "THREADLINE_CLICKHOUSE_PASSWORD"
TIMEOUT_ENV = "THREADLINE_CLICKHOUSE_TIMEOUT"
DEFAULT_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 5
MEMORY_ENV = "THREADLINE_CLICKHOUSE_MAX_MEMORY"
DEFAULT_MAX_MEMORY = 10**9
# ClickHouse's codes for a query it cancelled at a bound
_CANCELLED = ("MEMORY_LIMIT_EXCEEDED", "TIMEOUT_EXCEEDED")


class StoreURLError(ValueError):
    """A --store URL that cannot be used; the message names the part at fault."""


@dataclass(frozen=True)
class ClickHouseURL:
    host: str
    port: int
    database: str | None
    user: str
    password: str = ""

    @property
    def display(self) -> str:
        """The URL as it may be shown: never with the password."""
        user = f"{self.user}@" if self.user != "default" else ""
        return f"clickhouse://{user}{self.host}:{self.port}/{self.database or ''}"


def parse_clickhouse_url(url: str) -> ClickHouseURL:
    """`clickhouse://[user[:password]@]host[:port]/database`; the password may instead come from
    THREADLINE_CLICKHOUSE_PASSWORD. Raises StoreURLError naming the part at fault (never
    quoting the password)."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    port_text = (
        hostport.rpartition("]")[2].lstrip(":")
        if hostport.startswith("[")
        else hostport.partition(":")[2]
    )
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "clickhouse":
        raise StoreURLError(f"--store: scheme {parts.scheme!r} is not clickhouse://")
    if not parts.hostname:
        raise StoreURLError("--store clickhouse://: the host is missing (clickhouse://HOST/db)")
    if port_text and port is None:
        raise StoreURLError(f"--store: port {port_text!r} is not a port number (0-65535)")
    if parts.query or parts.fragment:
        raise StoreURLError("--store clickhouse://: a query string or fragment is not accepted")
    path = parts.path.strip("/")
    if "/" in path:
        raise StoreURLError(f"--store clickhouse://: the database {path!r} is not one name")
    password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_ENV, "")
    return ClickHouseURL(
        host=parts.hostname,
        port=port or 8123,
        database=unquote(path) or None,
        user=unquote(parts.username) if parts.username else "default",
        password=password,
    )


def timeout_from_env() -> int:
    """Seconds to wait for ClickHouse (THREADLINE_CLICKHOUSE_TIMEOUT, a whole number >= 1)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    if not text.isdigit() or int(text) < 1:
        raise StoreURLError(f"{TIMEOUT_ENV}: {text!r} is not a whole number of seconds (>= 1)")
    return int(text)


def query_limits() -> dict[str, int]:
    """The settings that bound every query: time (THREADLINE_QUERY_TIMEOUT, whole seconds, at
    least 1) and memory (THREADLINE_CLICKHOUSE_MAX_MEMORY, bytes)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text and (not text.isdigit() or int(text) < 1):
        raise StoreURLError(f"{MEMORY_ENV}: {text[:40]!r} is not a number of bytes (>= 1)")
    return {
        "max_execution_time": max(1, round(query_timeout_s())),
        "max_memory_usage": int(text) if text else DEFAULT_MAX_MEMORY,
    }


def _cancelled(message: str) -> QueryTooCostly | None:
    """QueryTooCostly for a ClickHouse error that says it cancelled the query at a bound."""
    for code in _CANCELLED:
        if code in message:
            return QueryTooCostly(f"ClickHouse cancelled the query ({code}): {message[:200]}")
    return None


def redact(url: str) -> str:
    """A --store URL as it may be shown: a clickhouse:// URL without its password."""
    if not url.startswith("clickhouse:"):
        return url
    try:
        return parse_clickhouse_url(url).display
    except StoreURLError:
        return "clickhouse://(malformed)"


class Connection(ABC):
    """One ClickHouse, local or remote. Calls may come from several threads."""

    engine: str  # "chdb" or "clickhouse"
    where: str  # what stats() and messages show: a path, or the URL without its password

    @abstractmethod
    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[list[Any]]: ...

    @abstractmethod
    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    @abstractmethod
    def insert(
        self,
        table: str,
        columns: str,
        select: str,
        structure: str,
        lines: str,
        settings: dict[str, int] | None = None,
    ) -> None:
        """`INSERT INTO table (columns) SETTINGS settings SELECT select` over JSONCompactEachRow
        `lines` whose columns are `structure` ("name Type, ..."), acknowledged once stored."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass


def _quoted(s: str) -> str:
    """A string literal in ClickHouse's text form (array elements of a parameter)."""
    return (
        "'"
        + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
        + "'"
    )


def settings_clause(settings: dict[str, int] | None) -> str:
    """An INSERT's SETTINGS clause (names are the engine's own, values integers)."""
    if not settings:
        return ""
    return " SETTINGS " + ", ".join(f"{k} = {int(v)}" for k, v in settings.items())


def _param_text(v: Any) -> str:
    """A parameter's value as the embedded engine parses it: strings in escaped TSV form, arrays
    and tuples as literals."""
    if isinstance(v, str):
        return (
            v.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        )
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        inner = ", ".join(_quoted(x) if isinstance(x, str) else _param_text(x) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner})"
    raise TypeError(f"no parameter form for {type(v).__name__}")


class ChdbConnection(Connection):
    """ClickHouse in this process, its data in one directory. chdb serves one data directory per
    process, so one store at a time; calls are serialised (one session)."""

    engine = "chdb"

    def __init__(self, path: str) -> None:
        try:
            from chdb import session
        except ImportError:
            raise StoreUnavailable(
                "chdb: is not installed (pip install 'threadline[clickhouse]')"
            ) from None
        self.where = path
        self._lock = threading.Lock()
        try:
            os.makedirs(path, exist_ok=True)
            self._session = session.Session(path)
        except Exception as exc:  # noqa: BLE001 - chdb raises RuntimeError subclasses
            raise StoreUnavailable(f"cannot open chdb:{path}: {_first_line(exc)}") from None
        # 64-bit integers as JSON numbers; strings someone wrote with invalid UTF-8 repaired
        self.execute("SET output_format_json_quote_64bit_integers = 0")
        self.execute("SET output_format_json_validate_utf8 = 1")
        for name, value in query_limits().items():
            self.execute(f"SET {name} = {int(value)}")

    def _query(self, sql: str, params: dict[str, Any] | None, fmt: str) -> bytes:
        p = {k: _param_text(v) for k, v in params.items()} if params else None
        with self._lock:
            try:
                return self._session.query(sql, fmt, params=p).bytes()
            except Exception as exc:  # chdb raises RuntimeError subclasses with ClickHouse's text
                cancelled = _cancelled(str(exc))
                if cancelled is not None:
                    raise cancelled from None
                raise

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        out = self._query(sql, params, "JSONCompactEachRow")
        # one parse for all rows: a raw newline only ever ends a row (JSON escapes those inside
        # strings), and one call costs far less than a call per row
        return json.loads(b"[" + out.rstrip(b"\n").replace(b"\n", b",") + b"]")

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._query(sql, params, "CSV")

    def insert(
        self,
        table: str,
        columns: str,
        select: str,
        structure: str,
        lines: str,
        settings: dict[str, int] | None = None,
    ) -> None:
        self.execute(
            f"INSERT INTO {table} ({columns}){settings_clause(settings)} SELECT {select} "
            "FROM format(JSONCompactEachRow, {structure:String}, {data:String})",
            {"structure": structure, "data": lines},
        )

    def close(self) -> None:
        with self._lock:
            self._session.close()


class HttpConnection(Connection):
    """A ClickHouse server (or cluster) over HTTP through clickhouse-connect."""

    engine = "clickhouse"

    def __init__(self, url: ClickHouseURL) -> None:
        try:
            import clickhouse_connect
        except ImportError:
            raise StoreUnavailable(
                "clickhouse-connect is not installed (pip install 'threadline[clickhouse]')"
            ) from None
        self.where = url.display
        self._password = url.password
        self._timeout = timeout_from_env()
        # the client's retries are logged by it as warnings; our errors say what failed, once
        for name in ("urllib3.connectionpool", "clickhouse_connect"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            self._client = clickhouse_connect.get_client(
                host=url.host,
                port=url.port,
                username=url.user,
                password=url.password,
                connect_timeout=min(CONNECT_TIMEOUT_S, self._timeout),
                send_receive_timeout=self._timeout,
                # acknowledged means stored: an async insert is answered once it is flushed
                settings={"wait_for_async_insert": 1, **query_limits()},
                autogenerate_session_id=False,  # several threads share the client
            )
        except Exception as exc:  # noqa: BLE001 - connect errors come in many types
            raise StoreUnavailable(
                f"cannot reach ClickHouse at {url.host}:{url.port}: {self._scrub(exc)}"
            ) from None

    def _scrub(self, exc: BaseException) -> str:
        timed_out = _timed_out(exc)
        if timed_out == "connect":
            return f"no connection within {min(CONNECT_TIMEOUT_S, self._timeout)} s"
        if timed_out:
            return f"no answer within {self._timeout} s ({TIMEOUT_ENV})"
        text = _first_line(exc)
        return text.replace(self._password, "***") if self._password else text

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - re-raised without the password
            from clickhouse_connect.driver.exceptions import OperationalError

            cancelled = _cancelled(self._scrub(exc))
            if cancelled is not None:
                raise cancelled from None
            cls = StoreUnavailable if isinstance(exc, OperationalError) else RuntimeError
            raise cls(f"ClickHouse at {self.where}: {self._scrub(exc)}") from None

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        result = self._call(self._client.query, sql, parameters=params or {})
        return [list(r) for r in result.result_rows]

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._call(self._client.command, sql, parameters=params or None)

    def insert(
        self,
        table: str,
        columns: str,
        select: str,
        structure: str,
        lines: str,
        settings: dict[str, int] | None = None,
    ) -> None:
        sql = (
            f"INSERT INTO {table} ({columns}){settings_clause(settings)} SELECT {select} "
            f"FROM input({_quoted(structure)}) FORMAT JSONCompactEachRow"
        )
        self._call(self._client.command, sql, data=lines.encode())

    def close(self) -> None:
        self._client.close()


def _timed_out(exc: BaseException | None) -> str:
    """ "connect" or "read" when a client error comes from a timeout (urllib3's, or the
    socket's), else ""."""
    seen = 0
    while exc is not None and seen < 10:
        name = type(exc).__name__
        if "ConnectTimeout" in name:
            return "connect"
        if isinstance(exc, TimeoutError) or "Timeout" in name:
            return "read"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
