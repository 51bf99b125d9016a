"""Live sessions in a real headless Chromium: the page render, the page load, a click, the
WebSocket messages both ways and the server's work make one trace; sessions link interactions."""

from __future__ import annotations

import html
import json
import threading
import time
from urllib.parse import quote, urlencode

import pytest

pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from starlette.applications import Starlette  # noqa: E402
from starlette.middleware.cors import CORSMiddleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, Response  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402

import threadline as tl  # noqa: E402
from threadline.integrations import live  # noqa: E402
from threadline.testing import CapturedSpan, hex_ids  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
HOSTILE = '"><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


class ServerThread:
    """uvicorn on an ephemeral port in a daemon thread."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:  # uvicorn offers no event to wait on
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _value(v: dict):
    ((kind, raw),) = v.items()
    return int(raw) if kind == "intValue" else raw


def _attrs(kvs: list) -> dict:
    return {kv["key"]: _value(kv["value"]) for kv in kvs or []}


def otlp_json_receiver(sink):
    """An OTLP/HTTP JSON endpoint with CORS, feeding CapturedSpans to `sink`."""
    kinds = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}

    async def receive(request: Request) -> Response:
        body = await request.json()
        spans = []
        for rs in body["resourceSpans"]:
            resource = _attrs(rs["resource"]["attributes"])
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    spans.append(CapturedSpan(
                        name=s["name"], trace_id=s["traceId"], span_id=s["spanId"],
                        parent_id=s.get("parentSpanId") or None, kind=kinds[s["kind"]],
                        status={0: "UNSET", 1: "OK", 2: "ERROR"}[s["status"].get("code", 0)],
                        status_message=s["status"].get("message", ""),
                        start_ns=int(s["startTimeUnixNano"]), end_ns=int(s["endTimeUnixNano"]),
                        attributes=_attrs(s["attributes"]), resource=resource,
                        events=[(e["name"], _attrs(e["attributes"])) for e in s["events"]],
                        links=[(lk["traceId"], lk["spanId"], _attrs(lk["attributes"])) for lk in s["links"]],
                        scope=ss["scope"]["name"],
                    ))  # fmt: skip
        sink(spans)
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/traces", receive, methods=["POST"])])
    return CORSMiddleware(app, allow_origins=["*"], allow_methods=["POST"], allow_headers=["*"])


PAGE = """<!doctype html>
<html><head><meta charset="utf-8">{head}</head>
<body>
  <button id="checkout" data-trace="checkout" data-item="{item}">Checkout</button>
  <p id="status"></p>
  <script>
    const ws = new Threadline.WebSocket("/live");
    window.replies = 0;
    window.opened = new Promise((resolve) => ws.addEventListener("open", resolve));
    const button = document.getElementById("checkout");
    button.addEventListener("click", () =>
      ws.send(JSON.stringify({{type: "checkout", item: button.dataset.item}})));
    ws.onmessage = (event) => {{
      document.getElementById("status").textContent = JSON.parse(event.data).status;
      window.replies += 1;
    }};
  </script>
