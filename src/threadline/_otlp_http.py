"""OTLP/HTTP requests over one kept-alive http.client connection, for plain http:// endpoints.

The SDK exporter's requests session costs about five times the CPU of http.client per request
(~700 against ~150 us on loopback), most of it in requests' and urllib3's layers; a span batch is
one request, so that is about a microsecond per span. Retries, back-off, compression and headers
stay the SDK's (_OTLPHTTPClient above this transport). https://, a proxy or a credential provider
keeps the SDK's own transport: those are requests' to honour."""

from __future__ import annotations

import http.client
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

# A reused connection the server has closed since the last request fails with one of these on
# the next: it is reopened, once.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
_CREDENTIALS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


def suits(url: str) -> bool:
    """Whether requests to `url` may take this client: plain http, no proxy for its host and no
    credential provider (a requests session of the user's)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or any(os.environ.get(k) for k in _CREDENTIALS):
        return False
    return "http" not in getproxies() or bool(proxy_bypass(parts.hostname))


class _NoDelayConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        # A request leaves in one write, but the server's answer must not wait for our ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Connection:
    """One kept-alive HTTP/1.1 connection to a URL's host, for one request at a time; a process
    forked since opens its own."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.path = parts.path or "/"
        if parts.query:
            self.path += "?" + parts.query
        self.timeout = timeout
        self.lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._pid = 0

    def post(
        self, body: bytes, headers: Mapping[str, str], timeout: float | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """POST body; the response and its body, read whole. Raises OSError / HTTPException when the request
        fails (a timeout included); a kept-alive connection found closed is reopened once."""
        wait = self.timeout if timeout is None else timeout
        with self.lock:
            while True:
                conn = self._conn if self._pid == os.getpid() else None
                reused = conn is not None
                if conn is None:
                    conn = self._conn = _NoDelayConnection(self.host, self.port, timeout=wait)
                    self._pid = os.getpid()
                elif conn.sock is not None:
                    conn.sock.settimeout(wait)
                try:
                    conn.request("POST", self.path, body, dict(headers))
                    response = conn.getresponse()
                    content = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    self._conn = None
                    if reused and isinstance(exc, _STALE):
                        continue
                    raise
                if response.will_close:
                    conn.close()
                    self._conn = None
                return response, content

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@dataclass(frozen=True, slots=True)
class Result(BaseHTTPResult):
    body: bytes = b""
    fields: Mapping[str, str] = field(default_factory=dict)  # case-insensitive (HTTPMessage)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return self.fields


class Transport(BaseHTTPTransport):
    """The SDK exporter's HTTP transport, over Connection: one per exporter, so one endpoint."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.connection = Connection(url, timeout)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        if method != "POST" or url != self.url:
            return Result(error=ValueError(f"this transport only posts to its endpoint: {url}"))
        try:
            response, content = self.connection.post(data or b"", headers or {}, timeout)
        except Exception as error:  # noqa: BLE001 - a result, as the SDK's transports return it
            return Result(error=error)
        return Result(
            status_code=response.status,
            reason=response.reason,
            body=content,
            fields=response.msg,  # pyright: ignore[reportArgumentType] - a Message maps str to str
        )

    def is_connection_error(self, exception: Exception | None) -> bool:
        return isinstance(exception, (OSError, http.client.HTTPException))

    def close(self) -> None:
        self.connection.close()
