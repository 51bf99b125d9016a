import json
import logging
import pickle
import threading

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind

import threadline as tl
from threadline import _handoff, seam


def run_in_thread(fn):
    out = {}

    def target():
        out["value"] = fn()

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return out["value"]


def test_child_relation_continues_the_trace_in_another_thread(memory, finished):
    with tl.span("sender") as sender:
        h = tl.capture()

    def receive():
        with tl.resume(h, "receiver", kind="consumer", attributes={"q": "jobs"}) as s:
            return s

    run_in_thread(receive)
    spans = {s.name: s for s in finished(memory)}
    r = spans["receiver"]
    assert r.context.trace_id == sender.get_span_context().trace_id
    assert r.parent.span_id == sender.get_span_context().span_id
    assert r.kind is SpanKind.CONSUMER
    assert r.attributes["q"] == "jobs"


def test_link_relation_starts_a_new_trace_linked_to_the_sender(memory, finished):
    with tl.span("sender") as sender:
        h = tl.capture()
    with tl.resume(h, "batch", relation="link"):
        pass
    spans = {s.name: s for s in finished(memory)}
    batch = spans["batch"]
    assert batch.parent is None
    assert batch.context.trace_id != sender.get_span_context().trace_id
    (link,) = batch.links
    assert link.context.span_id == sender.get_span_context().span_id
    assert link.context.trace_id == sender.get_span_context().trace_id


def test_none_relation_starts_clean(memory, finished):
    with tl.span("sender") as sender:
        h = tl.capture()
        with tl.resume(h, "clean", relation="none"):
            pass
    spans = {s.name: s for s in finished(memory)}
    assert spans["clean"].parent is None
    assert spans["clean"].links == ()
    assert spans["clean"].context.trace_id != sender.get_span_context().trace_id


def test_resume_without_name_restores_context_and_resets_after(memory):
    with tl.span("sender") as sender:
        h = tl.capture()
    before = context.get_current()
    with tl.resume(h) as current:
        assert current.get_span_context() == sender.get_span_context()
        assert trace.get_current_span().get_span_context() == sender.get_span_context()
    assert context.get_current() is before


def test_handoff_pickles_and_serialises_as_w3c(memory, finished):
    ctx = baggage.set_baggage("tenant", "acme")
    token = context.attach(ctx)
    try:
        with tl.span("sender") as sender:
            h = tl.capture()
    finally:
        context.detach(token)
    carrier = h.carrier
    sc = sender.get_span_context()
    assert (
        carrier["traceparent"]
        == f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"
    )
    assert carrier["baggage"] == "tenant=acme"
    assert len(pickle.dumps(h)) < 300
    for copy in (pickle.loads(pickle.dumps(h)), tl.Handoff.from_json(json.dumps(carrier))):
        assert copy == h
        assert copy.trace_id == f"{sc.trace_id:032x}" and copy.span_id == f"{sc.span_id:016x}"
        with tl.resume(copy, "remote"):
            assert baggage.get_baggage("tenant") == "acme"
    remote = [s for s in finished(memory) if s.name == "remote"]
    assert len(remote) == 2
    assert all(s.parent.span_id == sc.span_id and s.parent.is_remote for s in remote)


def test_link_keeps_baggage_but_not_the_span(memory):
    token = context.attach(baggage.set_baggage("user", "42"))
    try:
        with tl.span("s"):
            h = pickle.loads(pickle.dumps(tl.capture()))
    finally:
        context.detach(token)
    with tl.resume(h, "linked", relation="link") as s:
        assert baggage.get_baggage("user") == "42"
        assert s.get_span_context().trace_id != h.span_context.trace_id


def test_empty_handoff_starts_a_new_root(memory, finished):
    h = tl.capture()  # nothing current
    assert not h and h.carrier == {}
    with tl.resume(h, "root-a"), tl.resume(None, "root-b"):
        pass
    with tl.resume({}, "root-c"):
        pass
    spans = {s.name: s for s in finished(memory)}
    # an empty handoff means "nothing was captured": a new root even inside another span
    assert [spans[n].parent for n in ("root-a", "root-b", "root-c")] == [None, None, None]
    assert len({s.context.trace_id for s in spans.values()}) == 3


def test_garbled_handoff_starts_a_new_root_and_logs_once(memory, finished, caplog, monkeypatch):
    monkeypatch.setattr(_handoff, "_warned_garbled", False)
    caplog.set_level(logging.WARNING, logger="threadline")
    bad = [
        {"traceparent": "00-zz-yy-01"},
        {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
        "{not json",
        b"\xff\xfe",
        ["not", "a", "mapping"],
    ]
    for i, carrier in enumerate(bad):
        with tl.resume(carrier, f"fresh {i}") as s:
            assert s.is_recording()
    spans = finished(memory)
    assert len(spans) == len(bad)
    assert all(s.parent is None for s in spans)
    assert len({s.context.trace_id for s in spans}) == len(bad)
    garbled = [r for r in caplog.records if "starting a new trace instead" in r.getMessage()]
    assert len(garbled) == 1


def test_garbled_handoffs_are_counted_and_logged_short(memory, caplog, monkeypatch):
    monkeypatch.setattr(_handoff, "_warned_garbled", False)
    caplog.set_level(logging.WARNING, logger="threadline")
    before = tl.export_stats()["garbled_handoffs"]
    huge = "00-" + "f" * 10_000
    for _ in range(3):
        with tl.resume({"traceparent": huge}, "fresh"):
            pass
    assert tl.export_stats()["garbled_handoffs"] - before == 3
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        f"threadline: traceparent {huge[:64]!r}... (10003 characters) is not valid W3C; "
        "starting a new trace instead (logged once; threadline.export_stats()"
        "['garbled_handoffs'] counts them)"
    )


