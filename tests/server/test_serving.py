"""Real OpenTelemetry SDK exporters (OTLP/HTTP and OTLP/gRPC) against a running server; the
trace comes back intact through api_v3 (the Python client) and Jaeger v1."""

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from threadline import server
from threadline.server.client import Client
from threadline.server.serving import PortInUse
from threadline.testing import hex_ids

ATTRS = {
    "s": "text",
    "b": True,
    "i": -7,
    "d": 2.5,
    "ss": ["a", "b"],
    "bs": [True, False],
    "is": [1, 2],
    "ds": [0.5],
}


def export_trace(exporter, service: str) -> tuple[str, dict[str, str]]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout-lib", "1.2.3")
    with tracer.start_as_current_span("linked-from") as other:
        pass
    with tracer.start_as_current_span(
        "GET /checkout", kind=SpanKind.SERVER, attributes=ATTRS
    ) as root:
        root.add_event("cart loaded", {"items": 3})
        with tracer.start_as_current_span(
            "charge", kind=SpanKind.CLIENT, links=[Link(other.get_span_context(), {"why": "batch"})]
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    trace_id, root_id = hex_ids(root)
    return trace_id, {
        "root": root_id,
        "child": hex_ids(child)[1],
        "other": hex_ids(other)[1],
        "other_trace": hex_ids(other)[0],
    }


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_real_exporter_trace_comes_back_intact(srv, transport):
    if transport == "http":
        exporter = HttpExporter(endpoint=f"{srv.urls.otlp_http}/v1/traces")
    else:
        exporter = GrpcExporter(endpoint=srv.urls.otlp_grpc, insecure=True)
    service = f"shop-{transport}"
    trace_id, ids = export_trace(exporter, service)

    # the exporter got its 200 only after commit, so the trace is there without waiting
    spans = Client(srv.urls.api).trace(trace_id)
    assert [s.name for s in spans] == ["GET /checkout", "charge"]
    root, child = spans
    assert (root.span_id, root.parent_span_id, root.kind, root.service) == (
        ids["root"],
        "",
        2,
        service,
    )
    assert (child.parent_span_id, child.kind, child.status_code, child.status_message) == (
        ids["root"],
        3,
        2,
        "card declined",
    )
    assert root.attributes == ATTRS
    assert type(root.attributes["d"]) is float and type(root.attributes["i"]) is int
    assert (
        root.resource["service.name"] == service
        and root.resource["deployment.environment"] == "test"
    )
    assert root.resource["telemetry.sdk.language"] == "python"
    assert (root.scope_name, root.scope_version) == ("checkout-lib", "1.2.3")
    assert [(e.name, e.attributes) for e in root.events] == [("cart loaded", {"items": 3})]
    [link] = child.links
    assert (link.trace_id, link.span_id, link.attributes) == (
        ids["other_trace"],
        ids["other"],
        {"why": "batch"},
    )
    assert root.flags == 0x100  # the SDK sets "is_remote known", parent not remote

    # the same trace through Jaeger v1
    body = httpx.get(f"{srv.urls.api}/api/traces/{trace_id.upper()}").json()
    [jt] = body["data"]
    assert jt["traceID"] == trace_id and body["errors"] is None
    by_name = {s["operationName"]: s for s in jt["spans"]}
    jchild = by_name["charge"]
    assert jchild["references"] == [
        {"refType": "CHILD_OF", "traceID": trace_id, "spanID": ids["root"]},
        {"refType": "FOLLOWS_FROM", "traceID": ids["other_trace"], "spanID": ids["other"]},
    ]
    tags = {t["key"]: (t["type"], t["value"]) for t in jchild["tags"]}
    assert tags["error"] == ("bool", True) and tags["span.kind"] == ("string", "client")
    assert tags["otel.status_description"] == ("string", "card declined")
    rtags = {t["key"]: (t["type"], t["value"]) for t in by_name["GET /checkout"]["tags"]}
    assert (
        rtags["i"] == ("int64", -7)
        and rtags["d"] == ("float64", 2.5)
        and rtags["b"] == ("bool", True)
    )
    assert rtags["ss"] == ("string", '["a", "b"]')
    assert by_name["GET /checkout"]["logs"][0]["fields"] == [
        {"key": "event", "type": "string", "value": "cart loaded"},
        {"key": "items", "type": "int64", "value": 3},
    ]
    process = jt["processes"][jchild["processID"]]
    assert process["serviceName"] == service
    assert {"key": "deployment.environment", "type": "string", "value": "test"} in process["tags"]
    assert (
        jchild["startTime"] == child.start_ns // 1000
        and jchild["duration"] == (child.end_ns - child.start_ns) // 1000
    )

    assert service in Client(srv.urls.api).services()
    summaries = Client(srv.urls.api).search(service=service, filters=["s=text", "i<0"])
    assert [
        (t["trace_id"], t["root_name"], t["span_count"], t["error_count"]) for t in summaries
    ] == [(trace_id, "GET /checkout", 2, 1)]


def test_traces_fixture_reads_a_trace_from_the_server(srv, traces):
    trace_id, ids = export_trace(
        HttpExporter(endpoint=f"{srv.urls.otlp_http}/v1/traces"), "fixture"
    )
    traces.add(Client(srv.urls.api).captured(trace_id, min_spans=2))
    trace = traces.trace(trace_id)
    trace.assert_connected()
    assert trace.root.name == "GET /checkout" and trace.root.kind == "SERVER"
    charge = trace.find("charge")
    assert (charge.parent_id, charge.kind, charge.status, charge.service) == (
        ids["root"],
        "CLIENT",
        "ERROR",
        "fixture",
    )
    assert charge.links == [(ids["other_trace"], ids["other"], {"why": "batch"})]


def test_port_in_use_is_a_clear_error(srv):
    port = int(srv.urls.api.rsplit(":", 1)[1])
    with pytest.raises(PortInUse, match=rf"cannot listen on 127.0.0.1:{port} \(--port\)"):
        server.Server(port=port, otlp_http_port=0, otlp_grpc_port=0, db=":memory:")
    grpc_port = int(srv.urls.otlp_grpc.rsplit(":", 1)[1])
    with pytest.raises(PortInUse, match=rf"127.0.0.1:{grpc_port} \(--otlp-grpc-port\)"):
        server.Server(port=0, otlp_http_port=0, otlp_grpc_port=grpc_port, db=":memory:")


def test_cli_reports_taken_port(srv):
    port = int(srv.urls.otlp_http.rsplit(":", 1)[1])
    proc = subprocess.run(
        server.serve_argv(":memory:", "--otlp-http-port", str(port)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"threadline serve: cannot listen on 127.0.0.1:{port} (--otlp-http-port)" in proc.stderr


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_kill_9_after_200_loses_nothing(tmp_path, transport):
    """Every span acknowledged as exported is in the file after SIGKILL, nothing flushed on exit."""
    db = str(tmp_path / "traces.duckdb")
    spawned = server.spawn(db)
    acked, results = [], []
    Exporter = HttpExporter if transport == "http" else GrpcExporter

    class Recording(Exporter):
        def export(self, spans):
            results.append(super().export(spans))
            return results[-1]

    def exporter():
        if transport == "http":
            return Recording(endpoint=f"{spawned.urls.otlp_http}/v1/traces")
        return Recording(endpoint=spawned.urls.otlp_grpc, insecure=True)

    try:
        for i in range(5):
            trace_id, _ = export_trace(exporter(), f"durable-{transport}-{i}")
            acked.append(trace_id)
    finally:
        spawned.kill()  # at once after the last acknowledgement
    assert results == [SpanExportResult.SUCCESS] * 15
    assert spawned.proc.returncode == -signal.SIGKILL
    assert os.path.exists(db)
    with server.spawn(db) as again:
        client = Client(again.urls.api)
        for trace_id in acked:
            assert [s.name for s in client.trace(trace_id)] == ["GET /checkout", "charge"]
        assert client.get("/api/threadline/stats")["spans"] == 15  # 3 spans x 5 exports
        if transport == "grpc":
            return

        # a second server on the same file is refused clearly, the first one keeps serving
        proc = subprocess.run(
            server.serve_argv(db),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1
        assert (
            f"threadline serve: cannot open {db}: IO Error: Could not set lock on file"
            in proc.stderr
        )
        assert client.services()


def test_cors_origin_allowlist():
    """`--cors-origin` replaces the loopback default: listed origins may export from a browser
    (preflight and POST, on both ports), others get no CORS headers."""
    allowed, other = "https://app.example", "https://other.example"
    with (
        server.spawn(
            ":memory:", "--cors-origin", allowed, "--cors-origin", "http://b.example"
        ) as s,
        httpx.Client(timeout=30) as http,
    ):
        for base in (s.urls.otlp_http, s.urls.api):
            url = f"{base}/v1/traces"

            def preflight(origin, url=url):
                return http.options(
                    url,
                    headers={
                        "origin": origin,
                        "access-control-request-method": "POST",
                        "access-control-request-headers": "content-type,content-encoding",
                    },
                )

            ok = preflight(allowed)
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == allowed
            assert "POST" in ok.headers["access-control-allow-methods"]
            assert "content-encoding" in ok.headers["access-control-allow-headers"]
            for refused in (other, "http://localhost:5173"):  # loopback is no longer implied
                denied = preflight(refused)
                assert denied.status_code == 400
                assert "access-control-allow-origin" not in denied.headers
            post = http.post(
                url, content=b"{}", headers={"origin": allowed, "content-type": "application/json"}
            )
            assert (
                post.status_code == 200 and post.headers["access-control-allow-origin"] == allowed
            )
            post = http.post(
                url, content=b"{}", headers={"origin": other, "content-type": "application/json"}
            )
            assert post.status_code == 200 and "access-control-allow-origin" not in post.headers


def test_binds_loopback_by_default(srv):
    host = srv.urls.api.split("//")[1].rsplit(":", 1)[0]
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(srv.urls.api.rsplit(":", 1)[1])), timeout=5):
        pass


def test_retention_option_parses_durations():
    import argparse

    from threadline.server import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert parser.parse_args(["--retention", "7d"]).retention == 7 * 86400 * 10**9
    assert parser.parse_args(["--retention", "1h30m"]).retention == 5400 * 10**9
    assert parser.parse_args([]).retention is None and parser.parse_args([]).host == "127.0.0.1"
    with pytest.raises(SystemExit):
        parser.parse_args(["--retention", "soon"])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--port",
            "notanumber",
            "'notanumber' is not a port number (0-65535, 0 for any free port)",
        ),
        (
            "--otlp-http-port",
            "70000",
            "'70000' is not a port number (0-65535, 0 for any free port)",
        ),
        ("--otlp-grpc-port", "-1", "'-1' is not a port number (0-65535, 0 for any free port)"),
        ("--max-request-bytes", "0", "'0' is not a positive number of bytes"),
    ],
)
def test_cli_refuses_bad_numbers_before_starting(capsys, option, value, message):
    from threadline import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", option, value])
    assert exited.value.code == 2
    assert f"threadline serve: error: argument {option}: {message}" in capsys.readouterr().err


def test_cli_help_says_what_serve_does(capsys):
    from threadline import cli

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Receive OTLP traces (HTTP on :4318, gRPC on :4317)" in out
    assert "--otlp-http-port PORT" in out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "`serve` receives and stores traces" in " ".join(capsys.readouterr().out.split())


def test_cli_reports_a_taken_grpc_port_in_one_line(srv):
    port = int(srv.urls.otlp_grpc.rsplit(":", 1)[1])
    args = ["serve", "--db", ":memory:", "--port", "0", "--otlp-http-port", "0"]
    proc = subprocess.run(
        [sys.executable, "-m", "threadline.cli", *args, "--otlp-grpc-port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"threadline serve: cannot listen on 127.0.0.1:{port} (--otlp-grpc-port): "
        "Address already in use\n"
    )
