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
        f"cc-{TRACE}-{SPAN}-09",  # with flags this version does not know
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
        f"cc-{TRACE}-{SPAN}-1",  # a higher version shorter than 55 characters: restart
        f"cc-{TRACE}-{SPAN}",
        f"00-{TRACE}-{SPAN}-01-what-the-future-will-be-like",  # 00 has exactly four fields
        f"00-{TRACE}-{SPAN}-01-",
        f"00-{TRACE}-{SPAN}-01.",
        f".0-{TRACE}-{SPAN}-01",
        f"0.-{TRACE}-{SPAN}-01",
        f"0-{TRACE}-{SPAN}-01",
        f"000-{TRACE}-{SPAN}-01",
        f"CC-{TRACE}-{SPAN}-01",  # hex digits are lower case: version,
        f"0A-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-0A",  # flags,
        f"00-{TRACE.upper()[:-1]}A-{SPAN}-01",  # trace id
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
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
    # Why the W3C module exists: this is the behaviour it corrects.
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    other = f"00-{'a' * 32}-{'b' * 16}-01"
    ctx = TraceContextTextMapPropagator().extract({"traceparent": [VALID, other]})
    assert trace.get_current_span(ctx).get_span_context().is_valid


def test_an_invalid_traceparent_leaves_the_given_context_as_it_was():
    ctx = P.extract({"traceparent": VALID})
    assert P.extract({"traceparent": "garbage", "tracestate": "x=1"}, ctx) is ctx


def test_sampled_and_random_flags_are_carried_to_the_child(traces):
    for flags, expected in (("01", "01"), ("00", "00"), ("03", "03"), ("02", "02"), ("ff", "03")):
        carrier = {"traceparent": f"00-{TRACE}-{SPAN}-{flags}"}
        with tl.resume(carrier, "child"):
            out = tl.inject()
        # unknown flag bits are not passed on; sampled and random are
        assert out["traceparent"].startswith(f"00-{TRACE}-")
        assert out["traceparent"].endswith(f"-{expected}"), (flags, out)


def test_a_higher_version_is_answered_in_version_00_with_the_known_flags_only(traces):
    carrier = {"traceparent": f"cc-{TRACE}-{SPAN}-09-what-the-future-will-be-like"}
    assert int(sc_of(carrier).trace_flags) == 0x01  # 0x08 is no flag this version knows
    assert tl.inject(context=P.extract(carrier)) == {"traceparent": f"00-{TRACE}-{SPAN}-01"}
    with tl.resume(carrier, "child") as child:
        out = tl.inject()
    assert out["traceparent"] == f"00-{TRACE}-{child.get_span_context().span_id:016x}-01"


def test_new_traces_say_their_trace_id_is_random(traces):
    with tl.span("root"):
        out = tl.inject()
    assert out["traceparent"].endswith("-03")  # sampled + random trace id (Level 2)


# -- tracestate ---------------------------------------------------------------------------------


def ts_of(tracestate, traceparent=VALID):
    sc = sc_of({"traceparent": traceparent, "tracestate": tracestate})
    return sc.trace_state.to_header() if sc.trace_state else ""


def test_tracestate_is_kept_and_carried_on_unchanged(traces):
    carrier = {"traceparent": VALID, "tracestate": "foo=1,bar@baz=2,1st=3"}
    with tl.resume(carrier, "child"):
        out = tl.inject()
    assert out["tracestate"] == "foo=1,bar@baz=2,1st=3"


