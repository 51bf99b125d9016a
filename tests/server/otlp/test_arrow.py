"""The Arrow path from OTLP protobuf to the span table builds exactly the table of the message by
message path, and hands every request it does not take to that path."""

import json
import math
import os
import sys

import pytest
from crafted import history, showcase
from otlp_sample import TRACE, check, every_value_request
from test_columns import _protobuf

from threadline.server.ingest.decode import decode_protobuf_export
from threadline.server.otlp import arrow
from threadline.server.otlp.columns import columns_from_request
from threadline.server.otlp.json_format import encode_json
from threadline.server.otlp.protobuf import parse_protobuf
from threadline.server.storage import Filter, Query
from threadline.server.storage.duckdb import DuckDBStore
from threadline.server.storage.layout import ArrowColumns

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "benchmarks"))
from serve_data import deep_attribute, make_request

pytestmark = pytest.mark.skipif(not arrow.available(), reason="ptars not installed")


def both(body: bytes):
    fast = arrow.decode(body)
    assert fast is not None, "the Arrow path refused a request it should take"
    slow = columns_from_request(parse_protobuf(body))
    return fast.columns.table(), slow.columns.table()


def assert_same(fast, slow):
    assert fast.schema.equals(slow.schema)
    for name in fast.column_names:
        a, b = fast.column(name), slow.column(name)
        assert repr(a.to_pylist()) == repr(b.to_pylist()), name  # repr: NaN equals NaN


def test_realistic_exports_make_the_same_table():
    fast, slow = both(make_request(3000, seed=7).SerializeToString())
    assert fast.num_rows == 3000
    assert_same(fast, slow)


def test_every_value_type_event_link_and_pending_copy_makes_the_same_table():
    spans = showcase(1_700_000_000_000_000_000) + history(1_700_000_000_000_000_000, n=5)
    spans[0].attributes.update(
        {
            "blob": b"\x00\xff",
            "ratio": math.inf,
            "nan": math.nan,
            "tags": ["a", 1, [True]],
            "m": {"x": None, "y": {"z": 1.5}},
            "empty": "",
            "zero": 0,
            "no": False,
            "quote": 'say "hi"\n\ttab \\ back \x01',
            'key "quoted"\n': "v",
            "unicode": "héllo ✓ \u2028",
            "big": -(1 << 63),
            "tiny": 5e-324,
            "round": 2.0,
        }
    )
    spans[1].name = 'GET "/x"\n'
    fast, slow = both(_protobuf(encode_json(spans)).SerializeToString())
    assert fast.num_rows == len(spans)
    assert_same(fast, slow)
    assert any(v is not None for v in fast.column("links").to_pylist())
    assert any(v is not None for v in fast.column("events").to_pylist())
    assert True in fast.column("pending").to_pylist()


def test_hand_written_request_with_every_value_type_reads_back_exactly():
    body = _protobuf(every_value_request()).SerializeToString()
    fast, slow = both(body)
    assert_same(fast, slow)
    store = DuckDBStore()
    store.write_columns([arrow.decode(body).columns])
    [span] = store.get_trace(TRACE)
    check(span)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: setattr(s, "trace_id", b"\x01" * 15),
        lambda s: setattr(s, "span_id", b"\x01" * 9),
        lambda s: setattr(s, "parent_span_id", b"\x01" * 7),
        lambda s: setattr(s, "trace_id", bytes(16)),
        lambda s: setattr(s, "span_id", bytes(8)),
        lambda s: setattr(s, "start_time_unix_nano", 1 << 63),
        lambda s: setattr(s, "end_time_unix_nano", (1 << 64) - 1),
        lambda s: s.attributes.add().MergeFrom(s.attributes[0]),  # a repeated key
        lambda s: setattr(s.links.add(), "trace_id", b"\x01" * 3),
    ],
)
def test_what_the_arrow_path_does_not_take_goes_the_other_way(spoil):
    req = make_request(200, seed=3)
    spoil(req.resource_spans[0].scope_spans[0].spans[5])
    body = req.SerializeToString()
    assert arrow.decode(body) is None


