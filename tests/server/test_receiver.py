"""OTLP/HTTP receiver: every kind of bad input gets the right status and a precise message, and
the server keeps serving."""

import gzip
import json
import threading

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from otlp_sample import TRACE, check, every_value_request

from threadline import server
from threadline.server.client import Client

PB = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


def pb_request(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="op", n=1, value_size=0) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "receiver-test"
    ss = rs.scope_spans.add()
    for i in range(n):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = trace_id, span_id[:-1] + bytes([i % 256]), name
        s.start_time_unix_nano, s.end_time_unix_nano = 1_000 + i, 2_000 + i
        if value_size:
            a = s.attributes.add()
            a.key, a.value.string_value = "big", "x" * value_size
    return req.SerializeToString()


def pb_error(resp) -> str:
    status = Status()
    status.ParseFromString(resp.content)
    return status.message


@pytest.fixture(scope="module")
def http(srv):
    with httpx.Client(base_url=srv.urls.otlp_http, timeout=30) as c:
        yield c


def still_serving(http):
    resp = http.post("/v1/traces", content=pb_request(trace_id=b"\x0a" * 16), headers=PB)
    assert (
        resp.status_code == 200
        and ExportTraceServiceResponse.FromString(resp.content).partial_success.rejected_spans == 0
    )


def test_hand_written_json_round_trips(srv, http):
    resp = http.post("/v1/traces", content=json.dumps(every_value_request()), headers=JSON)
    assert resp.status_code == 200 and resp.json() == {}
    [span] = Client(srv.urls.api).trace(TRACE)
    check(span)


def test_gzip_is_accepted(srv, http):
    body = gzip.compress(pb_request(trace_id=b"\x0b" * 16, n=3))
    resp = http.post("/v1/traces", content=body, headers={**PB, "content-encoding": "gzip"})
    assert resp.status_code == 200
    assert len(Client(srv.urls.api).trace("0b" * 16)) == 3


@pytest.mark.parametrize(
    "body, headers, status, message",
    [
        (pb_request()[:-5], PB, 400, "invalid OTLP protobuf"),
        (
            pb_request(trace_id=b"\x01" * 15),
            PB,
            400,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: 15 bytes, expected 16",
        ),
        (b"", PB, 400, "empty request body: expected an OTLP ExportTraceServiceRequest"),
        (b"\x1f\x8b not gzip", {**PB, "content-encoding": "gzip"}, 400, "invalid gzip body"),
        (pb_request(), {**PB, "content-encoding": "br"}, 415, "unsupported content encoding 'br'"),
        (pb_request(value_size=20 * 1024 * 1024), PB, 413, "exceeds the 16777216-byte limit"),
        (
            gzip.compress(b"\x00" * (17 * 1024 * 1024)),
            {**PB, "content-encoding": "gzip"},
            413,
            "decompressed body exceeds",
        ),
    ],
    ids=[
        "truncated",
        "15-byte-trace-id",
        "empty",
        "bad-gzip",
        "brotli",
        "20MB-attribute",
        "gzip-bomb",
    ],
)
def test_bad_protobuf(http, body, headers, status, message):
    resp = http.post("/v1/traces", content=body, headers=headers)
    assert resp.status_code == status
    assert message in pb_error(resp)
    still_serving(http)


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"resourceSpans": {}}', "resourceSpans: expected an array, got object"),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}',
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected a string, got number",
        ),
        ('{"resourceSpans": [', "invalid JSON"),
        ("", "empty request body"),
    ],
)
def test_bad_json(http, body, message):
    resp = http.post("/v1/traces", content=body, headers=JSON)
    assert resp.status_code == 400
    assert message in resp.json()["message"] and resp.json()["code"] == 3
    still_serving(http)


def test_wrong_content_type(http):
    resp = http.post("/v1/traces", content=b"hello", headers={"content-type": "text/plain"})
    assert resp.status_code == 415
    assert "unsupported content type 'text/plain'" in resp.json()["message"]
    still_serving(http)


