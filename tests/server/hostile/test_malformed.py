"""Each malformed input the fuzz campaign found answered 5xx (or not at all) is a 400 naming the
field at fault, over OTLP/HTTP, OTLP/gRPC and the query API, and the server keeps serving."""

import json
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status

sys.path.insert(0, str(Path(__file__).parents[3] / "benchmarks"))
from serve_data import deep_attribute, make_request
from threadline.server.durations import parse_duration
from threadline.server.ingest.decode import ARROW_MIN_BYTES

PB = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# a length field made 2^64-1 at this offset of make_request(300, seed=1) panics inside ptars
PANIC_AT, PANIC_LENGTH = 41606, bytes.fromhex("ffffffffffffffffff01")


@pytest.fixture(scope="module")
def otlp(srv):
    with httpx.Client(base_url=srv.urls.otlp_http, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def api(srv):
    with httpx.Client(base_url=srv.urls.api, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def grpc_export(srv):
    with grpc.insecure_channel(srv.urls.otlp_grpc) as channel:
        yield channel.unary_unary(EXPORT)


def large(spoil=None) -> bytes:
    """An export over the Arrow path's threshold, with its third span spoiled."""
    req = make_request(300, seed=1)
    if spoil:
        spoil(req.resource_spans[0].scope_spans[0].spans[2])
    body = req.SerializeToString()
    assert len(body) >= ARROW_MIN_BYTES
    return body


def marked_array(span):
    kv = span.attributes.add()
    kv.key = "arr"
    kv.value.array_value.values.add().string_value = "MARKERX"


def pb_message(resp) -> str:
    return Status.FromString(resp.content).message


def both_refuse(otlp, grpc_export, body: bytes, message: str) -> None:
    resp = otlp.post("/v1/traces", content=body, headers=PB)
    assert resp.status_code == 400, resp.content[:300]
    assert message in pb_message(resp)
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(body, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


@pytest.mark.parametrize("depth", [49, 64, 70])
def test_deep_nested_values_in_a_large_export_are_400(otlp, grpc_export, depth):
    both_refuse(
        otlp,
        grpc_export,
        large(deep_attribute(depth)),
        "invalid OTLP protobuf: attribute values nest too deep (protobuf reads 100 nested "
        "messages, about 47 levels of arrayValue / kvlistValue): Error parsing",
    )


def test_bad_utf8_in_a_nested_string_of_a_large_export_is_400(otlp, grpc_export):
    body = large(marked_array).replace(b"MARKERX", b"MARK\xff\xfeX")
    both_refuse(otlp, grpc_export, body, "String field had bad UTF-8")


def test_corrupt_nested_bytes_in_a_large_export_are_400(otlp, grpc_export):
    # the nested AnyValue's length says 7 bytes where 9 follow
    body = large(marked_array).replace(b"\x0a\x09\x0a\x07MARKERX", b"\x0a\x07\x0a\x07MARKERX")
    resp = otlp.post("/v1/traces", content=body, headers=PB)
    assert resp.status_code == 400
    assert pb_message(resp).startswith("invalid OTLP protobuf:")
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(body, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_ptars_panic_is_a_400_on_both_transports(otlp, grpc_export):
    body = make_request(300, seed=1).SerializeToString()
    body = body[:PANIC_AT] + PANIC_LENGTH + body[PANIC_AT + 1 :]
    resp = otlp.post("/v1/traces", content=body, headers=PB)
    assert resp.status_code == 400
    assert pb_message(resp).startswith("invalid OTLP protobuf:")
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(body, timeout=60)  # answered, not left hanging
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("field", "value"),
    [("start_time_unix_nano", 1 << 63), ("end_time_unix_nano", (1 << 64) - 1)],
)
def test_span_times_past_int64_are_400_naming_the_field(otlp, grpc_export, srv, field, value):
    camel = "startTimeUnixNano" if field.startswith("start") else "endTimeUnixNano"
    body = large(lambda s: setattr(s, field, value))
    both_refuse(
        otlp,
        grpc_export,
        body,
        f"resourceSpans[0].scopeSpans[0].spans[2].{camel}: {value} is past the latest time",
    )
    small = make_request(3, seed=1)
    [where] = [
        (ri, si) for ri, rs in enumerate(small.resource_spans)
        for si, ss in enumerate(rs.scope_spans) if ss.spans
    ][:1]  # fmt: skip
    setattr(small.resource_spans[where[0]].scope_spans[where[1]].spans[0], field, value)
    both_refuse(
        otlp,
        grpc_export,
        small.SerializeToString(),
        f"resourceSpans[{where[0]}].scopeSpans[{where[1]}].spans[0].{camel}: {value}",
    )


def json_export(**span) -> bytes:
    s = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "op", "startTimeUnixNano": "1"}
    s.update(span)
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [s]}]}]}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (json_export(name="a\ud800b"), "resourceSpans[0].scopeSpans[0].spans[0].name"),
        (
            json_export(attributes=[{"key": "k\udfff", "value": {"stringValue": "v"}}]),
            "spans[0].attributes[0].key",
        ),
        (
            json_export(attributes=[{"key": "k", "value": {"stringValue": "\ud800"}}]),
            "spans[0].attributes[0].value.stringValue",
        ),
    ],
)
def test_json_lone_surrogates_are_400_naming_the_field(otlp, body, field):
    assert b"\\ud800" in body or b"\\udfff" in body
    resp = otlp.post("/v1/traces", content=body, headers=JSON)
    assert resp.status_code == 400
    message = resp.json()["message"]
    assert field in message and "lone surrogate" in message