def test_undecodable_bytes_go_the_other_way():
    body = make_request(200, seed=3).SerializeToString()
    assert arrow.decode(body[:-7]) is None
    assert arrow.decode(b"\xff" * 64) is None


def test_an_empty_export_is_an_empty_table():
    decoded = arrow.decode(b"")
    assert decoded is not None and len(decoded.columns) == 0


def test_large_exports_take_the_arrow_path_and_search_finds_their_values():
    req = make_request(2000, seed=11)
    target = req.resource_spans[3].scope_spans[0].spans[7]
    for kv in target.attributes:
        if kv.key == "user.id":
            kv.value.string_value = "u-needle"
        if kv.key == "duration_bucket":
            kv.value.double_value = 0.125
    body = req.SerializeToString()
    decoded = decode_protobuf_export(body)
    assert isinstance(decoded.columns, ArrowColumns)
    store = DuckDBStore()
    store.write_columns([decoded.columns])
    trace = target.trace_id.hex()
    assert trace in decoded.columns.trace_ids()
    assert store.find_trace_ids(Query(filters=[[Filter("user.id", "=", "u-needle")]])) == [trace]
    assert store.find_trace_ids(Query(filters=[[Filter("duration_bucket", "=", "0.125")]])) == [
        trace
    ]
    assert len(store.get_trace(trace)) == sum(
        1 for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans
        if s.trace_id == target.trace_id
    )  # fmt: skip


def test_resource_and_scope_dropped_counts_are_kept_on_both_paths():
    req = make_request(300, seed=5)
    req.resource_spans[1].resource.dropped_attributes_count = 3
    req.resource_spans[2].scope_spans[0].scope.dropped_attributes_count = 4
    body = req.SerializeToString()
    fast, slow = both(body)
    assert_same(fast, slow)
    store = DuckDBStore()
    store.write_columns([arrow.decode(body).columns])
    for rs, counts in ((req.resource_spans[1], (3, 0)), (req.resource_spans[2], (0, 4))):
        span = rs.scope_spans[0].spans[0]
        [stored] = [
            s for s in store.get_trace(span.trace_id.hex()) if s.span_id == span.span_id.hex()
        ]
        assert (
            stored.resource_dropped_attributes_count,
            stored.scope_dropped_attributes_count,
        ) == counts


def _outcome(decode, body):
    """What a decoder makes of `body`: ("ok", the table's rows) or ("400", the message)."""
    from threadline.server.otlp.decoded import OTLPError

    try:
        return "ok", decode(body).columns.table().to_pylist()
    except OTLPError as exc:
        return "400", str(exc)


def _raw(spoil):
    """A spoiler of the serialized request rather than the message."""
    spoil.raw = True
    return spoil


@pytest.mark.parametrize(
    "spoil",
    [
        deep_attribute(20),
        deep_attribute(
            33
        ),  # past the Arrow path's own depth: the message path decides, and takes it
        deep_attribute(46),
        deep_attribute(49),
        deep_attribute(64),
        lambda s: setattr(s, "start_time_unix_nano", 1 << 63),
        lambda s: setattr(s, "end_time_unix_nano", (1 << 64) - 1),
        lambda s: setattr(s, "trace_id", b"\x01" * 15),
        lambda s: setattr(s.links.add(), "trace_id", b"\x01" * 3),
        _raw(lambda b: b.replace(b"MARKERX", b"MARK\xff\xfeX")),  # bad UTF-8, nested
        _raw(lambda b: b.replace(b"\x0a\x09\x0a\x07MARKERX", b"\x0a\x07\x0a\x07MARKERX")),
        _raw(lambda b: b[:41606] + bytes.fromhex("ffffffffffffffffff01") + b[41607:]),  # panic
        _raw(lambda b: b[:-7]),
    ],
)
def test_both_paths_accept_and_refuse_the_same_requests(spoil):
    """The differential test over refused inputs: whatever the Arrow path is handed, the export
    is stored or refused exactly as the message path alone stores or refuses it."""
    req = make_request(300, seed=1)
    span = req.resource_spans[0].scope_spans[0].spans[2]
    kv = span.attributes.add()
    kv.key = "arr"
    kv.value.array_value.values.add().string_value = "MARKERX"
    if not getattr(spoil, "raw", False):
        spoil(span)
    body = req.SerializeToString()
    if getattr(spoil, "raw", False):
        body = spoil(body)
    assert len(body) >= 64 * 1024
    production = _outcome(decode_protobuf_export, body)
    message_path = _outcome(lambda b: columns_from_request(parse_protobuf(b)), body)
    assert production[0] == message_path[0]
    assert repr(production[1]) == repr(message_path[1])


