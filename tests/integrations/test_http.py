"""tl.instrument(): real servers (uvicorn, wsgiref) and real clients (httpx, requests, aiohttp)
on loopback, spans checked for trace id, parent or link, kind and service."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import urllib.parse
from importlib.util import find_spec

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry import baggage, trace
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import threadline as tl
from threadline.integrations.http import parse_server_timing
from threadline.testing import hex_ids

OUTSIDE = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


def seen(request_headers) -> dict:
    """What the application sees: the trace headers left to it, its trace, its baggage."""
    sc = trace.get_current_span().get_span_context()
    return {
        "traceparent": request_headers.get("traceparent"),
        "tracestate": request_headers.get("tracestate"),
        "baggage_header": request_headers.get("baggage"),
        "trace_id": f"{sc.trace_id:032x}",
        "baggage": dict(baggage.get_all()),
    }


async def hello(request):
    return JSONResponse(seen(request.headers))


def starlette_app(**kwargs):
    app = Starlette(routes=[Route("/hello", hello)])
    return tl.instrument(app, **kwargs)


def outside_get(url: str, headers) -> tuple[int, dict[str, str], bytes]:
    """A caller from outside: an uninstrumented client that sends exactly the headers given
    (a list of pairs may repeat a header)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("GET", parts.path or "/")
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        conn.putheader(key, value)
    conn.endheaders()
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def outside_json(url: str, headers) -> dict:
    return json.loads(outside_get(url, headers)[2])


def server_span(traces, trace_id=None):
    found = [s for s in traces.spans if s.kind == "SERVER"]
    if trace_id is not None:
        found = [s for s in found if s.trace_id == trace_id]
    assert len(found) == 1, traces.describe()
    return found[0]


def test_import_threadline_stays_light():
    code = (
        "import sys, threadline\n"
        "heavy = [m for m in sys.modules if m.startswith(('opentelemetry.instrumentation',"
        " 'starlette', 'httpx', 'requests', 'flask', 'aiohttp', 'django', 'grpc',"
        " 'sqlalchemy', 'sqlparse', 'psycopg', 'asyncpg', 'pymysql', 'sqlite3'))]\n"
        "assert not heavy, heavy\n"
        "threadline.instrument()\n"
        "from importlib.util import find_spec\n"
        "checked = 0\n"
        "for name in ('httpx', 'grpc', 'sqlalchemy', 'psycopg', 'psycopg2', 'asyncpg',"
        " 'pymysql', 'sqlite3'):\n"
        "    contrib = f'opentelemetry.instrumentation.{name}'\n"
        "    if find_spec(name) and find_spec(contrib):  # the library and its contrib\n"
        "        assert contrib in sys.modules, name\n"
        "        checked += 1\n"
        "print(checked)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=60, capture_output=True, text=True
    )
    names = ("httpx", "grpc", "sqlalchemy", "psycopg", "psycopg2", "asyncpg", "pymysql", "sqlite3")
    wired = [n for n in names if find_spec(n) and find_spec(f"opentelemetry.instrumentation.{n}")]
    assert wired and int(done.stdout) == len(wired)  # all 8 where the dev extra is installed


def test_httpx_to_starlette_continues_the_trace(traces, serve_asgi):
    with serve_asgi(starlette_app()) as url:
        with tl.span("checkout") as root:
            ctx = baggage.set_baggage("tenant", "acme")
            from opentelemetry import context

            token = context.attach(ctx)
            try:
                r = httpx.get(f"{url}/hello")
            finally:
                context.detach(token)
    trace_id, root_id = hex_ids(root)
    assert r.status_code == 200
    body = r.json()
    assert body["trace_id"] == trace_id
    assert body["baggage"] == {"tenant": "acme"}
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    t = traces.trace(trace_id)
    t.assert_connected()
    client = t.find_all(lambda s: s.kind == "CLIENT")
    assert len(client) == 1 and client[0].parent_id == root_id
    server = server_span(traces, trace_id)
    assert server.name == "GET /hello"
    assert server.parent_id == client[0].span_id
    assert server.service == "tests"
    # no per-message ASGI send/receive spans unless asked for
    assert not t.find_all(lambda s: s.name.endswith((" send", " receive")))
    # the caller learns which trace and server span answered it
    tp = f"00-{trace_id}-{server.span_id}-03"
    assert r.headers["server-timing"] == f'traceparent;desc="{tp}", trace;desc="{tp}"'
    assert parse_server_timing(r.headers["server-timing"]) == tp
    assert r.headers["traceresponse"] == tp
    assert r.headers["access-control-expose-headers"] == "Server-Timing, traceresponse"


