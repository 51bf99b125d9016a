"""The Capture API as the README's recipes use it: spans fetched back from a server are kept
once, find_all takes a predicate, and where child processes export is an explicit switch."""

from __future__ import annotations

import multiprocessing

import pytest

import threadline as tl
from threadline.server.client import Client
from threadline.server.serving import start
from threadline.testing import Capture, CapturedSpan, hex_ids
from threadline.testing.collector import Collector

WAIT = 60


def test_spans_fetched_from_a_server_are_kept_once(traces):
    # The integration-test recipe: the test exports to a server and adds the trace back from it.
    with start() as server:
        tl.configure("checkout-tests", endpoint=server.urls.otlp_http)
        try:
            with tl.span("test checkout") as root:
                with tl.span("charge") as charge:
                    pass
            tl.flush()
            trace_id, root_id = hex_ids(root)
            fetched = Client(server.urls.api).captured(trace_id, min_spans=2)
        finally:
            tl.configure("tests", exporter="none")
    assert sorted(s.name for s in fetched) == ["charge", "test checkout"]
    assert len(traces.spans) == 2  # captured here as the spans ended
    traces.add(fetched)
    trace = traces.trace(trace_id)
    assert len(trace) == 2
    trace.assert_connected()
    assert trace.root.span_id == root_id
    assert trace.find("charge").span_id == hex_ids(charge)[1]
    assert trace.find("charge").parent_id == root_id


def test_a_span_added_twice_is_kept_as_it_first_arrived():
    first = CapturedSpan("work", "ab" * 16, "01" * 8, None, "INTERNAL", "OK", "", 1, 5)
    again = CapturedSpan("work", "ab" * 16, "01" * 8, None, "INTERNAL", "UNSET", "", 1, 9)
    capture = Capture()
    capture.add([first])
    capture.add([again, again])
    assert [(s.status, s.end_ns) for s in capture.spans] == [("OK", 5)]


def test_find_all_takes_a_name_or_a_predicate(traces):
    for amount in (5, 50, 500):
        with tl.span("charge", attributes={"amount": amount}):
            pass
    with tl.span("ship"):
        pass
    big = traces.find_all(lambda s: s.attributes.get("amount", 0) > 10)
    assert [s.attributes["amount"] for s in big] == [50, 500]
    assert [s.name for s in traces.find_all("ship")] == ["ship"]
    assert traces.find_all(lambda s: s.name == "nothing") == []
    with pytest.raises(TypeError, match="takes a span name or a predicate, not int"):
        traces.find_all(3)


def _child_work() -> None:
    with tl.span("in child"):
        pass


def _run_child() -> int:
    p = multiprocessing.get_context("spawn").Process(target=_child_work)
    p.start()
    p.join(WAIT)
    assert p.exitcode == 0
    return p.pid or 0


def test_children_export_to_the_capture_by_default(traces):
    pid = _run_child()
    traces.wait_for(lambda spans: any(s.name == "in child" for s in spans))
    (child,) = traces.find_all("in child")
    assert child.pid == pid


def test_children_follow_the_tests_own_endpoint_unless_switched(traces):
    received: list[CapturedSpan] = []
    elsewhere = Collector(received.extend)
    elsewhere.start()
    try:
        tl.configure("tests", endpoint=elsewhere.endpoint)
        own_pid = _run_child()  # redirect_children is None: the test's own endpoint wins
        traces.redirect_children = True
        redirected_pid = _run_child()
        tl.flush()
        traces.wait_for(lambda spans: any(s.pid == redirected_pid for s in spans))
    finally:
        tl.configure("tests", exporter="none")
        elsewhere.stop()
    assert [(s.name, s.pid) for s in received if s.name == "in child"] == [("in child", own_pid)]
    assert [s.pid for s in traces.find_all("in child")] == [redirected_pid]


def test_children_can_be_told_to_ignore_the_capture(traces):
    received: list[CapturedSpan] = []
    elsewhere = Collector(received.extend)
    elsewhere.start()
    traces.redirect_children = False
    try:
        tl.configure("tests", exporter="none")
        pid = _run_child()  # configured to export nowhere, and told not to redirect
        tl.configure("tests", endpoint=elsewhere.endpoint)
        followed = _run_child()
        tl.flush()
    finally:
        tl.configure("tests", exporter="none")
        elsewhere.stop()
    assert traces.find_all("in child") == []
    assert [s.pid for s in received if s.name == "in child"] == [followed]
    assert pid != followed