def test_doubles_are_written_as_python_writes_them():
    """Arrow's text of a double where it is Python's repr, Python's where it is not: across
    notations, magnitudes and the values without a plain form, each reads as `text_form`."""
    import random
    import struct

    import pyarrow as pa
    import pyarrow.compute as pc

    from threadline.server.storage.layout import text_form

    rng = random.Random(3)
    edges = [0.1, 1.0, 5.0, -2.5, -0.0, 0.0, 1e-4, 1e-5, 9.99e-5, 1e15, 1e16, 123.0, 1e22, 5e-324]
    edges += [float("nan"), float("inf"), -float("inf"), 9999999999999998.0]
    values = edges + [struct.unpack("d", rng.randbytes(8))[0] for _ in range(20_000)]
    values += [rng.random() * 10 ** rng.randint(-8, 20) for _ in range(20_000)]
    values += [float(rng.randint(-(10**17), 10**17)) for _ in range(5_000)] + [None, None]
    parts = arrow._Attributes._reprs(pa.array(values, pa.float64()))
    # the parts share out the values: each is set in at most one of them
    assert sum(p.is_valid().to_numpy(zero_copy_only=False).astype(int) for p in parts).max() == 1
    got = pc.coalesce(*parts).to_pylist()
    assert got[:4] == ["0.1", "1.0", "5.0", "-2.5"] and got[-2:] == [None, None]
    assert got == [None if v is None else text_form(v) for v in values]


def test_attribute_and_event_texts_keep_their_punctuation_at_every_edge():
    """Rows with no attributes, one, several; spans with no events, one, several, events with
    and without attributes or dropped counts; values with escapes, bools, empty values: each
    attribute and event carries its row's punctuation, and the rows read exactly as the
    message path writes them."""
    req = make_request(400, seed=9)
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    del spans[0].attributes[:]
    del spans[1].attributes[1:]
    spans[2].attributes.add().key = "unset"  # an AnyValue with nothing set
    spans[3].attributes.add().key, spans[3].attributes[-1].value.bool_value = "ok", True
    spans[4].attributes[0].value.string_value = 'a "quoted"\\ value'
    for n_events, span in enumerate(spans[5:9]):
        del span.events[:]
        for k in range(n_events):
            e = span.events.add()
            e.time_unix_nano, e.name = 1_700_000_000_000_000_000 + k, f'step "{k}"'
            e.dropped_attributes_count = k % 2
            for j in range(k):
                kv = e.attributes.add()
                kv.key, kv.value.int_value = f"n{j}", j
    fast, slow = both(req.SerializeToString())
    assert_same(fast, slow)
    rows = fast.to_pylist()
    assert rows[0]["attributes"] is None and rows[5]["events"] is None
    assert rows[1]["attributes"] == '{"http.method":"GET"}'
    assert rows[7]["events"] == (
        '[[1700000000000000000,"step \\"0\\"",null,0],'
        '[1700000000000000001,"step \\"1\\"",{"m":[["n0",0]]},1]]'
    )


@pytest.mark.parametrize("text", ["tab\there", 'a "quote', "back\\slash", "\x00"])
def test_a_string_needing_one_escape_is_escaped(text):
    """Each character JSON escapes, alone among an export's strings, is found and escaped."""
    req = make_request(200, seed=4)
    span = req.resource_spans[2].scope_spans[0].spans[3]
    span.attributes[1].value.string_value = text
    fast, slow = both(req.SerializeToString())
    assert_same(fast, slow)
    assert json.loads(fast.column("attributes")[span_row(req, span)].as_py())["http.route"] == text


def span_row(req, target) -> int:
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return next(i for i, s in enumerate(spans) if s.span_id == target.span_id)
