"""OTLP/HTTP receiver: every kind of bad input gets the right status and a precise message, and
the server keeps serving."""

import gzip
import json
import threading
from pathlib import Path

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


def test_exports_are_taken_while_retention_deletes():
    import threading
    import time

    from threadline.server.ingest.queue import Ingest
    from threadline.server.model import Span
    from threadline.server.storage.duckdb import DuckDBStore

    started, release = threading.Event(), threading.Event()

    class SlowRetention(DuckDBStore):
        def delete_before(self, cutoff_ns):
            started.set()
            release.wait(60)
            return super().delete_before(cutoff_ns)

    class Idle(Ingest):
        def _retention_wait(self):
            return 0.05  # an idle writer applies retention at once

    ingest = Idle(SlowRetention(), retention_ns=3600 * 10**9)
    now = time.time_ns()
    submitted = []
    try:
        assert started.wait(30)  # the idle writer is deleting now
        t = threading.Thread(
            target=lambda: submitted.append(
                ingest.submit([Span("e5" * 16, "05" * 8, "", "b", 1, now, now, "svc")])
            )
        )
        t.start()
        t.join(20)
        assert not t.is_alive(), "submit() waited for the retention delete"
        release.set()
        assert submitted[0].result(30) == 1
    finally:
        release.set()
        ingest.close()


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


# ------------------------------------------------------------------ failed commits, writer


@pytest.fixture
def picky(tmp_path):
    """A server whose real DuckDB spans table refuses spans named "poison" (a CHECK constraint),
    so one export's commit fails while others succeed."""
    import duckdb

    from threadline.server.storage.duckdb import TABLE

    db = str(tmp_path / "picky.duckdb")
    cols = ", ".join(f"{k} {v}" for k, v in TABLE.items())
    with duckdb.connect(db) as con:
        con.execute(f"CREATE TABLE spans ({cols}, CHECK (name <> 'poison'))")
    with server.start(db=db) as s:
        s.store.merge()
        s.store._segments = None  # writes go straight into the table, so it refuses at write time
        yield s


REFUSED = (
    'spans not stored: Constraint Error: CHECK constraint failed on table "spans" '
    "with expression CHECK((\"name\" != 'poison'))"
)


def test_a_failed_commit_fails_its_export_and_the_writer_carries_on(picky):
    with httpx.Client(base_url=picky.urls.otlp_http, timeout=30) as http:
        for headers in (PB, JSON):
            body = pb_request(trace_id=b"\x21" * 16, name="poison")
            if headers is JSON:
                doc = every_value_request()
                doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "poison"
                body = json.dumps(doc)
            bad = http.post("/v1/traces", content=body, headers=headers)
            assert bad.status_code == 500 and "retry-after" not in bad.headers
            message = pb_error(bad) if headers is PB else bad.json()["message"]
            assert message == REFUSED
            assert picky.ingest._thread.is_alive()
            good = http.post("/v1/traces", content=pb_request(trace_id=b"\x22" * 16), headers=PB)
            assert good.status_code == 200
    assert [s.name for s in Client(picky.urls.api).trace("22" * 16)] == ["op"]
    assert Client(picky.urls.api).trace("21" * 16) == []
    assert (picky.ingest.failed, picky.ingest.committed) == (2, 2)


def test_exports_sharing_a_failed_commit_are_stored_one_by_one(picky):
    from threadline.server.model import Span

    def export(tid: str, name: str):
        return picky.ingest.submit([Span(tid, "01" * 8, "", name, 1, 10, 20, "svc")])

    picky.store._write_lock.acquire()  # the exports queue up behind a blocked commit
    try:
        futures = [export("31" * 16, "a"), export("32" * 16, "poison"), export("33" * 16, "b")]
    finally:
        picky.store._write_lock.release()
    assert futures[0].result(30) >= 1 and futures[2].result(30) >= 1
    with pytest.raises(Exception, match="CHECK constraint failed"):
        futures[1].result(30)
    assert [s.name for s in picky.store.get_trace("33" * 16)] == ["b"]
    assert picky.store.get_trace("32" * 16) == [] and picky.ingest.failed == 1
    assert export("34" * 16, "c").result(30) == 1


