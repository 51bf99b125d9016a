"""A ClickHouse that hangs, over a real socket (clickhouse:// needs a server; here one is served
from the embedded engine): `serve` against a server that never answers stops at start with one
line naming the host once THREADLINE_CLICKHOUSE_TIMEOUT has passed; a server that stops
answering after the start has exports answered 503 + Retry-After (gRPC UNAVAILABLE), and ingest
goes on once it answers again."""

import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from threadline.server.model import Span

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")

T1, T2 = "ab" * 16, "0f" * 16
NOW = time.time_ns()


class Silent:
    """A TCP listener that takes connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self._sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self._sock.close()
        for c in self._held:
            c.close()


class ServedFromChdb:
    """Enough of ClickHouse's HTTP interface for clickhouse-connect, answered by the embedded
    engine: the query in the body (or `query` with data in the body), `param_*` values, the
    query's own FORMAT; an INSERT ... FROM input(...) reads its data through format(). While
    `hang` is set, requests are read and never answered."""

    def __init__(self, path: str) -> None:
        from chdb import session

        self._session = session.Session(path)
        self._lock = threading.Lock()
        self.hang = threading.Event()
        self._release = threading.Event()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                query = dict(parse_qsl(urlsplit(self.path).query))
                if served.hang.is_set():
                    served._release.wait()
                    return
                status, out = served.answer(query, body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def answer(self, query: dict[str, str], body: str) -> tuple[int, bytes]:
        params = {k[6:]: v for k, v in query.items() if k.startswith("param_")}
        sql = query.get("query", body)
        if "query" in query and body:  # an insert: its rows in the body
            sql = re.sub(
                r"input\((.*)\) FORMAT JSONCompactEachRow$",
                r"format(JSONCompactEachRow, \1, {rows:String})",
                sql,
                flags=re.S,
            )
            rows = body.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
            params["rows"] = rows.replace("\r", "\\r")
        try:
            with self._lock:
                return 200, self._session.query(sql, "TabSeparated", params=params or None).bytes()
        except Exception as exc:  # the engine's error is the answer
            return 500, str(exc).encode()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._session.close()


def test_serve_against_a_server_that_never_answers_stops_in_one_line():
    silent = Silent()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "threadline.cli", "serve", "--port", "0", "--otlp-http-port",
             "0", "--otlp-grpc-port", "0", "--store",
             f"clickhouse://ann:s3cret@127.0.0.1:{silent.port}/otel"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "THREADLINE_CLICKHOUSE_TIMEOUT": "1"},
        )  # fmt: skip
    finally:
        silent.close()
    assert out.returncode == 1
    assert out.stderr == (
        f"threadline serve: cannot reach ClickHouse at 127.0.0.1:{silent.port}: "
        "no answer within 1 s (THREADLINE_CLICKHOUSE_TIMEOUT)\n"
    )
    assert "s3cret" not in out.stdout


def test_a_bad_timeout_names_the_variable(monkeypatch):
    from threadline.server.storage import StoreURLError, open_store

    monkeypatch.setenv("THREADLINE_CLICKHOUSE_TIMEOUT", "soon")
    with pytest.raises(StoreURLError, match="^THREADLINE_CLICKHOUSE_TIMEOUT: 'soon' is not a "):
        open_store("clickhouse://127.0.0.1:9/otel")


def grpc_request(trace_id: str):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    resource_spans = req.resource_spans.add()
    service = resource_spans.resource.attributes.add()
    service.key, service.value.string_value = "service.name", "api"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id = bytes.fromhex(trace_id), bytes.fromhex("01" * 8)
    span.name, span.kind = "GET /", 2
    span.start_time_unix_nano, span.end_time_unix_nano = NOW, NOW + 5
    return req


def test_exports_while_the_server_hangs_are_retry_later_and_ingest_goes_on(tmp_path, monkeypatch):
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    from threadline.server.otlp.json_format import encode_json
    from threadline.server.serving import spawn
    from threadline.server.storage.clickhouse import create_statements

    monkeypatch.setenv("THREADLINE_CLICKHOUSE_TIMEOUT", "1")
    ch = ServedFromChdb(str(tmp_path / "ch"))
    srv = None

    def export(trace_id: str) -> httpx.Response:
        body = encode_json([Span(trace_id, "01" * 8, "", "GET /", 2, NOW, NOW + 5, "api")])
        return httpx.post(srv.urls.otlp_http + "/v1/traces", json=body, timeout=60)

    try:
        # the tables made beforehand (as by the collector): the start only reads, well within
        # the 1 s on a busy machine
        for sql in create_statements("otel", "otel_traces"):
            assert ch.answer({}, sql)[0] == 200
        srv = spawn(
            str(tmp_path / "unused.duckdb"), "--store", f"clickhouse://127.0.0.1:{ch.port}/otel"
        )
        assert export(T1).status_code == 200
        ch.hang.set()
        hung = export(T2)  # answered after our 1 s timeout: the message says so
        assert hung.status_code == 503
        assert hung.headers["Retry-After"] == "2"
        assert "no answer within 1 s" in hung.text
        with grpc.insecure_channel(srv.urls.otlp_grpc) as channel:
            with pytest.raises(grpc.RpcError) as err:
                TraceServiceStub(channel).Export(grpc_request(T2), timeout=60)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no answer within 1 s" in (err.value.details() or "")
        read = httpx.get(srv.urls.api + f"/api/traces/{T1}", timeout=60)
        assert read.status_code == 503  # a read the store cannot answer now: retry, not a 500
        assert read.headers["Retry-After"] == "2"
        assert "no answer within 1 s" in read.json()["error"]
        ch.hang.clear()
        assert export(T2).status_code == 200  # the same export, retried, is stored
        found = httpx.get(srv.urls.api + f"/api/traces/{T2}", timeout=30).json()
        assert [s["operationName"] for s in found["data"][0]["spans"]] == ["GET /"]
    finally:
        if srv is not None:
            srv.kill()
        ch.close()