def test_carrier_keys_are_case_insensitive_and_repeated_headers_combine():
    h = tl.Handoff.from_carrier(
        {
            "TraceParent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": ["a=1", "b=2"],
            "x-other": "ignored",
        }
    )
    assert h.carrier == {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "a=1,b=2",
    }
    assert h.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert h.span_context.trace_state.get("b") == "2"
    assert h.sampled


def test_sampled_out_handoff_makes_non_recording_spans(memory, finished):
    h = tl.Handoff.from_carrier(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}
    )
    assert not h.sampled
    with tl.resume(h, "skip") as s:
        assert not s.is_recording()
        assert tl.capture().carrier["traceparent"].endswith("-00")
    assert finished(memory) == ()


def test_resume_argument_errors():
    with pytest.raises(ValueError, match="relation must be one of"):
        tl.resume(None, "x", relation="sibling")
    with pytest.raises(ValueError, match="relation='link' needs a span name"):
        tl.resume(None, relation="link")
    with pytest.raises(ValueError, match="span name must be a non-empty string, not 42"):
        tl.resume(None, 42)
    with pytest.raises(ValueError, match="span name must be a non-empty string, not ''"):
        tl.resume(None, "")
    with pytest.raises(TypeError, match="attributes must be a mapping of names to values, not int"):
        tl.resume(None, "x", attributes=5)
    with pytest.raises(TypeError, match="wrap takes a function, not int"):
        tl.wrap(5)
    with pytest.raises(TypeError, match="inject writes into a dict of headers, not str"):
        tl.inject("traceparent")


def test_wrap_runs_later_under_the_captured_context(memory, finished):
    def job():
        with tl.span("job"):
            return trace.get_current_span().get_span_context().trace_id

    with tl.span("scheduler") as sched:
        wrapped = tl.wrap(job)

    assert run_in_thread(wrapped) == sched.get_span_context().trace_id
    spans = {s.name: s for s in finished(memory)}
    assert spans["job"].parent.span_id == sched.get_span_context().span_id


def test_wrap_coroutine_function(memory, finished):
    import asyncio

    async def work():
        with tl.span("async job"):
            pass

    with tl.span("origin") as origin:
        wrapped = tl.wrap(work)
    asyncio.run(wrapped())
    spans = {s.name: s for s in finished(memory)}
    assert spans["async job"].parent.span_id == origin.get_span_context().span_id


def test_inject_extract_round_trip(memory):
    with tl.span("client") as client:
        headers = tl.inject()
        assert tl.inject({"x": "1"})["x"] == "1"
    ctx = tl.extract(headers)
    assert (
        trace.get_current_span(ctx).get_span_context().span_id == client.get_span_context().span_id
    )
    assert not trace.get_current_span(tl.extract(None)).get_span_context().is_valid


def test_a_traceparent_alone_travels_as_its_three_numbers(memory, finished):
    remote = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-03"}
    with tl.resume(remote, "sender"):
        h = tl.capture()
    numbers = seam.compact(h)
    sc = h.span_context
    assert numbers == (sc.trace_id, sc.span_id, 0x03)
    back = seam.from_compact(*numbers)
    want = tl.Handoff.from_carrier(h.carrier)  # what a W3C extract of the same traceparent gives
    assert back.span_context == want.span_context
    assert back.span_context.is_remote and back.span_context.trace_flags == 0x03
    assert back.carrier == h.carrier
    with tl.resume(back, "receiver"):
        pass
    spans = {s.name: s for s in finished(memory)}
    assert spans["receiver"].parent.span_id == spans["sender"].context.span_id


def test_more_than_a_traceparent_is_not_compact(memory):
    with tl.resume(
        {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "tracestate": "k=v"}
    ):
        assert seam.compact(tl.capture()) is None
    with tl.span("with baggage"):
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            assert seam.compact(tl.capture()) is None
        finally:
            context.detach(token)
    assert seam.compact(tl.capture()) is None  # nothing to carry
    assert seam.compact(tl.Handoff.from_carrier({"traceparent": "00-zz-yy-01"})) is None


def test_numbers_no_traceparent_could_hold_give_an_empty_handoff():
    for numbers in ((0, 1, 1), (1, 0, 1), (1 << 128, 1, 1), (1, 1 << 64, 1)):
        assert not seam.from_compact(*numbers).span_context.is_valid
    assert seam.from_compact(1, 1, 0x81).span_context.trace_flags == 0x01  # as W3C extract has it
