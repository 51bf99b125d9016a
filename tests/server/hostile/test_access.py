"""Access control of `threadline serve`: bearer tokens on OTLP/HTTP, OTLP/gRPC and the API, the
web UI's login cookie, read-only and export-only tokens, the Host check against DNS rebinding
while bound to loopback, and nosniff on every answer."""

import logging

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from threadline import server
from threadline.server.client import Client, ClientError
from threadline.server.tokens import TokenError, token_value
from threadline.server.web.access import Access

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PB = {"content-type": "application/x-protobuf"}
TOKEN, READ, WRITE = "s3cret-full", "s3cret-read", "s3cret-write"


def export_body(trace: bytes = b"\x07" * 16) -> bytes:
    req = ExportTraceServiceRequest()
    s = req.resource_spans.add().scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = trace, b"\x01" * 8, "op"
    s.start_time_unix_nano, s.end_time_unix_nano = 1_000, 2_000
    return req.SerializeToString()


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def guarded():
    with server.start(token=TOKEN, read_token=READ, write_token=WRITE) as s:
        yield s


def test_otlp_http_needs_a_token_that_may_export(guarded):
    url = guarded.urls.otlp_http + "/v1/traces"
    resp = httpx.post(url, content=export_body(), headers=PB)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="threadline"'
    assert resp.json() == {
        "error": "a token to export is required: send Authorization: Bearer TOKEN"
    }
    assert (
        httpx.post(url, content=export_body(), headers={**PB, **bearer("nope")}).status_code == 401
    )
    assert httpx.post(url, content=export_body(), headers={**PB, **bearer(READ)}).status_code == 401
    for token in (TOKEN, WRITE):
        resp = httpx.post(url, content=export_body(), headers={**PB, **bearer(token)})
        assert resp.status_code == 200
    # the query port's own receiver too
    url = guarded.urls.api + "/v1/traces"
    assert httpx.post(url, content=export_body(), headers=PB).status_code == 401
    assert (
        httpx.post(url, content=export_body(), headers={**PB, **bearer(WRITE)}).status_code == 200
    )


