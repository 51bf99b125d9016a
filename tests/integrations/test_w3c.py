"""W3C Trace Context Level 2 and W3C Baggage conformance of the propagators threadline installs.

Cases follow the specs and the W3C trace-context test suite (test/test.py): repeated headers are
lists of values, as HTTP frameworks hand them to getters.
"""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context, trace

import threadline as tl
from threadline.integrations import w3c

TRACE = "12345678901234567890123456789012"
SPAN = "1234567890123456"
VALID = f"00-{TRACE}-{SPAN}-01"
P = w3c.propagator()


def sc_of(carrier) -> trace.SpanContext:
    return trace.get_current_span(P.extract(carrier)).get_span_context()


def accepted(traceparent) -> bool:
    sc = sc_of({"traceparent": traceparent})
    if sc.is_valid:
        assert f"{sc.trace_id:032x}" == TRACE and f"{sc.span_id:016x}" == SPAN
    return sc.is_valid


# -- traceparent --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        f"00-{TRACE}-{SPAN}-00",
        f"cc-{TRACE}-{SPAN}-01",  # a future version is parsed as 00
        f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like",
        f" \t{VALID} \t",  # optional white space around the value
    ],
)
def test_traceparent_accepted(value):
    assert accepted(value)


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"cc-{TRACE}-{SPAN}-01.what-the-future-will-be-like",  # future fields start with "-"
        f"00-{TRACE}-{SPAN}-01-what-the-future-will-be-like",  # 00 has exactly four fields
        f".0-{TRACE}-{SPAN}-01",
        f"0-{TRACE}-{SPAN}-01",
        f"000-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()[:-1]}A-{SPAN}-01",  # hex digits are lower case
        f"00-{TRACE[:-1]}.-{SPAN}-01",
        f"00-{TRACE}0-{SPAN}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN[:-1]}.-01",
        f"00-{TRACE}-{SPAN}0-01",
        f"00-{TRACE}-{SPAN[:-1]}-01",
        f"00-{TRACE}-{SPAN}-.0",
        f"00-{TRACE}-{SPAN}-0",
        f"00-{TRACE}-{SPAN}-010",
        "",
        "garbage",
    ],
)
def test_traceparent_rejected(value):
    assert not accepted(value)


def test_repeated_traceparent_headers_start_a_new_trace():
    other = f"00-{'a' * 32}-{'b' * 16}-01"
    assert not sc_of({"traceparent": [VALID, other]}).is_valid
    assert not sc_of({"traceparent": [VALID, VALID]}).is_valid  # even when identical
    assert not sc_of({"traceparent": f"{VALID},{other}"}).is_valid  # combined into one line


def test_the_stock_propagator_takes_the_first_of_repeated_traceparents():
    # Why w3c.py exists: this is the behaviour it corrects.
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    other = f"00-{'a' * 32}-{'b' * 16}-01"
    ctx = TraceContextTextMapPropagator().extract({"traceparent": [VALID, other]})
    assert trace.get_current_span(ctx).get_span_context().is_valid


def test_sampled_and_random_flags_are_carried_to_the_child(traces):
    for flags, expected in (("01", "01"), ("00", "00"), ("03", "03"), ("02", "02"), ("ff", "03")):
        carrier = {"traceparent": f"00-{TRACE}-{SPAN}-{flags}"}
        with tl.resume(carrier, "child"):
            out = tl.inject()
        # unknown flag bits are not passed on; sampled and random are
        assert out["traceparent"].startswith(f"00-{TRACE}-")
        assert out["traceparent"].endswith(f"-{expected}"), (flags, out)


def test_new_traces_say_their_trace_id_is_random(traces):
    with tl.span("root"):
        out = tl.inject()
    assert out["traceparent"].endswith("-03")  # sampled + random trace id (Level 2)


# -- tracestate ---------------------------------------------------------------------------------


def ts_of(tracestate, traceparent=VALID):
    sc = sc_of({"traceparent": traceparent, "tracestate": tracestate})
    return sc.trace_state.to_header() if sc.trace_state else ""


def test_tracestate_is_kept_and_carried_on_unchanged(traces):
    carrier = {"traceparent": VALID, "tracestate": "foo=1,bar=2"}
    with tl.resume(carrier, "child"):
        out = tl.inject()
    assert out["tracestate"] == "foo=1,bar=2"


def test_repeated_tracestate_headers_are_one_list_in_order():
    assert ts_of(["foo=1", "bar=2,baz=3"]) == "foo=1,bar=2,baz=3"


def test_tracestate_white_space_and_empty_members():
    assert ts_of(" foo=1 , ,\tbar=2\t,") == "foo=1,bar=2"


def test_empty_tracestate():
    assert ts_of("") == ""
    assert ts_of([""]) == ""


def test_tracestate_is_dropped_with_an_invalid_traceparent():
    assert ts_of("foo=1", traceparent=f"00-{'0' * 32}-{SPAN}-01") == ""


