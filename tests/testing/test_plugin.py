import subprocess
import sys
import textwrap

import pytest

import threadline as tl
from threadline.testing import CapturedSpan, Trace, TraceAssertionError, hex_ids

pytest_plugins = ["pytester"]


def span(name, span_id, parent=None, service="svc", trace_id="a" * 32):
    return CapturedSpan(
        name=name,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent,
        kind="INTERNAL",
        status="UNSET",
        status_message="",
        start_ns=int(span_id, 16),
        end_ns=int(span_id, 16) + 1,
        resource={"service.name": service},
    )


def test_fixture_captures_nested_spans(traces):
    with tl.span("checkout") as root:
        with tl.span("charge"):
            pass
        with tl.span("ship"):
            pass
    t = traces.one()
    t.assert_connected()
    trace_id, root_id = hex_ids(root)
    assert t.trace_id == trace_id
    assert t.root.span_id == root_id
    assert [s.name for s in t.children(t.root)] == ["charge", "ship"]
    assert t.find("charge").parent_id == root_id
    assert t.services() == {"tests"}
    assert "checkout" in t.tree() and "  charge" in t.tree()


def test_traces_groups_by_trace_and_one_lists_what_was_captured(traces):
    with tl.span("first"):
        pass
    with tl.span("second"):
        pass
    assert [t.root.name for t in traces.traces()] == ["first", "second"]
    with pytest.raises(TraceAssertionError, match="expected exactly one trace, captured 2") as err:
        traces.one()
    assert "first" in str(err.value) and "second" in str(err.value)


def test_assert_connected_names_the_orphan_its_service_and_missing_parent():
    t = Trace(
        "a" * 32,
        [
            span("root", "0000000000000001"),
            span("lost", "0000000000000003", "00000000000000ff", "billing"),
        ],
    )
    with pytest.raises(TraceAssertionError) as err:
        t.assert_connected()
    message = str(err.value)
    assert "orphan span 'lost' (service billing, span 0000000000000003)" in message
    assert "parent 00000000000000ff is missing" in message
    assert "(missing parent 00000000000000ff)" in message  # the tree in the message marks it
    assert "exactly one root" not in message  # there is one root: no contradictory complaint


def test_assert_connected_rejects_two_roots():
    t = Trace("a" * 32, [span("r1", "0000000000000001"), span("r2", "0000000000000002")])
    with pytest.raises(
        TraceAssertionError, match=r"expected exactly one root, found 2 \('r1', 'r2'\)"
    ):
        t.assert_connected()


def test_find_fails_clearly_and_links_are_listed(traces):
    with tl.span("producer") as p:
        h = tl.capture()
    with tl.resume(h, "consumer", relation="link"):
        pass
    consumer_trace = next(t for t in traces.traces() if t.spans[0].name == "consumer")
    ((s, linked_trace, linked_span),) = consumer_trace.links
    assert (linked_trace, linked_span) == hex_ids(p)
    assert s.name == "consumer"
    with pytest.raises(TraceAssertionError, match="expected one span named 'nope', found 0"):
        consumer_trace.find("nope")


def test_spans_from_another_process_reach_the_fixture(traces):
    code = textwrap.dedent(
        f"""
        import sys, threadline as tl
        tl.configure("child-svc", endpoint={traces.endpoint!r})
        with tl.resume(tl.Handoff.from_json(sys.argv[1]), "in child", kind="consumer"):
            with tl.span("child work"):
                pass
        tl.shutdown()
        """
    )
    with tl.span("parent") as parent:
        subprocess.run([sys.executable, "-c", code, tl.capture().to_json()], check=True, timeout=60)
    traces.wait_for(3)
    t = traces.one()
    t.assert_connected()
    assert t.services() == {"tests", "child-svc"}
    child = t.find("in child")
    assert child.parent_id == hex_ids(parent)[1]
    assert child.kind == "CONSUMER"
    assert t.find("child work").parent_id == child.span_id
    assert child.pid != t.root.pid


def test_wait_for_times_out_with_what_it_has(traces):
    with tl.span("only"):
        pass
    with pytest.raises(TraceAssertionError, match="waiting for spans; captured 1"):
        traces.wait_for(2, timeout=0.2)


def test_plugin_is_registered_through_the_entry_point(pytester):
    pytester.makepyfile(
        """
        import threadline as tl

        def test_inner(traces):
            with tl.span("x"):
                pass
            assert traces.one().root.name == "x"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