def test_grpc_malformed_bytes_are_invalid_argument_and_large_exports_are_stored(srv):
    import sys

    import grpc

    sys.path.insert(0, str(Path(__file__).parents[3] / "benchmarks"))
    from serve_data import make_request

    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    with grpc.insecure_channel(srv.urls.otlp_grpc) as channel:
        export = channel.unary_unary(method)  # bytes as they are, no serializer
        with pytest.raises(grpc.RpcError) as err:
            export(pb_request(n=3)[:-4], timeout=30)  # truncated
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("invalid OTLP protobuf:")
        big = make_request(2000, seed=41)
        before = srv.store.stats()["spans"]
        reply = export(big.SerializeToString(), timeout=60)
    assert reply == b""  # an ExportTraceServiceResponse with nothing rejected
    assert srv.store.stats()["spans"] - before == 2000
    some = big.resource_spans[0].scope_spans[0].spans[0]
    assert some.span_id.hex() in {s.span_id for s in srv.store.get_trace(some.trace_id.hex())}


def test_grpc_export_the_store_refuses_is_internal(picky):
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    with grpc.insecure_channel(picky.urls.otlp_grpc) as channel:
        stub = TraceServiceStub(channel)
        req = ExportTraceServiceRequest.FromString(pb_request(trace_id=b"\x23" * 16, name="poison"))
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == REFUSED
        ok = stub.Export(ExportTraceServiceRequest.FromString(pb_request(b"\x24" * 16)), timeout=30)
        assert ok.partial_success.rejected_spans == 0
    assert len(picky.store.get_trace("24" * 16)) == 1


def test_an_export_not_committed_in_time_is_503(monkeypatch):
    """A commit that never returns does not hang the exporter: 503 + Retry-After."""
    from threadline.server.ingest import otlp_http

    monkeypatch.setattr(otlp_http, "COMMIT_TIMEOUT_S", 0.2)
    with (
        server.start() as slow,
        httpx.Client(base_url=slow.urls.otlp_http, timeout=30) as client,
    ):
        slow.store._write_lock.acquire()
        try:
            resp = client.post("/v1/traces", content=pb_request(trace_id=b"\x25" * 16), headers=PB)
        finally:
            slow.store._write_lock.release()
        assert resp.status_code == 503 and resp.headers["retry-after"] == "2"
        assert pb_error(resp) == "spans not stored within 0.2 s: the store is busy"
        slow.ingest.close()  # stored after all: OTLP delivery is at-least-once
        assert len(slow.store.get_trace("25" * 16)) == 1


def test_grpc_busy_carries_retry_info(srv):
    """UNAVAILABLE comes with google.rpc.RetryInfo, in the status details and under the key
    the Python exporter reads, so exporters wait as told."""
    import grpc
    from google.rpc.error_details_pb2 import RetryInfo
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    from threadline.server.model import Span

    with server.start(max_queued_spans=10) as busy_srv:
        busy_srv.store._write_lock.acquire()
        try:
            busy_srv.ingest.submit(
                [Span("26" * 16, f"{i + 1:016x}", "", "x", 1, 1, 2, "svc") for i in range(8)]
            )
            with grpc.insecure_channel(busy_srv.urls.otlp_grpc) as channel:
                req = ExportTraceServiceRequest.FromString(pb_request(b"\x27" * 16, n=5))
                with pytest.raises(grpc.RpcError) as err:
                    TraceServiceStub(channel).Export(req, timeout=30)
        finally:
            busy_srv.store._write_lock.release()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == "ingest queue full (8 spans waiting to be stored)"
    trailers = dict(err.value.trailing_metadata())
    status = Status.FromString(trailers["grpc-status-details-bin"])
    assert (status.code, status.message) == (14, err.value.details())
    [detail] = status.details
    info = RetryInfo()
    assert detail.Unpack(info) and info.retry_delay.seconds == 2
    assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == info


# ----------------------------------------------------------------------- hostile input