def test_trust_link_starts_a_new_trace_linked_to_the_caller(traces, serve_asgi):
    with serve_asgi(starlette_app(trust="link")) as url:
        body = outside_json(
            f"{url}/hello",
            {"traceparent": OUTSIDE, "tracestate": "x=1", "baggage": "user=mallory"},
        )
    assert body["traceparent"] is None and body["baggage_header"] is None
    assert body["tracestate"] is None and body["baggage"] == {}
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    server = server_span(traces)
    assert server.trace_id == body["trace_id"] != "ab" * 16
    assert server.parent_id is None
    assert server.links == [("ab" * 16, "cd" * 8, {"threadline.trust": "link"})]


async def echo(request):
    """A downstream service, untraced: what it receives, verbatim."""
    return JSONResponse(
        {k: request.headers.get(k) for k in ("traceparent", "tracestate", "baggage")}
    )


def test_trust_link_passes_nothing_of_the_caller_downstream(traces, serve_asgi):
    with serve_asgi(Starlette(routes=[Route("/echo", echo)])) as downstream:

        async def relay(request):
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{downstream}/echo")
            return JSONResponse({"downstream": r.json(), **seen(request.headers)})

        edge = tl.instrument(Starlette(routes=[Route("/relay", relay)]), trust="link")
        with serve_asgi(edge) as url:
            body = outside_json(
                f"{url}/relay",
                {"traceparent": OUTSIDE, "tracestate": "x=1,y@z=2", "baggage": "user=mallory"},
            )
    down = body["downstream"]
    assert down["tracestate"] is None and down["baggage"] is None
    assert down["traceparent"].split("-")[1] == body["trace_id"] != "ab" * 16
    traces.wait_for(lambda spans: any(s.kind == "CLIENT" for s in spans))
    (client,) = [s for s in traces.spans if s.kind == "CLIENT"]
    assert down["traceparent"] == f"00-{body['trace_id']}-{client.span_id}-03"


def test_trust_ignore_starts_clean(traces, serve_asgi):
    with serve_asgi(starlette_app(trust="ignore")) as url:
        body = outside_json(f"{url}/hello", {"traceparent": OUTSIDE, "baggage": "user=x"})
    assert body["traceparent"] is None and body["baggage"] == {}
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    server = server_span(traces)
    assert server.trace_id == body["trace_id"] != "ab" * 16
    assert server.parent_id is None and server.links == []


def test_honour_accepts_any_header_casing_and_rejects_repeated_traceparents(traces, serve_asgi):
    with serve_asgi(starlette_app()) as url:
        one = outside_json(f"{url}/hello", {"TraceParent": OUTSIDE, "BAGGAGE": "a=1"})
        two = outside_json(
            f"{url}/hello",
            [("traceparent", OUTSIDE), ("traceparent", OUTSIDE.replace("ab", "ef"))],
        )
        three = outside_json(f"{url}/hello", [("baggage", "a=1"), ("baggage", "b=2+2")])
    assert one["trace_id"] == "ab" * 16
    assert one["baggage"] == {"a": "1"}
    assert two["trace_id"] not in ("ab" * 16, "ef" * 16)  # invalid: a new trace
    assert three["baggage"] == {"a": "1", "b": "2+2"}  # repeated baggage headers: one list


def test_fastapi_app(traces, serve_asgi):
    api = FastAPI()

    @api.get("/items/{item}")
    async def item(item: str, request: Request):
        return seen(request.headers)

    tl.instrument(api, trust="link")
    with serve_asgi(api) as url:
        status, headers, body = outside_get(f"{url}/items/7", {"traceparent": OUTSIDE})
    assert status == 200, body
    assert json.loads(body)["traceparent"] is None
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    server = server_span(traces)
    assert server.name == "GET /items/{item}"
    assert server.links[0][:2] == ("ab" * 16, "cd" * 8)
    assert parse_server_timing(headers["server-timing"]).split("-")[1] == server.trace_id