def test_repeated_tracestate_headers_are_one_list_in_order():
    assert ts_of(["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]) == "foo=1,bar=2,rojo=1,congo=2,baz=3"
    assert ts_of(["foo=1", ""]) == ts_of(["", "foo=1"]) == "foo=1"


def test_tracestate_white_space_and_empty_members():
    assert ts_of(" foo=1 , ,\tbar=2\t,") == "foo=1,bar=2"
    assert ts_of("foo=1 \t , \t bar=2, \t baz=3") == "foo=1,bar=2,baz=3"


def test_tracestate_value_keeps_leading_spaces_and_drops_trailing_ones():
    sc = sc_of({"traceparent": VALID, "tracestate": "foo=  bar  ,baz= 1\t"})
    assert dict(sc.trace_state) == {"foo": "  bar", "baz": " 1"}


def test_empty_tracestate():
    assert ts_of("") == ""
    assert ts_of([""]) == ""


def test_tracestate_is_dropped_with_an_invalid_traceparent():
    assert ts_of("foo=1", traceparent=f"00-{'0' * 32}-{SPAN}-01") == ""


@pytest.mark.parametrize(
    "tracestate",
    [
        # Level 2 keys: a lower-case letter or a digit, then up to 255 of a-z 0-9 _ - * / @
        "foo@=1",
        "foo@@bar=1",
        "foo@bar@baz=1",
        "1abc=1",
        "t" * 242 + "@v=1",  # Level 1 had a 241-character tenant id
        "t@" + "v" * 15 + "=1",  # and a 14-character system id
        "0" + "z" * 255 + "=1",
        "abcdefghijklmnopqrstuvwxyz0123456789_-*/@=1",
    ],
)
def test_tracestate_level_2_keys_are_accepted(tracestate):
    assert ts_of(f"foo=1,{tracestate}") == f"foo=1,{tracestate}"


@pytest.mark.parametrize(
    "tracestate",
    [
        "FOO=1",  # keys are lower case
        "foo.bar=1",
        "foo =1",
        "@foo=1",  # a key starts with a letter or a digit
        "_foo=1",
        "a" * 257 + "=1",  # at most 256 characters
        "foo=bar=baz",  # "=" is not allowed in a value
        "foo=",  # a value ends with a non-blank character
        "foo",
        "foo=\x7f",
        "foo=a\tb",
        "foo=" + "v" * 257,  # value: at most 256
    ],
)
def test_tracestate_invalid_member_discards_the_whole_header(tracestate):
    bad = [tracestate] if isinstance(tracestate, str) else tracestate
    assert ts_of(["bar=2", *bad]) == ""


@pytest.mark.parametrize(
    ("tracestate", "kept"),
    [
        ("foo=1,foo=1", "foo=1"),
        ("foo=1,foo=2", "foo=1"),
        ("foo=1,bar=2,foo=3", "foo=1,bar=2"),
        (["foo=1", "bar=2", "foo=1,bar=3"], "foo=1,bar=2"),
    ],
)
def test_tracestate_duplicated_keys_keep_the_first_entry_and_are_inherited(
    traces, tracestate, kept
):
    before = w3c.discarded["tracestate members"]
    assert ts_of(tracestate) == kept
    assert w3c.discarded["tracestate members"] - before == len(_flat(tracestate)) - len(
        kept.split(",")
    )
    with tl.resume({"traceparent": VALID, "tracestate": tracestate}, "child") as child:
        out = tl.inject()
    assert out["tracestate"] == kept  # the child inherits it, as the W3C test suite expects
    assert out["traceparent"] == f"00-{TRACE}-{child.get_span_context().span_id:016x}-01"


def _flat(tracestate) -> list[str]:
    values = [tracestate] if isinstance(tracestate, str) else tracestate
    return [m for v in values for m in v.split(",")]


def test_tracestate_valid_keys_and_values():
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/@"
    value = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=").strip()
    assert ts_of(f"{key}={value}") == f"{key}={value}"
    assert ts_of("a" * 256 + "=1") == "a" * 256 + "=1"
    assert ts_of("foo=" + "v" * 256) == "foo=" + "v" * 256


def test_tracestate_member_count_limit_ignores_empty_members():
    members = [f"bar{i:02d}={i:02d}" for i in range(1, 33)]
    padded = ", ,".join(members[:16]) + ",,\t," + ",".join(members[16:]) + ", "
    assert ts_of(padded) == ",".join(members)  # 32 members and some empty ones: valid
    assert ts_of(",".join([*members, "bar33=33"])) == ""  # 33 members: invalid


def test_too_many_members_is_invalid_however_long_they_are():
    # Count first, truncate after: 40 members are invalid whether or not they would fit 512
    # characters, never truncated down to a valid-looking 20.
    short = [f"k{i:02d}=v" for i in range(40)]
    long = [f"k{i:02d}=" + "v" * 30 for i in range(40)]
    assert ts_of(",".join(short)) == ""
    assert ts_of(",".join(long)) == ""


def test_long_tracestate_loses_long_members_only_as_far_as_needed():
    first, last = "a=" + "x" * 148, "b=" + "y" * 148  # 150 characters: over 128
    small = [f"k{i:02d}=" + "v" * 16 for i in range(12)]  # 20 characters
    got = ts_of(",".join([first, *small, last]))  # 553 characters
    assert got == ",".join([first, *small])  # dropping the last long one is enough: 402


def test_long_tracestate_is_truncated_long_members_first_then_from_the_end():
    long_member = "big=" + "x" * 200  # over 128 characters: the first to go
    small = [f"k{i:02d}=" + "v" * 30 for i in range(16)]  # 34 characters each
    got = ts_of(",".join([small[0], long_member, *small[1:]]))
    kept = got.split(",")
    assert kept == small[:14]  # 14 * 35 - 1 = 489; one more would exceed 512
    assert w3c.discarded["tracestate members"] >= 3


def test_truncate_tracestate():
    assert w3c.truncate_tracestate(["a=1", "b=2"], limit=7) == ["a=1", "b=2"]
    assert w3c.truncate_tracestate(["a=1", "b=2"], limit=6) == ["a=1"]
    assert w3c.truncate_tracestate(["a=" + "x" * 127, "b=2", "c=" + "y" * 127], 140) == [
        "a=" + "x" * 127,
        "b=2",
    ]


# -- baggage ------------------------------------------------------------------------------------


def bag_of(header) -> dict:
    return dict(baggage.get_all(P.extract({"baggage": header})))


def header_of(entries: dict) -> str:
    ctx = context.Context()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    carrier: dict[str, str] = {}
    P.inject(carrier, context=ctx)
    return carrier.get("baggage", "")


def test_baggage_basic_and_white_space():
    assert bag_of(" user = alice ,\tteam=checkout ") == {"user": "alice", "team": "checkout"}


def test_repeated_baggage_headers_are_one_list():
    assert bag_of(["a=1", "b=2,c=3"]) == {"a": "1", "b": "2", "c": "3"}


def test_baggage_is_percent_encoded_not_form_encoded():
    assert bag_of("sum=1+1,greeting=hello%20world%2C%3B") == {
        "sum": "1+1",
        "greeting": "hello world,;",
    }
    assert header_of({"note": "a b+c=d"}) == "note=a%20b%2Bc%3Dd"
    assert bag_of("note=a%20b%2Bc%3Dd") == {"note": "a b+c=d"}


def test_baggage_encoded_spaces_at_the_ends_are_part_of_the_value():
    assert bag_of("pad=%20a%20, two = %20%20") == {"pad": " a ", "two": "  "}


def test_baggage_value_may_hold_equal_signs():
    assert bag_of("k=a=b,q==") == {"k": "a=b", "q": "="}


def test_baggage_unicode_round_trip():
    header = header_of({"city": "Zürich ☃"})
    assert header.isascii()
    assert bag_of(header) == {"city": "Zürich ☃"}


def test_baggage_bytes_that_are_not_utf8_decode_to_the_replacement_character():
    assert bag_of("k=aa%ffcc,e=%E2%82%AC") == {"k": "aa\ufffdcc", "e": "€"}


def test_baggage_properties_are_not_part_of_the_value():
    got = bag_of("user=alice;ttl=60;internal,team=checkout ; p")
    assert got == {"user": "alice", "team": "checkout"}


@pytest.mark.parametrize(
    "member",
    [
        "bad key=2",  # keys are tokens
        "k(1)=2",
        "k/=2",
        "k:=2",
        '"k"=2',
        "kö=2",
        "=2",
        "noequals",
        'k="quoted"',  # values are baggage-octets: no DQUOTE,
        "k=back\\slash",  # backslash,
        "k=inner space",  # or space
        "k=100%",  # "%" starts an escape of two hex digits
        "k=%zz",
        "k=%2",
    ],
)
def test_invalid_baggage_member_is_dropped_the_rest_kept(member):
    assert bag_of(f"good=1,{member},also=ok") == {"good": "1", "also": "ok"}


def test_baggage_over_the_size_limit_keeps_the_members_that_fit():
    members = [f"k{i:03d}=" + "v" * 95 for i in range(100)]  # 100 bytes each, 10 kB in all
    got = bag_of(",".join(members))
    assert list(got) == [m.split("=")[0] for m in members[:81]]  # 81 * 101 - 1 = 8180 bytes


def test_baggage_member_count_limit():
    members = [f"k{i}=v" for i in range(200)]
    got = bag_of(",".join(members))
    assert len(got) == w3c.BAGGAGE_MAX_MEMBERS
    assert "k0" in got and "k179" in got and "k180" not in got


def test_outgoing_baggage_keeps_to_the_member_limit():
    header = header_of({f"k{i}": "v" for i in range(200)})
    assert header.split(",") == [f"k{i}=v" for i in range(180)]


def test_outgoing_baggage_keeps_to_the_size_limit_after_encoding():
    # Each value is 40 spaces: 40 bytes form-encoded, 120 percent-encoded. The limit applies to
    # what is sent.
    header = header_of({f"k{i:03d}": " " * 40 for i in range(100)})
    members = header.split(",")
    assert len(header) <= w3c.BAGGAGE_MAX_BYTES
    assert members == [f"k{i:03d}=" + "%20" * 40 for i in range(len(members))]
    assert len(members) == 65  # 65 * 126 - 1 = 8189; one more would exceed 8192


def test_outgoing_baggage_key_that_is_not_a_token_is_left_out():
    assert header_of({"my key": "1", "ok": "2"}) == "ok=2"


def test_install_respects_otel_propagators(monkeypatch):
    from opentelemetry import propagate

    before = propagate.get_global_textmap()
    monkeypatch.setenv("OTEL_PROPAGATORS", "b3")
    try:
        assert w3c.install() is False
        assert propagate.get_global_textmap() is before
    finally:
        propagate.set_global_textmap(before)