</body></html>"""


def shop_app(otlp_endpoint: str, session: str = "link"):
    async def page(request: Request) -> HTMLResponse:
        item = request.query_params.get("item", "book")
        return HTMLResponse(PAGE.format(head=live.head(otlp_endpoint, service="shop-browser"),
                                        item=html.escape(item, quote=True)))  # fmt: skip

    async def on_message(sock: live.LiveSocket, data: str) -> None:
        order = json.loads(data)
        with tl.span("reserve stock", {"order.item": order["item"]}):
            pass
        await sock.send_json({"status": f"paid for {order['item']}"})

    app = Starlette(
        routes=[
            Route("/", page),
            live.script_route(),
            WebSocketRoute("/live", live.endpoint(on_message, session=session)),
        ]
    )
    return tl.instrument(app)  # the render's SERVER span


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shop(traces):
    with ServerThread(otlp_json_receiver(traces.add)) as collector:
        with ServerThread(shop_app(f"http://{collector}")) as host:
            yield host


def browser_spans(traces):
    return [s for s in traces.spans if s.service == "shop-browser"]


def checkout(browser, url: str, clicks: int = 1, behind_s: float = 0) -> dict:
    """Load the page (in a browser whose clock is `behind_s` seconds behind), click checkout
    `clicks` times (each waits for its reply), export the browser's spans; return what the page
    shows."""
    page = browser.new_page()
    try:
        if behind_s:
            page.clock.install(time=time.time() - behind_s)
        page.goto(url)
        page.evaluate("window.opened")
        for n in range(1, clicks + 1):
            page.click("#checkout")
            page.wait_for_function(f"window.replies === {n}", timeout=10_000)
        shown = page.evaluate(
            "({status: document.getElementById('status').textContent,"
            " pwned: window.__pwned ?? null, images: document.images.length})"
        )
        page.evaluate("Threadline.flush()")
        return shown
    finally:
        page.close()


def test_click_message_server_and_reply_are_one_trace(traces, shop, browser):
    assert checkout(browser, f"http://{shop}/")["status"] == "paid for book"

    traces.wait_for(lambda spans: sum(s.name == "process /live" for s in spans) >= 2)
    click = next(s for s in traces.spans if s.name == "click checkout")
    t = traces.trace(click.trace_id)
    t.assert_connected()
    assert t.root is click and click.service == "shop-browser"
    b_send, s_proc = t.find_all("send /live"), t.find_all("process /live")
    b_send = next(s for s in b_send if s.service == "shop-browser")
    assert (b_send.kind, b_send.parent_id) == ("PRODUCER", click.span_id)
    server = next(s for s in s_proc if s.service == "tests")
    assert (server.kind, server.parent_id) == ("CONSUMER", b_send.span_id)
    assert t.find("reserve stock").parent_id == server.span_id
    s_send = next(s for s in t.find_all("send /live") if s.service == "tests")
    assert (s_send.kind, s_send.parent_id) == ("PRODUCER", server.span_id)
    reply = next(s for s in s_proc if s.service == "shop-browser")
    assert (reply.kind, reply.parent_id) == ("CONSUMER", s_send.span_id)

    # The page load and the socket's connect belong to the initial render's trace.
    load = next(s for s in traces.spans if s.name == "page load")
    render = next(s for s in traces.spans if s.kind == "SERVER" and s.name.startswith("GET"))
    assert (load.trace_id, load.parent_id) == (render.trace_id, render.span_id)
    b_connect = next(s for s in browser_spans(traces) if s.name == "connect /live")
    s_connect = next(s for s in traces.spans if s.name == "connect /live" and s.service == "tests")
    assert (b_connect.trace_id, b_connect.parent_id) == (render.trace_id, render.span_id)
    assert (s_connect.kind, s_connect.parent_id) == ("SERVER", b_connect.span_id)
    # ... and the interaction is linked to that session on both sides.
    assert click.links == [(b_connect.trace_id, b_connect.span_id, {"threadline.link": "session"})]
    assert [(lt, ls) for lt, ls, _ in server.links] == [(s_connect.trace_id, s_connect.span_id)]
    assert server.attributes["threadline.session.id"] == b_connect.span_id
    assert click.attributes["threadline.session.id"] == b_connect.span_id

    # Client spans were placed on the server's clock, reversibly.
    assert isinstance(click.attributes["threadline.clock.correction_ns"], int)
    assert click.attributes["threadline.clock.uncertainty_ns"] >= 0


def test_two_interactions_are_two_traces_in_one_session(traces, shop, browser):
    checkout(browser, f"http://{shop}/", clicks=2)

    traces.wait_for(lambda spans: sum(s.name == "process /live" for s in spans) >= 4)
    clicks = [s for s in traces.spans if s.name == "click checkout"]
    assert len(clicks) == 2 and clicks[0].trace_id != clicks[1].trace_id
    session = next(s for s in browser_spans(traces) if s.name == "connect /live")
    for click in clicks:
        assert click.parent_id is None
        assert [(lt, ls) for lt, ls, _ in click.links] == [(session.trace_id, session.span_id)]
        t = traces.trace(click.trace_id)
        t.assert_connected()
        assert {s.service for s in t} == {"shop-browser", "tests"}
        assert len(t.find_all("process /live")) == 2


def test_hostile_values_are_shown_not_run(traces, shop, browser):
    shown = checkout(browser, f"http://{shop}/?item={quote(HOSTILE)}")
    assert shown == {"status": f"paid for {HOSTILE}", "pwned": None, "images": 0}
    traces.wait_for(lambda spans: any(s.name == "reserve stock" for s in spans))
    assert traces.find_all("reserve stock")[0].attributes["order.item"] == HOSTILE


def test_client_spans_are_placed_on_the_server_clock(traces, shop, browser):
    checkout(browser, f"http://{shop}/", behind_s=3600)
    traces.wait_for(lambda spans: sum(s.name == "process /live" for s in spans) >= 2)
    click = next(s for s in traces.spans if s.name == "click checkout")
    t = traces.trace(click.trace_id)
    b_send, b_reply = (
        next(s for s in t.find_all(n) if s.service == "shop-browser")
        for n in ("send /live", "process /live")
    )
    s_proc, s_send = (
        next(s for s in t.find_all(n) if s.service == "tests")
        for n in ("process /live", "send /live")
    )
    correction = b_send.attributes["threadline.clock.correction_ns"]
    # Within the estimate's uncertainty (+ the browser's timer resolution), causality holds on
    # the server's clock: the message was sent before it was processed, the reply received
    # after it was sent. Undoing the correction gives the browser's own clock, an hour behind.
    slack = b_send.attributes["threadline.clock.uncertainty_ns"] + 2_000_000
    assert b_send.start_ns <= s_proc.start_ns + slack
    assert b_reply.start_ns + slack >= s_send.start_ns
    assert 3590e9 < correction < 3610e9
    assert b_send.start_ns - correction < s_proc.start_ns - 3590e9
    load = next(s for s in traces.spans if s.name == "page load")
    assert load.attributes["threadline.clock.correction_ns"] == correction


def echo_app(session: str, framework: str = "starlette"):
    async def on_message(sock: live.LiveSocket, data: str | bytes) -> None:
        with tl.span("echo"):
            await (sock.send_text(data) if isinstance(data, str) else sock.send_bytes(data))

    if framework == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()
        app.add_api_websocket_route("/echo", live.endpoint(on_message, session=session))
        return tl.instrument(app)  # its connection span stays apart from the session's traces
    return Starlette(routes=[WebSocketRoute("/echo", live.endpoint(on_message, session=session))])


def test_plain_client_messages_are_traces_linked_to_the_session(traces):
    from websockets.sync.client import connect

    with ServerThread(echo_app("link")) as host, connect(f"ws://{host}/echo") as ws:
        for text in ("one", "two"):
            ws.send(text)
            assert ws.recv(timeout=5) == text  # plain frames both ways
    traces.wait_for(lambda spans: sum(s.name == "process /echo" for s in spans) >= 2)
    session = traces.find_all("connect /echo")[0]
    assert (session.kind, session.parent_id) == ("SERVER", None)
    processed = traces.find_all("process /echo")
    assert len({s.trace_id for s in processed} | {session.trace_id}) == 3
    for span in processed:
        assert span.parent_id is None
        assert [(lt, ls) for lt, ls, _ in span.links] == [(session.trace_id, session.span_id)]
        assert span.attributes["threadline.session.id"] == session.span_id
        traces.trace(span.trace_id).assert_connected()


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_enveloped_binary_messages_and_the_child_session_model(traces, framework):
    from websockets.sync.client import connect

    with tl.span("browser stand-in") as client:
        url = f"ws://HOST/echo?{urlencode(tl.inject())}"
        with tl.span("send /echo", kind="producer") as sending:
            head = {**tl.inject(), "sent": time.time() * 1000}
    with (
        ServerThread(echo_app("child", framework)) as host,
        connect(url.replace("HOST", host)) as ws,
    ):
        ws.send(json.dumps(head).encode() + b"\n" + b"\x00\x01\n raw")
        reply_head, _, payload = ws.recv(timeout=5).partition(b"\n")
        ws.send("not an envelope")  # delivered as it came, in the session's trace
        assert json.loads(ws.recv(timeout=5))["data"] == "not an envelope"
    assert payload == b"\x00\x01\n raw"
    reply_head = json.loads(reply_head)
    assert reply_head["clock"][0] == head["sent"] and len(reply_head["clock"]) == 3

    traces.wait_for(lambda spans: sum(s.name == "process /echo" for s in spans) >= 2)
    t = traces.trace(hex_ids(client)[0])
    t.assert_connected()
    session, sent = t.find("connect /echo"), t.find_all("send /echo")
    first, second = t.find_all("process /echo")
    assert session.parent_id == hex_ids(client)[1]
    assert first.parent_id == hex_ids(sending)[1]
    assert [(lt, ls) for lt, ls, _ in first.links] == [(session.trace_id, session.span_id)]
    assert second.parent_id == session.span_id  # no context: a child of the session
    reply = next(s for s in sent if s.parent_id == t.find_all("echo")[0].span_id)
    assert reply_head["traceparent"].split("-")[2] == reply.span_id