def test_requests_to_flask(traces, serve_wsgi):
    import flask
    import requests

    app = flask.Flask("shop")

    @app.route("/hello")
    def flask_hello():
        return seen(flask.request.headers)

    tl.instrument(app)
    with serve_wsgi(app) as url:
        with tl.span("checkout") as root:
            r = requests.get(f"{url}/hello", timeout=10)
    trace_id, _ = hex_ids(root)
    assert r.json()["trace_id"] == trace_id
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    t = traces.trace(trace_id)
    t.assert_connected()
    server = server_span(traces, trace_id)
    (client,) = t.find_all(lambda s: s.kind == "CLIENT")
    assert server.parent_id == client.span_id and server.name == "GET /hello"
    tp = f"00-{trace_id}-{server.span_id}-03"
    assert parse_server_timing(r.headers["Server-Timing"]) == tp
    assert r.headers["traceresponse"] == tp


def test_flask_with_trust_link(traces, serve_wsgi):
    import flask

    app = flask.Flask("edge")

    @app.route("/hello")
    def flask_hello():
        return seen(flask.request.headers)

    hooked = []
    tl.instrument(app, trust="link", request_hook=lambda span, env: hooked.append(env["PATH_INFO"]))
    with serve_wsgi(app) as url:
        status, headers, raw = outside_get(
            f"{url}/hello", {"traceparent": OUTSIDE, "tracestate": "x=1", "baggage": "user=mallory"}
        )
    body = json.loads(raw)
    assert status == 200
    assert (body["traceparent"], body["tracestate"], body["baggage_header"]) == (None, None, None)
    assert body["baggage"] == {}
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    server = server_span(traces)
    assert server.name == "GET /hello" and server.parent_id is None
    assert server.trace_id == body["trace_id"] != "ab" * 16
    assert server.links == [("ab" * 16, "cd" * 8, {"threadline.trust": "link"})]
    assert hooked == ["/hello"]  # the user's hook runs too
    assert headers["traceresponse"] == f"00-{server.trace_id}-{server.span_id}-03"


def test_instrumenting_an_app_again():
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app = Starlette(routes=[Route("/hello", hello)])
    assert tl.instrument(app) is app
    assert tl.instrument(app, trust="honour") is app  # the same arguments: nothing more to do
    with pytest.raises(ValueError, match=r"trust='link' \(was 'honour'\)"):
        tl.instrument(app, trust="link")

    def hook(span, scope):
        pass

    with pytest.raises(ValueError, match=r"request_hook=<function .*hook.*> \(was None\)"):
        tl.instrument(app, request_hook=hook)
    with pytest.raises(ValueError, match=r"asgi_spans=True \(was False\)"):
        tl.instrument(app, asgi_spans=True)
    assert [m.cls for m in app.user_middleware] == [OpenTelemetryMiddleware]  # instrumented once


def test_bare_wsgi_callable_with_trust_link(traces, serve_wsgi):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(environ.get("HTTP_TRACEPARENT")).encode()]

    wrapped = tl.instrument(app, trust="link")
    assert tl.instrument(app, trust="link") is wrapped  # idempotent
    with serve_wsgi(wrapped) as url:
        _, headers, body = outside_get(url, {"traceparent": OUTSIDE})
    assert body == b"None"
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    server = server_span(traces)
    assert server.links[0][:2] == ("ab" * 16, "cd" * 8)
    assert parse_server_timing(headers["server-timing"]).split("-")[1] == server.trace_id


def test_bare_asgi_callable(traces, serve_asgi):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sc = trace.get_current_span().get_span_context()
        await send({"type": "http.response.body", "body": f"{sc.trace_id:032x}".encode()})

    with serve_asgi(tl.instrument(app)) as url:
        _, _, body = outside_get(url, {"traceparent": OUTSIDE})
    assert body.decode() == "ab" * 16
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    assert server_span(traces).parent_id == "cd" * 8


def test_aiohttp_client(traces, serve_asgi):
    import aiohttp

    tl.instrument(servers=False)  # clients only: a global framework patch would outlive the test

    async def call(url):
        async with aiohttp.ClientSession() as session, session.get(f"{url}/hello") as r:
            return await r.json()

    with serve_asgi(starlette_app()) as url:
        with tl.span("checkout") as root:
            body = asyncio.run(call(url))
    trace_id, _ = hex_ids(root)
    assert body["trace_id"] == trace_id
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    t = traces.trace(trace_id)
    t.assert_connected()
    (client,) = t.find_all(lambda s: s.kind == "CLIENT")
    assert server_span(traces, trace_id).parent_id == client.span_id


def test_bad_arguments():
    with pytest.raises(ValueError, match="trust must be one of"):
        tl.instrument(trust="maybe")
    with pytest.raises(ValueError, match="pass the application"):
        tl.instrument(trust="link")
    with pytest.raises(TypeError, match="ASGI or WSGI application"):
        tl.instrument(42)


