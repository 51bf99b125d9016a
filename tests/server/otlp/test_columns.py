import base64
import json
import math

import pytest
from crafted import showcase
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_sample import TRACE, check, every_value_request

from threadline.semconv import PENDING
from threadline.server.ingest.decode import decode_protobuf_export
from threadline.server.model import Span
from threadline.server.otlp.columns import columns_from_request
from threadline.server.otlp.decoded import OTLPError
from threadline.server.otlp.json_format import decode_json, encode_json
from threadline.server.otlp.reference import decode_request
from threadline.server.storage import Filter, Query
from threadline.server.storage.duckdb import DuckDBStore
from threadline.server.storage.layout import SpanColumns


def _protobuf(doc: dict) -> ExportTraceServiceRequest:
    """An OTLP/JSON document as the protobuf message (protobuf JSON ids are base64)."""
    doc = json.loads(json.dumps(doc))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for obj in [s, *s.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if obj.get(key):
                            obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode()
    return ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)


def test_every_value_type_stored_from_protobuf_columns_reads_back_exactly():
    req = _protobuf(every_value_request())
    decoded = decode_protobuf_export(req.SerializeToString())
    assert (len(decoded.columns), decoded.spans, decoded.rejected) == (1, [], 0)
    store = DuckDBStore()
    store.write_columns([decoded.columns])
    [span] = store.get_trace(TRACE)
    check(span)


def test_protobuf_columns_equal_the_columns_of_decoded_spans():
    # pending copies, links, events, kvlists, bytes and non-finite doubles included
    spans = showcase(1_700_000_000_000_000_000)
    spans[0].attributes.update(
        {"blob": b"\x00\xff", "ratio": math.inf, "tags": ["a", 1], "m": {"x": None}}
    )
    req = _protobuf(encode_json(spans))
    again = req.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    again.key, again.value.int_value = next(iter(spans[0].attributes)), 7  # a repeated key
    direct = columns_from_request(req).columns.table()
    via_model = SpanColumns().add_spans(decode_request(req).spans).table()
    assert direct.num_rows == len(spans)
    assert direct.equals(via_model)
    assert direct.column("attr_nums")[0].as_py()[0] == 7.0  # the last value, in the first place
    assert direct.column("pending").to_pylist().count(True) == sum(
        1 for s in spans if s.attributes.get(PENDING)
    )


def test_columns_keep_ids_signed_and_roots_null():
    hi, lo, sid = "ff" * 8, "7f" + "ff" * 7, "80" + "00" * 7
    spans = [
        Span(hi + lo, sid, "", "root", 2, 10, 20, "svc"),
        Span(hi + lo, "00" * 7 + "01", sid, "child", 1, 11, 19, "svc", attributes={"n": 5}),
    ]
    t = SpanColumns().add_spans(spans).table()
    assert t.column("tid_hi").to_pylist() == [-1, -1]
    assert t.column("tid_lo").to_pylist() == [(1 << 63) - 1] * 2
    assert t.column("span_id").to_pylist() == [-(1 << 63), 1]
    assert t.column("parent_id").to_pylist() == [None, -(1 << 63)]
    assert t.column("attr_keys").to_pylist() == [None, ["n"]]
    assert t.column("attr_nums").to_pylist() == [None, [5.0]]
    store = DuckDBStore()
    store.write(spans)
    assert [(s.span_id, s.parent_span_id) for s in store.get_trace(hi + lo)] == [
        (sid, ""),
        ("00" * 7 + "01", sid),
    ]
    assert store.find_trace_ids(Query(filters=[[Filter("n", "=", "5")]])) == [hi + lo]


def test_protobuf_columns_reject_zero_ids_and_refuse_bad_lengths():
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    zero = ss.spans.add()
    zero.trace_id, zero.span_id = b"\x01" * 16, bytes(8)
    ok = ss.spans.add()
    ok.trace_id, ok.span_id = b"\x01" * 16, b"\x02" * 8
    decoded = columns_from_request(req)
    assert decoded.columns.trace_ids() == {"01" * 16}
    assert (len(decoded.columns), decoded.rejected) == (1, 1)
    assert decoded.message == (
        "rejected 1 span(s): resourceSpans[0].scopeSpans[0].spans[0]: all-zero span id is invalid"
    )
    ok.parent_span_id = b"\x03" * 7
    with pytest.raises(OTLPError, match=r"spans\[1\]\.parentSpanId: 7 bytes, expected 8"):
        columns_from_request(req)


def test_json_and_protobuf_exports_store_the_same_rows():
    doc = every_value_request()
    a, b = DuckDBStore(), DuckDBStore()
    a.write(decode_json(doc).spans)
    b.write_columns([columns_from_request(_protobuf(doc)).columns])
    rows = "SELECT * FROM spans"
    assert repr(a._rows(rows)) == repr(b._rows(rows))  # repr: the index holds a NaN
