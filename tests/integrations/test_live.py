"""Live sessions in a real headless Chromium: the page render, the page load, a click, the
WebSocket messages both ways and the server's work make one trace; sessions link interactions."""

from __future__ import annotations

import contextlib
import html
import json
import re
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote, urlencode

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

import threadline as tl
from threadline.integrations import live
from threadline.server.client import Client
from threadline.testing import CapturedSpan, Trace, hex_ids

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


PAGE = """<!doctype html>
<html><head><meta charset="utf-8">{head}</head>
<body>
  <button id="checkout" data-trace="checkout" data-item="{item}">Checkout</button>
  <p id="status"></p>
  <form id="order" data-trace="order"><button id="place" data-trace="place">Place</button></form>
  <form id="search" data-trace="search"><input id="q" name="q"></form>
  <input id="note" data-trace="note">
  <button id="plain">Not traced</button>
  <script>
    const ws = new Threadline.WebSocket("/live");
    window.replies = 0;
    window.clicks = [];  // the trace of each click, to look up in the backend
    window.clickSpans = [];
    window.seen = [];  // [event, target id, the span current in the page's own listener]
    window.opened = new Promise((resolve) => ws.addEventListener("open", resolve));
    const button = document.getElementById("checkout");
    button.addEventListener("click", () => {{
      window.clicks.push(Threadline.current.traceId);
      window.clickSpans.push(Threadline.current);
      ws.send(JSON.stringify({{type: "checkout", item: button.dataset.item}}));
    }});
    for (const type of ["click", "submit", "change"]) document.addEventListener(type, (e) => {{
      if (type === "submit") e.preventDefault();
      const s = Threadline.current;
      window.seen.push([type, e.target.id, s && s.name, s && s.traceId]);
    }});
    ws.onmessage = (event) => {{
      document.getElementById("status").textContent = JSON.parse(event.data).status;
      window.replies += 1;
    }};
  </script>
</body></html>"""