def test_json_lone_surrogate_in_schema_url_is_400(otlp):
    doc = json.loads(json_export())
    doc["resourceSpans"][0]["schemaUrl"] = "http://x/\ud800"
    resp = otlp.post("/v1/traces", content=json.dumps(doc).encode(), headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("resourceSpans[0].schemaUrl: not valid Unicode")


def test_json_time_past_int64_is_400(otlp):
    resp = otlp.post("/v1/traces", content=json_export(endTimeUnixNano=str(1 << 63)), headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano: 9223372036854775808 is past "
        "the latest time stored (2^63-1 ns, in 2262)"
    )


@pytest.mark.parametrize("text", ["ü==", "AAA\u00e9", "\u2603"])
def test_json_non_ascii_bytes_value_is_400(otlp, text):
    body = json_export(attributes=[{"key": "b", "value": {"bytesValue": text}}])
    resp = otlp.post("/v1/traces", content=body, headers=JSON)
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.bytesValue: expected base64"
    )


@pytest.mark.parametrize("bound", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_non_finite_filter_bounds_are_400(api, bound):
    resp = api.get("/api/threadline/search", params={"filter": f"k>{bound}"})
    assert resp.status_code == 400
    assert resp.json() == {"error": f"k > needs a finite number, got {bound!r}"}


def test_finite_filter_bounds_are_bound_parameters():
    from threadline.server.storage import Filter, Query
    from threadline.server.storage.duckdb import DuckDBStore

    store = DuckDBStore()
    where, params = store._where(Query(filters=[[Filter("k", ">", "1e300")]]))
    assert "1e+300" not in where and "1e300" not in where
    # the span and the resource lookups: key, bound; resource key, path and bound
    assert params == ["k", 1e300, '"k":', '$."k"', 1e300]


def test_filter_keys_and_values_are_bound_parameters():
    from threadline.server.storage import Filter, Query
    from threadline.server.storage.duckdb import DuckDBStore

    store = DuckDBStore()
    hostile = "x'); DROP TABLE spans; --"
    for op in ("=", "!=", "exists", "!exists"):
        where, params = store._where(Query(filters=[[Filter(hostile, op, hostile)]]))
        assert "DROP" not in where and hostile in params, (op, where)


SURROGATE = '{"k": "\\ud800"}'


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/api/traces", {"service": "s", "tags": SURROGATE}, "tags is not valid Unicode"),
        ("/api/threadline/search", {"tags": SURROGATE}, "tags is not valid Unicode"),
        ("/api/v3/traces", {"query.attributes": SURROGATE}, "query.attributes is not valid"),
        ("/api/traces", {"service": "s", "tags": "[" * 1000 + "]" * 1000}, "tags nests too deep"),
        (
            "/api/traces",
            {"service": "s", "tags": '{"a":' * 1000 + "1" + "}" * 1000},
            "tags nests too deep",
        ),
        ("/api/traces", {"service": "s", "minDuration": "9" * 400 + "h"}, "longer than the"),
        ("/api/threadline/search", {"maxDuration": "9" * 400 + "h"}, "longer than the"),
        ("/api/threadline/analysis/dependencies", {"lookback": "9" * 400 + "d"}, "lookback"),
        ("/api/traces", {"service": "s", "end": "9" * 40}, "end must be between 0 and"),
        ("/api/dependencies", {"endTs": "9" * 40}, "endTs must be between 0 and"),
    ],
)
def test_hostile_query_parameters_are_400_naming_them(api, path, params, expected):
    resp = api.get(path, params=params)
    assert resp.status_code == 400, resp.text[:300]
    assert expected in resp.text


def test_overflowing_durations_are_value_errors():
    with pytest.raises(ValueError, match="longer than the longest, 292 years"):
        parse_duration("9" * 400 + "h")
    with pytest.raises(ValueError, match="longer than the longest"):
        parse_duration("106752d", days=True)
    assert parse_duration("106751d", days=True) == 106751 * 86400 * 10**9


def test_the_server_still_stores_after_all_of_it(otlp, srv):
    before = srv.store.stats()["spans"]
    resp = otlp.post("/v1/traces", content=large(), headers=PB)
    assert resp.status_code == 200
    assert srv.store.stats()["spans"] - before == 300