def test_ids_with_whitespace_are_refused(srv, http):
    doc = every_value_request()
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"] = "0123456789abcdef0123456789ab cd "
    resp = http.post("/v1/traces", content=json.dumps(doc), headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: "
        "'0123456789abcdef0123456789ab cd ' is not hexadecimal"
    )
    span["traceId"] = "28" * 16
    span["links"][0]["spanId"] = " 0123456789abcd "
    resp = http.post("/v1/traces", content=json.dumps(doc), headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId: "
        "' 0123456789abcd ' is not hexadecimal"
    )
    assert Client(srv.urls.api).trace("28" * 16) == []
    still_serving(http)


def test_gzip_members_are_all_read_within_the_limit(srv, http):
    # two members of one protobuf message: concatenated protobuf merges, so both spans arrive
    first, second = pb_request(trace_id=b"\x29" * 16), pb_request(trace_id=b"\x2a" * 16)
    body = gzip.compress(first) + gzip.compress(second)
    resp = http.post("/v1/traces", content=body, headers={**PB, "content-encoding": "gzip"})
    assert resp.status_code == 200
    assert len(Client(srv.urls.api).trace("29" * 16)) == 1
    assert len(Client(srv.urls.api).trace("2a" * 16)) == 1
    bomb = gzip.compress(first) + gzip.compress(b"\0" * (17 * 1024 * 1024))
    resp = http.post("/v1/traces", content=bomb, headers={**PB, "content-encoding": "gzip"})
    assert resp.status_code == 413
    assert pb_error(resp) == "decompressed body exceeds the 16777216-byte limit"
    still_serving(http)


def test_gunzip_never_holds_more_than_the_limit():
    import tracemalloc

    from threadline.server.ingest.otlp_http import _gunzip

    limit = 64 * 1024
    body = gzip.compress(b"a" * 100) + gzip.compress(b"\0" * (16 * 1024 * 1024))
    assert _gunzip(gzip.compress(b"a" * 100) + b"\0\0" + gzip.compress(b"b"), limit) == (
        b"a" * 100 + b"b"
    )
    tracemalloc.start()
    try:
        with pytest.raises(OverflowError):
            _gunzip(body, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit + len(body), peak  # not the 16 MiB the second member holds
    with pytest.raises(EOFError):
        _gunzip(gzip.compress(b"a") + gzip.compress(b"b")[:-4], limit)


def _nested_json(depth: int) -> str:
    """An export whose attribute "deep" is `depth` AnyValues deep (built as text: too deep for
    json.dumps)."""
    doc = every_value_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(
        traceId="2b" * 16, attributes=[{"key": "deep", "value": "DEEP"}]
    )
    deep = (
        '{"arrayValue": {"values": [' * (depth - 1)
        + '{"stringValue": "leaf"}'
        + "]}}" * (depth - 1)
    )
    return json.dumps(doc).replace('"DEEP"', deep)


def test_deep_nesting_is_a_400(srv, http):
    for body in ("[" * 100_000, _nested_json(3000)):
        resp = http.post("/v1/traces", content=body, headers=JSON)
        assert resp.status_code == 400
        assert resp.json()["message"] == "invalid JSON: nesting too deep"
    resp = http.post("/v1/traces", content=_nested_json(65), headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["message"].endswith("AnyValue nesting too deep (more than 64 levels)")
    assert http.post("/v1/traces", content=_nested_json(64), headers=JSON).status_code == 200
    [span] = Client(srv.urls.api).trace("2b" * 16)
    value, depth = span.attributes["deep"], 1
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert (value, depth) == ("leaf", 64)

    # protobuf: the parser itself stops at 100 nested messages (about 50 AnyValues)
    def ld(field: int, payload: bytes) -> bytes:
        n, out = len(payload), b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                break
        return bytes([field << 3 | 2]) + out + payload

    value = ld(1, b"leaf")  # AnyValue.string_value
    for _ in range(200):
        value = ld(5, ld(1, value))  # AnyValue.array_value{values: [value]}
    span = ld(1, b"\x2c" * 16) + ld(2, b"\x2c" * 8) + ld(9, ld(1, b"deep") + ld(2, value))
    body = ld(1, ld(2, ld(2, span)))  # request.resource_spans.scope_spans.spans
    resp = http.post("/v1/traces", content=body, headers=PB)
    assert resp.status_code == 400 and pb_error(resp).startswith("invalid OTLP protobuf")
    still_serving(http)