def shop_app(otlp_endpoint: str, session: str = "link"):
    async def page(request: Request) -> HTMLResponse:
        item = request.query_params.get("item", "book")
        return HTMLResponse(PAGE.format(head=live.head(otlp_endpoint, service="shop-browser", interactions=session),
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
def backend():
    from threadline.server import serving

    with serving.start() as server:
        yield server


@pytest.fixture(params=["link"])
def shop(backend, request):
    """The shop on an ephemeral port; it and the browser export to `threadline serve`. The
    session model comes from the test's parametrisation (default "link")."""
    tl.configure("shop", endpoint=backend.urls.otlp_http)
    try:
        with ServerThread(shop_app(backend.urls.otlp_http, request.param)) as host:
            yield host
    finally:
        tl.shutdown()


def checkout(browser, backend, url: str, clicks: int = 1, behind_s: float = 0, leave=False):
    """Load the page (in a browser whose clock is `behind_s` seconds behind), click checkout
    `clicks` times (each waits for its reply), export both sides' spans (the browser's by
    leaving the page when `leave`, else by flushing). Returns what the page showed, the render's
    trace and each click's trace, as stored by the backend."""
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
        render_id, click_ids = page.evaluate("[Threadline.pageLoad.traceId, window.clicks]")
        if leave:
            page.goto("about:blank")  # pagehide: the module flushes with keepalive requests
        else:
            page.evaluate("Threadline.flush()")
    finally:
        page.close()
    tl.flush()
    # render: GET /, page load, connect (browser), connect (server); a click: 6 spans
    return shown, stored(backend, render_id, 4), [stored(backend, tid, 6) for tid in click_ids]


def stored(backend, trace_id: str, spans: int) -> Trace:
    """The trace as the backend has it, once it holds `spans` spans."""
    return Trace(trace_id, Client(backend.urls.api).captured(trace_id, spans))


@contextlib.contextmanager
def clicked_once(browser, url: str):
    """The page at `url`, its checkout clicked once and answered; closed afterwards."""
    page = browser.new_page()
    try:
        page.goto(url)
        page.evaluate("window.opened")
        page.click("#checkout")
        page.wait_for_function("window.replies === 1", timeout=10_000)
        yield page
    finally:
        page.close()


def one(t: Trace, name: str, service: str) -> CapturedSpan:
    (span,) = [s for s in t.find_all(name) if s.service == service]
    return span


def test_click_message_server_and_reply_are_one_trace(shop, browser, backend):
    shown, render, (t,) = checkout(browser, backend, f"http://{shop}/")
    assert shown["status"] == "paid for book"
    t.assert_connected()
    click = t.root
    assert (click.name, click.service, click.kind) == ("click checkout", "shop-browser", "INTERNAL")
    b_send = one(t, "send /live", "shop-browser")
    assert (b_send.kind, b_send.parent_id) == ("PRODUCER", click.span_id)
    server = one(t, "process /live", "shop")
    assert (server.kind, server.parent_id) == ("CONSUMER", b_send.span_id)
    assert t.find("reserve stock").parent_id == server.span_id
    s_send = one(t, "send /live", "shop")
    assert (s_send.kind, s_send.parent_id) == ("PRODUCER", server.span_id)
    reply = one(t, "process /live", "shop-browser")
    assert (reply.kind, reply.parent_id) == ("CONSUMER", s_send.span_id)

    # The page load and the socket's connect belong to the initial render's trace.
    render.assert_connected()
    get = render.root
    assert (get.name, get.kind, get.service) == ("GET /", "SERVER", "shop")
    page_load = render.find("page load")
    assert (page_load.kind, page_load.parent_id) == ("INTERNAL", get.span_id)
    b_connect = one(render, "connect /live", "shop-browser")
    s_connect = one(render, "connect /live", "shop")
    assert (b_connect.kind, b_connect.parent_id) == ("CLIENT", get.span_id)
    assert (s_connect.kind, s_connect.parent_id) == ("SERVER", b_connect.span_id)
    # ... and the interaction is linked to that session on both sides.
    assert click.links == [(render.trace_id, b_connect.span_id, {"threadline.link": "session"})]
    assert [(lt, ls) for lt, ls, _ in server.links] == [(render.trace_id, s_connect.span_id)]
    for span in (click, b_send, server, s_send, reply, s_connect):
        assert span.attributes["threadline.session.id"] == b_connect.span_id
    for span in (b_send, server, s_send, reply):
        assert span.attributes["messaging.system"] == "websocket"
        assert span.attributes["messaging.destination.name"] == "/live"
    assert (
        server.attributes["messaging.operation.type"],
        s_send.attributes["messaging.operation.type"],
    ) == ("process", "send")
    assert s_connect.attributes["url.path"] == "/live"

    # Client spans were placed on the server's clock, reversibly.
    assert isinstance(click.attributes["threadline.clock.correction_ns"], int)
    assert click.attributes["threadline.clock.uncertainty_ns"] >= 0
    # ... so asking the trace view to adjust clock skew finds nothing to move in the render.
    view = Client(backend.urls.api).get(
        f"/api/threadline/analysis/trace/{render.trace_id}", skew="1"
    )
    assert view["skew"]["adjusted"] is True and view["skew"]["shifts"] == []


def test_submit_and_change_are_traced_and_unmarked_elements_are_not(shop, browser, backend):
    page = browser.new_page()
    try:
        page.goto(f"http://{shop}/")
        page.evaluate("window.opened")
        page.click("#place")  # a submit button: the click, and the submit it causes
        page.fill("#q", "tea")
        page.press("#q", "Enter")  # implicit submission of a form without a button
        page.fill("#note", "leave at the door")
        page.locator("#note").blur()  # the change is committed
        page.click("#plain")
        seen = page.evaluate("window.seen")
        render_id = page.evaluate("Threadline.pageLoad.traceId")
        # after the interactions' own end-of-task timers: every span has ended
        page.evaluate("() => new Promise((r) => setTimeout(r)).then(() => Threadline.flush())")
    finally:
        page.close()
    place, submit_order, change_q, submit_search, change_note, plain = seen
    assert place[:3] == ["click", "place", "click place"]
    assert submit_order[:3] == ["submit", "order", "submit order"]
    assert submit_order[3] == place[3]  # the click's trace
    assert change_q == ["change", "q", None, None]  # the form is marked, not the field
    assert submit_search[:3] == ["submit", "search", "submit search"]
    assert change_note[:3] == ["change", "note", "change note"]
    assert plain == ["click", "plain", None, None]
    assert len({place[3], submit_search[3], change_note[3], render_id}) == 4

    render = stored(backend, render_id, 4)
    b_connect = one(render, "connect /live", "shop-browser")
    clicked = stored(backend, place[3], 2)
    clicked.assert_connected()
    click, submit = clicked.root, clicked.find("submit order")
    assert (click.name, submit.parent_id) == ("click place", click.span_id)
    assert submit.links == [] and submit.attributes["html.element"] == "form"
    for trace_id, name, element in [
        (place[3], "click place", "button"),
        (submit_search[3], "submit search", "form"),
        (change_note[3], "change note", "input"),
    ]:
        t = stored(backend, trace_id, 1)
        assert (t.root.name, t.root.service) == (name, "shop-browser")
        assert [(lt, ls) for lt, ls, _ in t.root.links] == [(render_id, b_connect.span_id)]
        assert t.root.attributes["threadline.session.id"] == b_connect.span_id
        assert t.root.attributes["html.element"] == element
        assert t.root.attributes["event.type"] == name.split()[0]
    assert len(stored(backend, submit_search[3], 1)) == 1
    api = Client(backend.urls.api)
    assert api.search(service="shop-browser", filters=["html.id=plain OR html.id=q"]) == []


def test_sample_ratio_reaches_the_browser_and_zero_records_nothing(backend, browser):
    tl.configure("shop", endpoint=backend.urls.otlp_http, sample_ratio=0.0)
    try:
        with (
            ServerThread(shop_app(backend.urls.otlp_http)) as host,
            clicked_once(browser, f"http://{host}/") as page,
        ):
            page.evaluate("Threadline.flush()")
            ratio, clicks, load, stats = page.evaluate(
                "[Threadline.config.sampleRatio, window.clickSpans.map((s) => [s.traceId,"
                " s.sampled, s.traceparent.slice(-2)]), Threadline.pageLoad.sampled,"
                " {...Threadline.stats}]"
            )
            tag = page.locator("script[data-sample-ratio]").get_attribute("data-sample-ratio")
        tl.flush()  # the server's spans, had any been recorded, are stored once this returns
    finally:
        tl.shutdown()
    ((click_trace, sampled, flags),) = clicks
    assert (tag, ratio, sampled, flags, load) == ("0.0", 0, False, "02", False)
    assert stats == {"exported": 0, "failed": 0}  # nothing was ever sent
    assert Client(backend.urls.api).trace(click_trace) == []  # nor recorded by the server


def test_two_interactions_are_two_traces_in_one_session(shop, browser, backend):
    _, render, clicks = checkout(browser, backend, f"http://{shop}/", clicks=2, leave=True)
    assert len(clicks) == 2 and clicks[0].trace_id != clicks[1].trace_id
    b_connect = one(render, "connect /live", "shop-browser")
    s_connect = one(render, "connect /live", "shop")
    for t in clicks:
        t.assert_connected()
        assert t.root.name == "click checkout"
        assert [(lt, ls) for lt, ls, _ in t.root.links] == [(render.trace_id, b_connect.span_id)]
        server = one(t, "process /live", "shop")
        assert [(lt, ls) for lt, ls, _ in server.links] == [(render.trace_id, s_connect.span_id)]
        assert {s.service for s in t} == {"shop-browser", "shop"}


@pytest.mark.parametrize("shop", ["child"], indirect=True)
def test_child_sessions_keep_interactions_in_the_page_trace(shop, browser, backend):
    _, render, clicks = checkout(browser, backend, f"http://{shop}/", clicks=2)
    assert [t.trace_id for t in clicks] == [render.trace_id] * 2
    render.assert_connected()
    b_connect = one(render, "connect /live", "shop-browser")
    interactions = render.find_all("click checkout")
    assert [c.parent_id for c in interactions] == [b_connect.span_id] * 2
    assert all(c.links == [] for c in interactions)
    assert len(render.find_all("process /live")) == 4


def open_ui(browser, backend, trace_id: str, query: str = ""):
    page = browser.new_page()
    page.goto(f"{backend.urls.api}/#/trace/{trace_id}{query}")
    page.wait_for_selector("body[data-ready=trace]", timeout=10_000)
    return page


def test_hostile_values_are_shown_not_run(shop, browser, backend):
    shown, _, (t,) = checkout(browser, backend, f"http://{shop}/?item={quote(HOSTILE)}")
    assert shown == {"status": f"paid for {HOSTILE}", "pwned": None, "images": 0}
    reserve = t.find("reserve stock")
    assert reserve.attributes["order.item"] == HOSTILE
    # The trace view shows the value as text, and nothing in it runs.
    page = open_ui(browser, backend, t.trace_id, f"?span={reserve.span_id}")
    try:
        page.wait_for_function("document.body.innerText.includes('onerror=')", timeout=10_000)
        assert page.evaluate("(v) => document.body.innerText.includes(v)", HOSTILE) is True
        assert page.evaluate("window.__pwned ?? null") is None
    finally:
        page.close()


def test_client_spans_are_placed_on_the_server_clock(shop, browser, backend):
    _, render, (t,) = checkout(browser, backend, f"http://{shop}/", behind_s=3600)
    b_send, b_reply = one(t, "send /live", "shop-browser"), one(t, "process /live", "shop-browser")
    s_proc, s_send = one(t, "process /live", "shop"), one(t, "send /live", "shop")
    correction = b_send.attributes["threadline.clock.correction_ns"]
    # Within the estimate's uncertainty (+ the browser's timer resolution), causality holds on
    # the server's clock: the message was sent before it was processed, the reply received
    # after it was sent. Undoing the correction gives the browser's own clock, an hour behind.
    slack = b_send.attributes["threadline.clock.uncertainty_ns"] + 2_000_000
    assert b_send.start_ns <= s_proc.start_ns + slack
    assert b_reply.start_ns + slack >= s_send.start_ns
    assert 3590e9 < correction < 3610e9
    assert b_send.start_ns - correction < s_proc.start_ns - 3590e9
    assert render.find("page load").attributes["threadline.clock.correction_ns"] == correction

    # The UI can undo the correction: the browser's spans at its own clock's times.
    api = Client(backend.urls.api)
    view = api.get(f"/api/threadline/analysis/trace/{t.trace_id}", client_clock="raw")
    assert view["skew"]["client_clock"] == "raw" and view["skew"]["client_corrected"] == 3
    starts = {r["id"]: int(view["t0_ns"]) + r["start"] for r in view["rows"]}
    assert starts[b_send.span_id] == b_send.start_ns - correction
    assert starts[s_proc.span_id] == s_proc.start_ns
    page = open_ui(browser, backend, t.trace_id)
    try:
        page.get_by_label("Browser clock as recorded").check()
        page.wait_for_function("location.hash.includes('client_clock=raw')")
        page.wait_for_selector("text=correction made at source undone", timeout=10_000)
    finally:
        page.close()


def dead_endpoint() -> str:
    """An OTLP URL nobody listens on (the browser's spans are not what these tests read)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


def echo_app(session: str, framework: str = "starlette"):
    async def on_message(sock: live.LiveSocket, data: str | bytes) -> None:
        if data == "boom":
            raise RuntimeError("the handler failed")
        with tl.span("echo"):
            await (sock.send_text(data) if isinstance(data, str) else sock.send_bytes(data))

    if framework == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()
        app.add_api_websocket_route("/echo", live.endpoint(on_message, session=session))
        return tl.instrument(app)  # its connection span stays apart from the session's traces

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<head>{live.head(dead_endpoint())}</head><body>{BINARY_PAGE}</body>")

    return Starlette(
        routes=[
            Route("/", page),
            live.script_route(),
            WebSocketRoute("/echo", live.endpoint(on_message, session=session)),
        ]
    )


BINARY_PAGE = """<script>
  const ws = new Threadline.WebSocket("/echo");
  ws.binaryType = "arraybuffer";
  window.echoed = new Promise((resolve) => {
    ws.onmessage = (event) => resolve(Array.from(new Uint8Array(event.data)));
  });
  ws.onopen = () => {
    const span = Threadline.startSpan("send bytes");  // a send made in a span's name
    window.sentTrace = span.traceId;
    Threadline.withSpan(span, () => ws.send(new Uint8Array([0, 1, 10, 123, 255])));
    span.end();
  };
</script>"""


def test_binary_messages_from_the_browser(traces, browser):
    with ServerThread(echo_app("link")) as host:
        page = browser.new_page()
        try:
            page.goto(f"http://{host}/")
            assert page.evaluate("window.echoed") == [0, 1, 10, 123, 255]
            sent_trace = page.evaluate("window.sentTrace")
        finally:
            page.close()
    traces.wait_for(lambda spans: any(s.name == "process /echo" for s in spans))
    (processed,) = traces.find_all("process /echo")
    assert processed.trace_id == sent_trace and processed.parent_id is not None
    assert processed.attributes["messaging.message.body.size"] == 5


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
    if framework == "fastapi":  # the instrumentation's span for the whole connection
        (connection,) = [
            s for s in traces.spans if s.kind == "SERVER" and s.name != "connect /echo"
        ]
        assert connection.trace_id != t.trace_id
        assert connection.links == [(t.trace_id, session.span_id, {"threadline.link": "session"})]
        assert (
            connection.attributes["threadline.session.id"]
            == session.attributes["threadline.session.id"]
        )


def test_meta_tags_carry_the_render_context_and_clock(traces):
    with tl.span("GET /", kind="server") as render:
        tags = live.meta_tags()
        traceparent = tl.inject()["traceparent"]
    assert traceparent.split("-")[1:3] == list(hex_ids(render))
    assert f'<meta name="traceparent" content="{traceparent}">' in tags
    received, rendered = re.search(
        r'name="threadline-clock" content="([\d.]+) ([\d.]+)"', tags
    ).groups()
    assert float(received) == round(traces.find_all("GET /")[0].start_ns / 1e6, 3)
    assert float(received) <= float(rendered)
    tag = live.script_tag("http://127.0.0.1:4318", service='x"><script>')
    assert 'data-service="x&quot;&gt;&lt;script&gt;"' in tag and "<script>" not in tag[7:]


def test_bad_options_fail_at_the_call():
    with pytest.raises(ValueError, match="session must be one of"):
        live.endpoint(lambda sock, data: None, session="children")
    with pytest.raises(ValueError, match="interactions must be one of"):
        live.script_tag(interactions="links")
    with pytest.raises(ValueError, match=r"sample_ratio must be in \[0, 1\], not 1.5"):
        live.script_tag(sample_ratio=1.5)
    with pytest.raises(TypeError, match="sample_ratio must be a number"):
        live.script_tag(sample_ratio="all")


def test_head_is_markup_an_autoescaping_template_writes_as_is(traces):
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment(autoescape=True).from_string(
        "<head>{{ head }}</head><p>{{ note }}</p>"
    )
    with tl.span("GET /", kind="server"):
        head = live.head("http://127.0.0.1:4318", service="shop-browser", sample_ratio=0.25)
        traceparent = tl.inject()["traceparent"]
    page = template.render(head=head, note="<b>")
    assert page.startswith(f'<head><meta name="traceparent" content="{traceparent}">\n')
    assert page.endswith(
        '<script src="/_threadline/threadline.js" data-endpoint="http://127.0.0.1:4318"'
        ' data-service="shop-browser" data-interactions="link" data-sample-ratio="0.25">'
        "</script></head><p>&lt;b&gt;</p>"
    )
    assert {type(live.meta_tags()).__name__, type(live.script_tag()).__name__} == {"Markup"}


def test_without_markupsafe_the_tags_still_speak_the_html_protocol():
    code = (
        "import sys; sys.modules['markupsafe'] = None\n"
        "from threadline.integrations import live\n"
        "tags = live.head('http://127.0.0.1:4318')\n"
        "assert isinstance(tags, str) and tags.__html__() == tags, tags\n"
        "print(type(tags).__module__, tags.count('<meta'), tags.count('<script'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["threadline.integrations.live", "1", "1"]


def test_a_failing_handler_is_recorded_and_closes_the_socket(traces):
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    with ServerThread(echo_app("link")) as host, connect(f"ws://{host}/echo") as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1011
    traces.wait_for(lambda spans: any(s.name == "process /echo" for s in spans))
    (failed,) = traces.find_all("process /echo")
    assert (failed.status, failed.status_message) == ("ERROR", "RuntimeError: the handler failed")
    assert failed.event("exception")["exception.message"] == "the handler failed"


def test_an_unreachable_collector_never_breaks_the_page(traces, browser):
    with (
        ServerThread(shop_app(dead_endpoint())) as host,
        clicked_once(browser, f"http://{host}/") as page,
    ):
        assert page.text_content("#status") == "paid for book"
        page.evaluate("Threadline.flush()")  # resolves: failures are counted, not thrown
        stats = page.evaluate("({...Threadline.stats})")
    assert (
        stats["exported"] == 0 and stats["failed"] >= 5
    )  # page load, connect, click, send, process