def test_partial_success_names_the_reason(srv, http):
    req = ExportTraceServiceRequest.FromString(pb_request(trace_id=b"\x0c" * 16))
    bad = req.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id, bad.span_id = b"\x0c" * 16, b"\x00" * 8
    resp = http.post("/v1/traces", content=req.SerializeToString(), headers=PB)
    assert resp.status_code == 200
    partial = ExportTraceServiceResponse.FromString(resp.content).partial_success
    assert partial.rejected_spans == 1
    assert (
        partial.error_message
        == "rejected 1 span(s): resourceSpans[0].scopeSpans[0].spans[1]: all-zero span id is invalid"
    )
    assert [s.span_id for s in Client(srv.urls.api).trace("0c" * 16)] == ["0202020202020200"]

    doc = every_value_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "0" * 32
    resp = http.post("/v1/traces", content=json.dumps(doc), headers=JSON)
    assert resp.status_code == 200
    assert resp.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "rejected 1 span(s): resourceSpans[0].scopeSpans[0].spans[0]: all-zero trace id is invalid",
        }
    }


def test_cors_allowlist(http):
    def preflight(origin):
        return http.options(
            "/v1/traces",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )

    ok = preflight("http://localhost:5173")
    assert (
        ok.status_code == 200
        and ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    )
    denied = preflight("https://evil.example")
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers


def test_full_queue_answers_503_with_retry_after():
    """While the store is busy committing, a queue at its bound turns exporters away politely."""
    first: list = []
    with (
        server.start(max_queued_spans=10) as busy_srv,
        httpx.Client(base_url=busy_srv.urls.otlp_http, timeout=30) as client,
    ):
        busy_srv.store._write_lock.acquire()  # the writer thread blocks inside its commit
        try:
            t = threading.Thread(
                target=lambda: first.append(
                    client.post("/v1/traces", content=pb_request(n=8), headers=PB)
                )
            )
            t.start()
            for _ in range(6000):  # until the first export is queued and being written
                if busy_srv.ingest._queued >= 8 or not t.is_alive():
                    break
                threading.Event().wait(0.005)
            assert busy_srv.ingest._queued == 8, first
            busy = client.post("/v1/traces", content=pb_request(n=5), headers=PB)
        finally:
            busy_srv.store._write_lock.release()
        t.join(30)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert "ingest queue full (8 spans waiting to be stored)" in pb_error(busy)
        assert first[0].status_code == 200
        assert client.post("/v1/traces", content=pb_request(n=5), headers=PB).status_code == 200
        assert busy_srv.store.stats()["spans"] == 13


def test_grpc_rejects_bad_ids_precisely(srv):
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    with grpc.insecure_channel(srv.urls.otlp_grpc) as channel:
        stub = TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(
                ExportTraceServiceRequest.FromString(pb_request(trace_id=b"\x01" * 15)), timeout=30
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            err.value.details()
            == "resourceSpans[0].scopeSpans[0].spans[0].traceId: 15 bytes, expected 16"
        )
        ok = stub.Export(
            ExportTraceServiceRequest.FromString(pb_request(trace_id=b"\x0d" * 16)), timeout=30
        )
        assert ok.partial_success.rejected_spans == 0
    assert len(Client(srv.urls.api).trace("0d" * 16)) == 1


def test_retention_deletes_old_spans():
    import time

    from threadline.server.model import Span

    now = time.time_ns()
    old = Span("e1" * 16, "01" * 8, "", "old", 1, now - 7200 * 10**9, now - 7199 * 10**9, "svc")
    new = Span("e2" * 16, "02" * 8, "", "new", 1, now - 60 * 10**9, now - 59 * 10**9, "svc")
    with server.start(retention_ns=3600 * 10**9) as s:
        s.ingest.submit([old, new]).result(30)
        s.ingest.submit([Span("e3" * 16, "03" * 8, "", "later", 1, now, now, "svc")]).result(30)
        # the writer ran retention after the first commit, before taking the second export
        assert s.store.get_trace("e1" * 16) == []
        assert [x.name for x in s.store.get_trace("e2" * 16)] == ["new"]


def test_unknown_enum_values_are_kept(srv, http):
    """OTLP enums are open: a kind or status code from a newer SDK is stored as sent."""
    doc = every_value_request()
    s = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s.update(traceId="F0" * 16, kind=99, status={"code": 7})
    assert http.post("/v1/traces", content=json.dumps(doc), headers=JSON).status_code == 200
    [span] = Client(srv.urls.api).trace("f0" * 16)
    assert (span.kind, span.status_code) == (99, 7)
    jaeger = httpx.get(f"{srv.urls.api}/api/traces/{'f0' * 16}").json()["data"][0]["spans"][0]
    assert {"key": "span.kind", "type": "string", "value": "99"} in jaeger["tags"]
