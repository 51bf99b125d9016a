"""Property tests of everything that parses hostile input: the OTLP protobuf and JSON decoders,
the filter language and the duration parser. Whatever they are handed, they return a value or
raise their own error (OTLPError / ValueError, answered 400); what they accept the store can
write and query. Both protobuf decode paths take and refuse the same requests.

Hypothesis runs a bounded, derandomized number of examples, so CI runs are repeatable."""

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[3] / "benchmarks"))
from serve_data import make_request
from threadline.server.durations import parse_duration
from threadline.server.ingest.decode import decode_json_export, decode_protobuf_export
from threadline.server.otlp.columns import columns_from_request
from threadline.server.otlp.decoded import OTLPError
from threadline.server.otlp.protobuf import parse_protobuf
from threadline.server.storage import Query, parse_filter
from threadline.server.storage.duckdb import DuckDBStore

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LARGE = make_request(300, seed=1).SerializeToString()  # over the Arrow path's threshold
SMALL = make_request(4, seed=2).SerializeToString()
STORE = DuckDBStore()


def outcome(decode, body):
    try:
        return "ok", decode(body).columns.table().to_pylist()
    except OTLPError as exc:
        return "400", str(exc)


def stored(decoded) -> None:
    """What a decoder accepted, the store writes."""
    STORE.write_columns([decoded.columns])


# byte-level damage to a valid export: overwrite, insert or cut at a place
damage = st.tuples(
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(["overwrite", "insert", "cut"]),
    st.one_of(
        st.binary(min_size=1, max_size=12),
        st.sampled_from([bytes.fromhex("ffffffffffffffffff01"), b"\x80" * 10, b"\x00", b"\xff"]),
    ),
)


def damaged(body: bytes, how) -> bytes:
    at, kind, data = how
    at %= len(body)
    if kind == "overwrite":
        return body[:at] + data + body[at + len(data) :]
    if kind == "insert":
        return body[:at] + data + body[at:]
    return body[:at]


@BOUNDED
@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_are_refused(body):
    try:
        stored(decode_protobuf_export(body))
    except OTLPError:
        pass


@BOUNDED
@given(damage)
def test_damaged_small_exports_decode_or_are_refused(how):
    try:
        stored(decode_protobuf_export(damaged(SMALL, how)))
    except OTLPError:
        pass


@settings(BOUNDED, max_examples=60)
@given(damage)
def test_damaged_large_exports_take_the_same_answer_on_both_paths(how):
    body = damaged(LARGE, how)
    fast = outcome(decode_protobuf_export, body)
    slow = outcome(lambda b: columns_from_request(parse_protobuf(b)), body)
    assert fast[0] == slow[0]
    assert repr(fast[1]) == repr(slow[1])


well_formed_keys = [
    "traceId", "spanId", "name", "startTimeUnixNano", "endTimeUnixNano", "kind", "attributes"
]  # fmt: skip
# text with lone surrogates among other characters (JSON may spell them as \ud800 escapes)
texts = st.text(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=30,
)
any_values = st.recursive(
    st.one_of(
        st.builds(lambda v: {"stringValue": v}, texts),
        st.builds(lambda v: {"intValue": v}, st.one_of(st.integers(), texts)),
        st.builds(lambda v: {"doubleValue": v}, st.one_of(st.floats(), texts)),
        st.builds(lambda v: {"bytesValue": v}, st.one_of(texts, st.just("AAE="))),
        st.builds(lambda v: {"boolValue": v}, st.booleans()),
    ),
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
            st.lists(st.tuples(texts, inner), max_size=3),
        ),
    ),
    max_leaves=12,
)
times = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=2**63 - 2, max_value=2**63 + 2),
    st.integers(min_value=0, max_value=2**64 - 1).map(str),
)
# a well-formed span (values still hostile: surrogates, huge times, odd values), then at most
# one field replaced by anything JSON can hold
well_formed = st.fixed_dictionaries(
    {
        "traceId": st.just("ab" * 16),
        "spanId": st.just("cd" * 8),
        "name": texts,
        "startTimeUnixNano": times,
        "endTimeUnixNano": times,
        "kind": st.sampled_from([1, 2, "SPAN_KIND_SERVER"]),
        "attributes": st.lists(
            st.fixed_dictionaries({"key": texts, "value": any_values}), max_size=4
        ),
    }
)
spans = st.builds(
    lambda span, spoil: {**span, **({spoil[0]: spoil[1]} if spoil else {})},
    well_formed,
    st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from([*well_formed_keys, "events", "links", "status", "flags"]),
            json_values,
        ),
    ),
)


@BOUNDED
@given(st.lists(spans, max_size=3), st.one_of(texts, json_values))
def test_json_exports_decode_or_are_refused(span_list, schema_url):
    doc = {"resourceSpans": [{"schemaUrl": schema_url, "scopeSpans": [{"spans": span_list}]}]}
    body = json.dumps(doc).encode()
    try:
        stored(decode_json_export(body))
    except OTLPError:
        pass


@BOUNDED
@given(st.text(max_size=200))
def test_any_json_text_decodes_or_is_refused(text):
    try:
        stored(decode_json_export(text.encode("utf-8", "surrogatepass")))
    except OTLPError:
        pass


filter_text = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scope, key, op, value: f"{scope}{key}{op}{value}",
        st.sampled_from(["", "span:", "resource:", "any:", "!"]),
        st.text(min_size=1, max_size=8),
        st.sampled_from(["=", "!=", "<", ">", "<=", ">=", ""]),
        st.one_of(
            st.text(max_size=10),
            st.sampled_from(["nan", "inf", "-inf", "1e999", "1e-999", '"a OR b"', '"x']),
            st.floats().map(repr),
        ),
    ),
)


@BOUNDED
@given(st.lists(filter_text, min_size=1, max_size=3))
def test_filters_parse_or_are_refused_and_parsed_ones_run(texts):
    try:
        filters = [parse_filter(t) for t in texts]
    except ValueError:
        return
    assert isinstance(STORE.find_trace_ids(Query(filters=filters, limit=5)), list)


@BOUNDED
@given(
    st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda n, u: f"{n}{u}",
            st.one_of(st.integers(min_value=0, max_value=10**30), st.floats(min_value=0)),
            st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h", "d", ""]),
        ),
    ),
    st.booleans(),
)
def test_durations_parse_within_int64_or_are_refused(text, days):
    try:
        ns = parse_duration(text, days=days)
    except ValueError:
        return
    assert 0 <= ns < 2**63


@pytest.mark.parametrize("text", ["9" * 400 + "h", "1e999s", "nan", "infh"])
def test_duration_examples_the_fuzzer_found(text):
    with pytest.raises(ValueError):
        parse_duration(text)