@pytest.mark.parametrize(
    "header, expected",
    [
        ('traceparent;desc="00-aa-bb-01"', "00-aa-bb-01"),
        ('cache;dur=2, traceparent;desc="00-aa-bb-01";dur=0', "00-aa-bb-01"),
        ('trace;desc="00-aa-bb-01"', "00-aa-bb-01"),
        ('traceparent;desc="00-aa-bb-01", trace;desc="00-aa-bb-01"', "00-aa-bb-01"),
        ('TraceParent;DESC="00-aa-bb-01"', "00-aa-bb-01"),  # names are case-insensitive
        ("Trace; Desc=00-aa-bb-01", "00-aa-bb-01"),  # desc as a token
        ("cache;dur=2", None),
        ("traceparent;dur=1", None),
        (None, None),
    ],
)
def test_parse_server_timing(header, expected):
    assert parse_server_timing(header) == expected


GLOBAL = """
import asyncio, httpx, threadline as tl
from threadline import seam
from threadline.testing import Capture

tl.configure("t", exporter="none")
capture = Capture()
seam.add_tap(capture)
tl.instrument()  # before the apps exist: every app created from now on is traced

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
import flask

api = FastAPI()
api.get("/api")(lambda: {"ok": True})
site = Starlette(routes=[Route("/site", lambda request: PlainTextResponse("ok"))])
web = flask.Flask("web")
web.route("/web")(lambda: "ok")

async def call():
    for app, path in ((api, "/api"), (site, "/site")):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get(path)).status_code == 200
asyncio.run(call())
assert web.test_client().get("/web").status_code == 200
servers = sorted(s.name for s in capture.spans if s.kind == "SERVER")
doubles = [s.name for s in capture.spans if s.kind == "INTERNAL" and s.name in servers]
assert servers == ["GET /api", "GET /site", "GET /web"], servers
assert not doubles, doubles
"""


def test_global_instrumentation_traces_each_framework_app_once():
    # In a child interpreter: the framework patches must not outlive the test.
    subprocess.run([sys.executable, "-c", GLOBAL], check=True, timeout=120)


GLOBAL_THEN_LINK = """
import asyncio, json, httpx, threadline as tl
from threadline import seam
from threadline.testing import Capture

tl.configure("t", exporter="none")
capture = Capture()
seam.add_tap(capture)
tl.instrument(clients=False)  # every framework app created from now on is traced

from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
import flask

OUTSIDE = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
hooked = []

def hook(span, scope_or_environ, *rest):
    hooked.append(scope_or_environ.get("path") or scope_or_environ.get("PATH_INFO"))

api = FastAPI()

@api.get("/api")
def api_view(request: Request):
    return request.headers.get("traceparent") or "none"

site = Starlette(routes=[Route("/site", lambda r: PlainTextResponse(r.headers.get("traceparent") or "none"))])
web = flask.Flask("web")
web.route("/web")(lambda: flask.request.headers.get("traceparent") or "none")
for app in (api, site, web):
    assert tl.instrument(app, trust="link", request_hook=hook) is app

seen = []
async def call():
    for app, path in ((api, "/api"), (site, "/site")):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            seen.append((await c.get(path, headers={"traceparent": OUTSIDE})).text.strip('"'))
asyncio.run(call())
seen.append(web.test_client().get("/web", headers={"traceparent": OUTSIDE}).text)
servers = sorted((s for s in capture.spans if s.kind == "SERVER"), key=lambda s: s.name)
print(json.dumps({
    "seen": seen,
    "hooked": hooked,
    "servers": [[s.name, s.parent_id, [list(lk) for lk in s.links]] for s in servers],
    "doubles": [s.name for s in capture.spans if s.kind == "INTERNAL" and s.name.startswith("GET")],
}))
"""


def test_trust_link_on_apps_created_after_a_global_instrument():
    # The global instrumentation has instrumented each app already; instrument(app, trust="link")
    # must still install its hook: link the caller's span, run the user's hook.
    out = subprocess.run(
        [sys.executable, "-c", GLOBAL_THEN_LINK], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["seen"] == ["none", "none", "none"]  # the caller's traceparent is taken away
    assert got["hooked"] == ["/api", "/site", "/web"]
    link = ["ab" * 16, "cd" * 8, {"threadline.trust": "link"}]
    assert got["servers"] == [
        ["GET /api", None, [link]],
        ["GET /site", None, [link]],
        ["GET /web", None, [link]],
    ]
    assert got["doubles"] == []
