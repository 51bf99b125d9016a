"""Who may talk to the server: bearer tokens, the Host check against DNS rebinding, and the
headers every answer carries. One ASGI middleware (`guard`) in front of the query app and the
OTLP/HTTP receiver; `Access.grpc_allows` checks OTLP/gRPC metadata the same way.

Tokens (`Access.tokens`): with none configured, nothing is asked (the loopback default). Else
every request needs `Authorization: Bearer TOKEN`, or, for a browser, the cookie the UI's login
page sets (`HttpOnly`, `SameSite=Strict`; it holds an HMAC of the token, not the token). A full
token (`--token`) allows everything; a read token (`--read-token`) only reads (API and UI), a
write token (`--write-token`) only exports (OTLP). Tokens compare in constant time.

Host check: when the server is bound to loopback, a request whose `Host` is neither a loopback
name or address nor one of `--allowed-host` is refused (403), as Jupyter and Vite do: a web page
that rebinds its own name to 127.0.0.1 cannot then read or write traces.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

COOKIE = "threadline_token"
COOKIE_AGE_S = 30 * 86400  # the UI asks again after a month
LOGIN = "/login"
_PUBLIC = {LOGIN, "/app.css", "/favicon.svg"}  # what the login page itself needs
_READ, _WRITE = "read", "write"


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or Host name is this machine only."""
    host = host.strip().strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a Host header, without its port."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _mac(token: str) -> str:
    return hmac.new(token.encode(), b"threadline web UI", hashlib.sha256).hexdigest()


@dataclass
class Access:
    """The access rules of one server. `token`: full access; `read_token`, `write_token`: one
    side each. `loopback`: the server is bound to loopback only (the Host check applies);
    `allowed_hosts`: names accepted besides loopback ones."""

    token: str | None = None
    read_token: str | None = None
    write_token: str | None = None
    loopback: bool = True
    allowed_hosts: Iterable[str] = ()
    _allowed: set[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._allowed = {h.strip().lower().rstrip(".") for h in self.allowed_hosts if h.strip()}

    @property
    def tokens(self) -> bool:
        return bool(self.token or self.read_token or self.write_token)

    def _granting(self, scope: str) -> list[str]:
        side = self.read_token if scope == _READ else self.write_token
        return [t for t in (self.token, side) if t]

    def allows(self, scope: str, bearer: str | None, cookie: str | None = None) -> bool:
        """Whether a bearer token (or the UI's cookie) grants `scope` ("read" or "write")."""
        if not self.tokens:
            return True
        granted = False
        for token in self._granting(scope):  # every comparison made: no early exit to time
            if bearer is not None:
                granted |= hmac.compare_digest(bearer.encode(), token.encode())
            if cookie is not None:
                granted |= hmac.compare_digest(cookie.encode(), _mac(token).encode())
        return granted

    def host_allowed(self, host_header: str | None) -> bool:
        if not self.loopback:
            return True
        name = _host_name(host_header or "")
        return is_loopback_host(name) or name in self._allowed

    def grpc_allows(self, metadata: Iterable[tuple[str, Any]]) -> bool:
        """OTLP/gRPC: the `authorization` metadata must carry a token that may write."""
        if not self.tokens:
            return True
        value = next((v for k, v in metadata if k == "authorization"), None)
        return self.allows(_WRITE, _bearer(value if isinstance(value, str) else None))

    def cookie_for(self, token: str) -> str | None:
        """The cookie value a token that may read earns at the login page, or None."""
        for t in self._granting(_READ):
            if hmac.compare_digest(token.encode(), t.encode()):
                return _mac(t)
        return None


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _cookie(header: str | None) -> str | None:
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def guard(app: Any, access: Access, *, login_page: bool = True) -> Any:
    """`app` behind the access rules: Host check, tokens, and `X-Content-Type-Options: nosniff`
    on every answer. `login_page`: also serve the UI's login page at /login."""

    async def send_json(send: Any, status: int, message: str, headers: list | None = None) -> None:
        import json

        body = json.dumps({"error": message}).encode()
        await _answer(send, status, body, b"application/json", headers)

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not access.host_allowed(headers.get("host")):
            await send_json(
                send,
                403,
                f"Host {headers.get('host', '')[:100]!r} is not this server's: it listens on "
                "loopback (add the name with --allowed-host)",
            )
            return
        path, method = scope["path"], scope["method"]
        if login_page and path == LOGIN and access.tokens:
            await _login(scope, receive, send, access)
            return
        need = _WRITE if path == "/v1/traces" and method == "POST" else _READ
        public = method == "OPTIONS" or (login_page and path in _PUBLIC)
        bearer = _bearer(headers.get("authorization"))
        cookie = _cookie(headers.get("cookie")) if need == _READ else None
        if not public and not access.allows(need, bearer, cookie):
            wants_page = method == "GET" and "text/html" in headers.get("accept", "")
            if login_page and wants_page and need == _READ:
                target = urllib.parse.quote(path, safe="/")
                await _answer(
                    send,
                    303,
                    b"",
                    b"text/plain",
                    [(b"location", f"{LOGIN}?next={target}".encode())],
                )
                return
            side = "to export" if need == _WRITE else "to read"
            await send_json(
                send,
                401,
                f"a token {side} is required: send Authorization: Bearer TOKEN",
                [(b"www-authenticate", b'Bearer realm="threadline"')],
            )
            return

        async def send_nosniff(message: dict) -> None:
            if message["type"] == "http.response.start":
                have = list(message.get("headers", []))
                if not any(k.lower() == b"x-content-type-options" for k, _ in have):
                    message["headers"] = [*have, (b"x-content-type-options", b"nosniff")]
            await send(message)

        await app(scope, receive, send_nosniff)

    return asgi


async def _answer(
    send: Any, status: int, body: bytes, media: bytes, headers: list | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>threadline: token</title>
<link rel="stylesheet" href="/app.css"></head>
<body><main class="login"><h1>threadline</h1>
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autofocus autocomplete="current-password"></label>
<button type="submit">Open</button>{error}
</form></main></body></html>
"""


def _safe_next(raw: str) -> str:
    """Where to go after logging in: a path on this server only."""
    return raw if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw else "/"


async def _login(scope: dict, receive: Any, send: Any, access: Access) -> None:
    """GET: the form asking for the token. POST: the cookie, then back where the user was."""
    from threadline.server.web.ui import CSP

    csp = [(b"content-security-policy", CSP.encode())]
    if scope["method"] == "POST":
        body, more = b"", True
        while more and len(body) <= 8192:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        form = urllib.parse.parse_qs(body[:8192].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/"])[0])
        mac = access.cookie_for(token) if token else None
        if mac is not None:
            cookie = f"{COOKIE}={mac}; Path=/; Max-Age={COOKIE_AGE_S}; HttpOnly; SameSite=Strict"
            await _answer(
                send,
                303,
                b"",
                b"text/plain",
                [(b"location", target.encode()), (b"set-cookie", cookie.encode())],
            )
            return
        page = _FORM.format(next=html.escape(target), error="<p>That token does not open it.</p>")
        await _answer(send, 401, page.encode(), b"text/html; charset=utf-8", csp)
        return
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    target = _safe_next((query.get("next") or ["/"])[0])
    page = _FORM.format(next=html.escape(target), error="")
    await _answer(send, 200, page.encode(), b"text/html; charset=utf-8", csp)
