"""Live sessions: browser and server spans in one trace, over the page render and a WebSocket.

    from threadline.integrations import live

    async def page(request):                      # the render writes its context into the page
        return HTMLResponse(f"<head>{live.head()}</head><body>...")

    async def on_message(sock, data):             # runs under a span that is the browser's child
        await sock.send_text("done")

    app = Starlette(routes=[
        Route("/", page),
        live.script_route(),                      # GET /_threadline/threadline.js
        WebSocketRoute("/live", live.endpoint(on_message)),
    ])

Browsers cannot set headers on a WebSocket handshake, so the browser module puts the context of
its "connect" span in the URL (``?traceparent=``) and wraps every message in a small envelope
that carries the sender's context. The connect is the session's span; each message is resumed
as a child of the sender's span, so a click, its message, the server's work and the reply are
one trace. A message that carries no context (an uninstrumented client, a push from the server
outside any handler) is its own trace linked to the session (``session="link"``, the default),
or a child of the session (``session="child"``, for short-lived sockets): a socket that lives
for hours never grows one endless trace.

Clocks: the server stamps the page (receive and render times) and every outgoing envelope
(the last client message's send time, its receive time, and the send time); the browser turns
those request/response pairs into an estimate of its clock's offset and shifts its spans onto
the server's clock, recording the shift in ``threadline.clock.correction_ns``.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace

import threadline as tl
from threadline import semconv
from threadline.seam import Handoff, as_handoff

try:
    from starlette.responses import FileResponse
    from starlette.routing import Route
    from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "threadline.integrations.live needs Starlette: pip install 'threadline[live]'"
    ) from exc

if TYPE_CHECKING:
    from markupsafe import Markup
else:
    try:  # what Jinja2 and other autoescaping template engines take as markup, not text
        from markupsafe import Markup
    except ImportError:  # pragma: no cover - depends on the environment

        class Markup(str):
            """Markup by the ``__html__`` protocol that template engines honour."""

            def __html__(self) -> str:
                return self


log = logging.getLogger("threadline")

SCRIPT_PATH = "/_threadline/threadline.js"
SCRIPT_FILE = Path(__file__).parent / "static" / "threadline.js"
SESSION_RELATIONS = ("link", "child")
Session = Literal["link", "child"]

_warned_envelope = False


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


# -- the page -----------------------------------------------------------------------------------


def meta_tags() -> Markup:
    """``<meta>`` tags with the context of the current span (the render) and the server's clock
    readings for this request: when it was received (the span's start) and now. Returned as
    markup, so an autoescaping template (Jinja2's ``{{ live.meta_tags() }}``) writes it as is."""
    carrier = tl.inject()
    tags = [
        f'<meta name="{key}" content="{html.escape(carrier[key], quote=True)}">'
        for key in ("traceparent", "tracestate")
        if key in carrier
    ]
    rendered = time.time_ns()
    received = getattr(trace.get_current_span(), "start_time", None) or rendered
    tags.append(f'<meta name="threadline-clock" content="{_ms(received)} {_ms(rendered)}">')
    return Markup("\n".join(tags))


def script_tag(
    endpoint: str | None = None,
    *,
    service: str | None = None,
    interactions: Session = "link",
    sample_ratio: float | None = None,
    src: str = SCRIPT_PATH,
) -> Markup:
    """``<script>`` loading the browser module (as markup, like `meta_tags`). `endpoint` is the
    OTLP/HTTP base URL the browser exports to (default: this process's endpoint); `service` its
    service name (default: this service's name + "-browser"); `interactions`: each interaction
    its own trace linked to the session ("link") or a child of the session ("child");
    `sample_ratio`: the share of the traces the browser starts that are recorded (default:
    this process's ``configure(sample_ratio=)``), decided once per trace as the server's
    sampler decides from the trace id; spans under the server's context follow its decision;
    `src`: the URL the browser module is served at (`script_route`'s path)."""
    if interactions not in SESSION_RELATIONS:
        raise ValueError(f"interactions must be one of {SESSION_RELATIONS}, not {interactions!r}")
    settings = tl.settings()
    if sample_ratio is None:
        sample_ratio = settings.sample_ratio if settings else 1.0
    if isinstance(sample_ratio, bool) or not isinstance(sample_ratio, int | float):
        raise TypeError(f"sample_ratio must be a number in [0, 1], not {sample_ratio!r}")
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be in [0, 1], not {sample_ratio!r}")
    endpoint = endpoint or (settings.endpoint if settings else "http://127.0.0.1:4318")
    service = service or (f"{settings.service_name}-browser" if settings else "browser")
    attrs = {
        "src": src,
        "data-endpoint": endpoint,
        "data-service": service,
        "data-interactions": interactions,
        "data-sample-ratio": repr(float(sample_ratio)),
    }
    rendered = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    return Markup(f"<script {rendered}></script>")


def head(endpoint: str | None = None, **options: Any) -> Markup:
    """The meta tags and the script tag, for a template's ``<head>`` (as markup). `endpoint` and
    the keyword `options` are `script_tag`'s."""
    return Markup(f"{meta_tags()}\n{script_tag(endpoint, **options)}")


def script_route(path: str = SCRIPT_PATH) -> Route:
    """A Starlette route serving the browser module (no Node needed at run time) at `path`."""

    async def threadline_js(request: Any) -> FileResponse:
        return FileResponse(SCRIPT_FILE, media_type="text/javascript")

    return Route(path, threadline_js, methods=["GET", "HEAD"])


# -- the socket ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message from the browser: its payload, the context it carried, when it arrived."""

    data: str | bytes
    handoff: Handoff
    received_ns: int
    sent_ms: float | None = None  # the browser's clock when it sent the message


def _garbled_envelope(reason: str) -> None:
    global _warned_envelope
    if not _warned_envelope:
        _warned_envelope = True
        log.warning(
            "threadline: a live message envelope %s; delivered as it came (logged once)", reason
        )


def unwrap(raw: str | bytes) -> tuple[dict[str, Any] | None, str | bytes]:
    """(envelope head, payload). Text envelopes are a JSON object with the payload in "data";
    binary ones a JSON head line, then the payload bytes. Anything else passes through whole."""
    try:
        if isinstance(raw, str):
            obj = json.loads(raw)
            if isinstance(obj, dict) and isinstance(obj.get("traceparent"), str) and "data" in obj:
                payload = obj.pop("data")
                if isinstance(payload, str):
                    return obj, payload
        else:
            head, nl, payload = raw.partition(b"\n")
            if nl and head.startswith(b"{"):
                obj = json.loads(head)
                if isinstance(obj, dict) and isinstance(obj.get("traceparent"), str):
                    return obj, payload
    except ValueError:
        pass
    _garbled_envelope("could not be read")
    return None, raw


def _envelope(payload: str | bytes, head: dict[str, Any]) -> str | bytes:
    if isinstance(payload, str):
        return json.dumps({**head, "data": payload}, separators=(",", ":"))
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + payload


class LiveSocket:
    """A Starlette WebSocket whose session and messages are traced.

        async with LiveSocket(websocket) as sock:    # accepts; the connect is the session span
            async for data in sock:                  # each message handled under its own span
                await sock.send_text(...)            # the reply carries the handler's context

    The loop body runs under a CONSUMER span "process <path>": a child of the browser's span
    that sent the message, linked to the session. Leaving the block ends the current message
    span (recording an exception that escaped) and closes the socket; a client that went away
    ends the block quietly.

    `websocket` is the Starlette WebSocket to serve; `session`: a message that carries no
    context is its own trace linked to the session ("link"), or a child of the session
    ("child"); `name` is the path in the spans' names (default: the socket's URL path).
    """

    def __init__(
        self, websocket: WebSocket, *, session: Session = "link", name: str | None = None
    ) -> None:
        if session not in SESSION_RELATIONS:
            raise ValueError(f"session must be one of {SESSION_RELATIONS}, not {session!r}")
        self.websocket = websocket
        self.relation: Session = session
        self.path = name or websocket.url.path
        params = websocket.query_params
        # The browser module announces itself by putting its context on the URL; only then are
        # messages enveloped both ways (a plain client gets plain frames).
        self.enveloped = "traceparent" in params
        self.client = as_handoff(
            {k: params[k] for k in ("traceparent", "tracestate") if k in params}
        )
        self.session: Handoff = Handoff(carrier={})
        self.session_id = ""
        # on every message span (the session id joins them once the session has one)
        self._attributes: dict[str, Any] = {
            "messaging.system": "websocket",
            "messaging.destination.name": self.path,
        }
        self._outer: trace.Span | None = None
        self._open: ExitStack | None = None
        self._last: tuple[float, float] | None = None  # (client send ms, server receive ms)

    # session

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the handshake under the session span "connect <path>" (child of the browser's
        connect span when it sent one, else a new trace)."""
        self._outer = trace.get_current_span()
        attributes = {"network.protocol.name": "websocket", "url.path": self.path}
        with tl.resume(
            self.client, f"connect {self.path}", kind="server", attributes=attributes
        ) as span:
            self.session = tl.capture()
            self.session_id = self.client.span_id or format(span.get_span_context().span_id, "016x")
            span.set_attribute(semconv.SESSION_ID, self.session_id)
            span.set_attribute(semconv.SESSION_RELATION, self.relation)
            await self.websocket.accept(subprotocol=subprotocol, headers=headers)
        self._attributes[semconv.SESSION_ID] = self.session_id
        outer = self._outer
        if outer.is_recording() and hasattr(outer, "add_link"):
            # An ASGI instrumentation's span for the whole connection: tie it to the session.
            outer.set_attribute(semconv.SESSION_ID, self.session_id)
            outer.add_link(self.session.span_context, {semconv.LINK: "session"})

    async def __aenter__(self) -> LiveSocket:
        await self.accept()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self._finish(exc_type, exc, tb)
        gone = exc_type is not None and issubclass(exc_type, WebSocketDisconnect)
        if not gone and self.websocket.application_state == WebSocketState.CONNECTED:
            try:
                await self.websocket.close(1011 if exc_type else 1000)
            except Exception:  # noqa: BLE001 - the peer may have gone meanwhile
                pass
        return gone

    # receiving

    async def receive(self) -> Message:
        """The next message (raises WebSocketDisconnect when the client has gone)."""
        while True:
            msg = await self.websocket.receive()
            received = time.time_ns()
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000), msg.get("reason"))
            raw = msg.get("text") if msg.get("text") is not None else msg.get("bytes")
            if raw is None:
                continue
            if not self.enveloped:
                return Message(raw, Handoff(carrier={}), received)
            head, payload = unwrap(raw)
            head = head or {}
            sent = head.get("sent")
            sent = (
                float(sent)
                if isinstance(sent, int | float) and not isinstance(sent, bool)
                else None
            )
            if sent is not None:
                self._last = (sent, _ms(received))
            return Message(payload, as_handoff(head), received, sent)

    def process(self, message: Message) -> ExitStack:
        """Enter to run the handling of `message` under its span (see the class docs)."""
        stack = ExitStack()
        attributes = {
            **self._attributes,
            "messaging.operation.type": "process",
            "messaging.message.body.size": len(message.data),
        }
        name = f"process {self.path}"
        if message.handoff:
            stack.enter_context(tl.resume(message.handoff))
            stack.enter_context(tl.span(name, attributes, kind="consumer", links=[self.session]))
        else:
            stack.enter_context(self._in_session(name, "consumer", attributes))
        return stack

    def __aiter__(self) -> LiveSocket:
        return self

    async def __anext__(self) -> str | bytes:
        self._finish(None, None, None)
        try:
            message = await self.receive()
        except WebSocketDisconnect:
            raise StopAsyncIteration from None
        stack = self.process(message)
        stack.__enter__()
        self._open = stack
        return message.data

    def _finish(self, exc_type, exc, tb) -> None:
        stack, self._open = self._open, None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    def _in_session(self, name: str, kind: str, attributes: Mapping[str, Any]):
        return tl.resume(
            self.session, name, relation=self.relation, kind=kind, attributes=attributes
        )

    # sending

    async def send_text(self, data: str) -> None:
        await self._send(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)

    async def send_json(self, data: Any) -> None:
        await self._send(json.dumps(data, separators=(",", ":")))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.websocket.close(code, reason)

    async def _send(self, payload: str | bytes) -> None:
        attributes = {
            **self._attributes,
            "messaging.operation.type": "send",
            "messaging.message.body.size": len(payload),
        }
        name = f"send {self.path}"
        here = trace.get_current_span()
        # Inside a handler (or any span of the app's own) the reply continues that trace; from
        # outside any (a push from a background task) it belongs to the session.
        inside = here.get_span_context().is_valid and here is not self._outer
        with (
            tl.span(name, attributes, kind="producer")
            if inside
            else self._in_session(name, "producer", attributes)
        ):
            if self.enveloped:
                now = time.time_ns()
                head: dict[str, Any] = {**tl.inject(), "sent": _ms(now)}
                if self._last is not None:
                    head["clock"] = [self._last[0], self._last[1], _ms(now)]
                payload = _envelope(payload, head)
            if isinstance(payload, str):
                await self.websocket.send_text(payload)
            else:
                await self.websocket.send_bytes(payload)


def endpoint(
    on_message: Callable[[LiveSocket, str | bytes], Awaitable[Any]],
    *,
    on_connect: Callable[[LiveSocket], Awaitable[Any]] | None = None,
    on_disconnect: Callable[[LiveSocket], Awaitable[Any]] | None = None,
    session: Session = "link",
) -> Callable[[WebSocket], Awaitable[None]]:
    """A Starlette/FastAPI WebSocket endpoint: ``on_message(sock, data)`` for each message, under
    its span. ``WebSocketRoute("/live", live.endpoint(on_message))`` or
    ``app.add_api_websocket_route("/live", live.endpoint(on_message))``. `on_connect(sock)` runs
    once the socket is accepted, `on_disconnect(sock)` when it is done, whatever ended it;
    `session` is as for `LiveSocket`."""
    if session not in SESSION_RELATIONS:
        raise ValueError(f"session must be one of {SESSION_RELATIONS}, not {session!r}")

    async def live_endpoint(websocket: WebSocket) -> None:
        async with LiveSocket(websocket, session=session) as sock:
            try:
                if on_connect is not None:
                    await on_connect(sock)
                async for data in sock:
                    await on_message(sock, data)
            finally:
                if on_disconnect is not None:
                    await on_disconnect(sock)

    return live_endpoint


__all__ = [
    "SCRIPT_PATH",
    "LiveSocket",
    "Message",
    "endpoint",
    "head",
    "meta_tags",
    "script_route",
    "script_tag",
]