def test_otlp_grpc_needs_the_token_in_metadata(guarded):
    with grpc.insecure_channel(guarded.urls.otlp_grpc) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as err:
            export(export_body(), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == (
            "a token to export is required: send authorization: Bearer TOKEN metadata"
        )
        with pytest.raises(grpc.RpcError) as err:
            export(export_body(), timeout=30, metadata=(("authorization", f"Bearer {READ}"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        trace = b"\x08" * 16
        reply = export(
            export_body(trace), timeout=30, metadata=(("authorization", f"Bearer {WRITE}"),)
        )
    assert reply == b""
    assert [s.name for s in guarded.store.get_trace(trace.hex())] == ["op"]


def test_the_api_needs_a_token_that_may_read(guarded):
    url = guarded.urls.api + "/api/services"
    resp = httpx.get(url)
    assert resp.status_code == 401
    assert resp.json() == {"error": "a token to read is required: send Authorization: Bearer TOKEN"}
    assert httpx.get(url, headers=bearer(WRITE)).status_code == 401
    for token in (TOKEN, READ):
        assert httpx.get(url, headers=bearer(token)).status_code == 200
    assert Client(guarded.urls.api, token=READ).get("/api/services")["data"] == ["unknown_service"]
    with pytest.raises(ClientError) as err:
        Client(guarded.urls.api, token="wrong").get("/api/services")
    assert err.value.status == 401


def test_the_client_reads_the_token_from_the_environment(guarded, monkeypatch, tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv("THREADLINE_TOKEN", str(path))
    assert Client(guarded.urls.api).token == TOKEN
    assert Client(guarded.urls.api).get("/api/v3/services") == {"services": ["unknown_service"]}


def test_the_ui_asks_once_and_keeps_the_token_in_a_strict_http_only_cookie(guarded):
    with httpx.Client(base_url=guarded.urls.api, timeout=30) as ui:
        page = {"accept": "text/html"}
        resp = ui.get("/search", headers=page)
        assert (resp.status_code, resp.headers["location"]) == (303, "/login?next=/search")
        form = ui.get("/login?next=/search")
        assert form.status_code == 200
        assert 'name="token"' in form.text and 'value="/search"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert ui.get("/app.css").status_code == 200  # the form's own style
        wrong = ui.post("/login", data={"token": WRITE, "next": "/search"})
        assert wrong.status_code == 401 and "does not open it" in wrong.text
        ok = ui.post("/login", data={"token": READ, "next": "//elsewhere.example/"})
        assert ok.status_code == 303
        assert ok.headers["location"] == "/"  # only paths of this server
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith("threadline_token=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert READ not in cookie  # an HMAC of the token, not the token
        assert ui.get("/api/services").status_code == 200  # the cookie now goes along
        assert ui.get("/", headers=page).status_code == 200
        # the cookie reads; it never exports
        assert ui.post("/v1/traces", content=export_body(), headers=PB).status_code == 401


def test_token_values_and_files(tmp_path):
    path = tmp_path / "t"
    path.write_text("from-a-file\nsecond line\n")
    assert token_value(str(path), "--token") == "from-a-file"
    assert token_value("plain", "--token") == "plain"
    assert token_value("", "--token") is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match=r"--token: .*empty is empty"):
        token_value(str(tmp_path / "empty"), "--token")


def test_no_token_no_question_and_nosniff_on_json(srv):
    resp = httpx.get(srv.urls.api + "/api/services")
    assert resp.status_code == 200
    assert resp.headers["x-content-type-options"] == "nosniff"
    resp = httpx.post(srv.urls.otlp_http + "/v1/traces", content=b"\xff", headers=PB)
    assert resp.status_code == 400
    assert resp.headers["x-content-type-options"] == "nosniff"
    page = httpx.get(srv.urls.api + "/")  # the UI sets its own: said once
    assert page.headers.get_list("x-content-type-options") == ["nosniff"]


@pytest.fixture(scope="module")
def named():
    with server.start(allowed_hosts=["box.lan"]) as s:
        yield s


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 403),
        ("evil.example:16686", 403),
        ("127.0.0.1.nip.io", 403),
        ("localhost", 200),
        ("LOCALHOST:1234", 200),
        ("app.localhost", 200),
        ("127.0.0.1:80", 200),
        ("127.5.6.7", 200),
        ("[::1]:16686", 200),
        ("box.lan:8080", 200),
    ],
)
def test_loopback_server_refuses_foreign_host_headers(named, host, status):
    resp = httpx.get(named.urls.api + "/api/services", headers={"host": host})
    assert resp.status_code == status, resp.text
    resp = httpx.post(
        named.urls.otlp_http + "/v1/traces", content=export_body(), headers={**PB, "host": host}
    )
    assert resp.status_code == status, resp.text
    if status == 403:
        assert resp.json()["error"] == (
            f"Host {host!r} is not this server's: it listens on loopback "
            "(add the name with --allowed-host)"
        )


def test_the_host_check_is_off_beyond_loopback_and_a_warning_names_the_flag(caplog):
    access = Access(loopback=False)
    assert access.host_allowed("traces.example.com")
    with caplog.at_level(logging.WARNING, logger="threadline.server"):
        s = server.Server(
            host="0.0.0.0", port=0, otlp_http_port=0, otlp_grpc_port=None, db=":memory:"
        )
        s.stop()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("listening on 0.0.0.0 without a token")
    assert "--token" in warning and "THREADLINE_TOKEN" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="threadline.server"):
        s = server.Server(
            host="0.0.0.0", port=0, otlp_http_port=0, otlp_grpc_port=None, db=":memory:",
            token=TOKEN,
        )  # fmt: skip
        s.stop()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_serve_takes_the_token_from_a_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    with server.spawn(str(tmp_path / "t.duckdb"), "--token", str(path)) as s:
        assert httpx.get(s.urls.api + "/api/services").status_code == 401
        assert httpx.get(s.urls.api + "/api/services", headers=bearer(TOKEN)).status_code == 200


def test_standard_exporters_send_the_token_from_otel_exporter_otlp_headers(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{WRITE}")
    with server.start(write_token=WRITE) as s:
        exporters = {
            "over-http": Http(endpoint=s.urls.otlp_http + "/v1/traces"),
            "over-grpc": Grpc(endpoint=s.urls.otlp_grpc, insecure=True),
        }
        for name, exporter in exporters.items():
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            with provider.get_tracer("t").start_as_current_span(name) as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
            provider.shutdown()
            assert [x.name for x in s.store.get_trace(trace_id)] == [name]