@pytest.mark.parametrize(
    "tracestate",
    [
        "foo=1,foo=2",  # duplicated keys
        "foo=1,bar=2,foo=3",
        "FOO=1",  # keys are lower case
        "foo.bar=1",
        "@foo=1",
        "foo@=1",
        "foo@@bar=1",
        "foo@bar@baz=1",
        "foo=bar=baz",  # "=" is not allowed in a value
        "foo=",  # a value ends with a non-blank character
        "foo=\x7f",
        "a" * 257 + "=1",  # simple key: at most 256 characters
        "t" * 242 + "@sys=1",  # tenant id: at most 241
        "t@" + "s" * 15 + "=1",  # system id: at most 14
        "foo=" + "v" * 257,  # value: at most 256
    ],
)
def test_tracestate_invalid_member_discards_the_whole_header(tracestate):
    assert ts_of(tracestate) == ""


def test_tracestate_valid_keys_and_values():
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    value = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=").strip()
    assert ts_of(f"{key}={value}") == f"{key}={value}"
    tenant = "0" + "t" * 240 + "@" + "s" * 14
    assert ts_of(f"{tenant}=1") == f"{tenant}=1"
    assert ts_of("a" * 256 + "=1") == "a" * 256 + "=1"


def test_tracestate_member_count_limit():
    members = [f"k{i:02d}=v" for i in range(32)]
    assert ts_of(",".join(members)) == ",".join(members)
    assert ts_of(",".join([*members, "k99=v"])) == ""  # 33 members: invalid


def test_long_tracestate_is_truncated_long_members_first_then_from_the_end():
    long_member = "big=" + "x" * 200  # over 128 characters: the first to go
    small = [f"k{i:02d}=" + "v" * 30 for i in range(16)]  # 34 characters each
    got = ts_of(",".join([small[0], long_member, *small[1:]]))
    assert "big=" not in got
    kept = got.split(",")
    assert len(got) <= 512
    assert kept == small[: len(kept)]  # removed from the end
    assert len(kept) == 14  # 14 * 35 - 1 = 489; one more would exceed 512


# -- baggage ------------------------------------------------------------------------------------


def bag_of(header) -> dict:
    return dict(baggage.get_all(P.extract({"baggage": header})))


def test_baggage_basic_and_white_space():
    assert bag_of(" user = alice ,\tteam=checkout ") == {"user": "alice", "team": "checkout"}


def test_repeated_baggage_headers_are_one_list():
    assert bag_of(["a=1", "b=2,c=3"]) == {"a": "1", "b": "2", "c": "3"}


def test_baggage_is_percent_encoded_not_form_encoded():
    assert bag_of("sum=1+1,greeting=hello%20world%2C%3B") == {
        "sum": "1+1",
        "greeting": "hello world,;",
    }
    ctx = baggage.set_baggage("note", "a b+c=d", context.Context())
    carrier: dict[str, str] = {}
    P.inject(carrier, context=ctx)
    assert carrier["baggage"] == "note=a%20b%2Bc%3Dd"
    assert bag_of(carrier["baggage"]) == {"note": "a b+c=d"}


def test_baggage_unicode_round_trip():
    ctx = baggage.set_baggage("city", "Zürich ☃", context.Context())
    carrier: dict[str, str] = {}
    P.inject(carrier, context=ctx)
    assert carrier["baggage"].isascii()
    assert bag_of(carrier["baggage"]) == {"city": "Zürich ☃"}


def test_baggage_properties_are_not_part_of_the_value():
    got = bag_of("user=alice;ttl=60;internal,team=checkout")
    assert got == {"user": "alice", "team": "checkout"}


def test_invalid_baggage_members_are_skipped_the_rest_kept():
    assert bag_of("good=1,bad key=2,noequals,also=ok") == {"good": "1", "also": "ok"}


def test_baggage_over_the_size_limit_keeps_the_members_that_fit():
    members = [f"k{i:03d}=" + "v" * 95 for i in range(100)]  # 100 bytes each, 10 kB in all
    got = bag_of(",".join(members))
    assert 70 <= len(got) < 100
    assert list(got) == [m.split("=")[0] for m in members[: len(got)]]


def test_baggage_member_count_limit():
    members = [f"k{i}=v" for i in range(200)]
    got = bag_of(",".join(members))
    assert len(got) == w3c.BAGGAGE_MAX_MEMBERS
    assert "k0" in got and "k179" in got and "k180" not in got


def test_install_respects_otel_propagators(monkeypatch):
    from opentelemetry import propagate

    before = propagate.get_global_textmap()
    monkeypatch.setenv("OTEL_PROPAGATORS", "b3")
    try:
        assert w3c.install() is False
        assert propagate.get_global_textmap() is before
    finally:
        propagate.set_global_textmap(before)
