"""Long-lived workers: a process started at boot, outside any trace, lives as long as its
process and is not shown as a span that never ended while it is healthy; a child that renames
its service reports its run span under the new name."""

from __future__ import annotations

import multiprocessing

import pytest
from long_lived_work import actor, renamed
from opentelemetry import trace

import threadline as tl
from threadline.boundaries.mailboxes import Mailbox
from threadline.testing import hex_ids

WAIT = 60


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_actor_started_at_boot_is_not_incomplete_while_it_runs(traces, method):
    ctx = multiprocessing.get_context(method)
    inbox, outbox = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=actor, args=(inbox, outbox))
    worker.start()  # at boot: no trace is current
    try:
        requests, replies = Mailbox(inbox, "requests"), Mailbox(outbox, "replies")
        with tl.span("checkout") as root:
            requests.send("tea")
            with replies.receive(timeout=WAIT) as reply:
                assert reply == "TEA"
        traces.wait_for(lambda spans: any(s.name == "handle" for s in spans), timeout=WAIT)
        # The actor's message spans are in the sender's trace...
        trace = traces.trace(hex_ids(root)[0])
        trace.assert_connected()
        handle = trace.find("handle")
        assert handle.pid == worker.pid
        assert trace.find("process requests").span_id == handle.parent_id
        # ... and while it lives, nothing of it is pending: its run span was not announced.
        assert traces.incomplete == []
        assert traces.find_all("run actor") == []
    finally:
        inbox.put(None)
        worker.join(WAIT)
    assert worker.exitcode == 0
    traces.wait_for(lambda spans: any(s.name == "run actor" for s in spans), timeout=WAIT)
    (run,) = traces.find_all("run actor")  # exported whole when the process ended
    assert (run.pending, run.parent_id, run.pid) == (False, None, worker.pid)
    assert traces.incomplete == []


def test_a_process_started_within_a_trace_is_still_announced(traces):
    ctx = multiprocessing.get_context("fork")
    inbox, outbox = ctx.Queue(), ctx.Queue()
    with tl.span("boot") as boot:
        worker = ctx.Process(target=actor, args=(inbox, outbox))
        worker.start()
    try:
        traces.wait_for(lambda spans: any(s.name == "run actor" for s in spans), timeout=WAIT)
        (announced,) = traces.find_all("run actor")
        assert (announced.pending, announced.parent_id) == (True, hex_ids(boot)[1])
    finally:
        inbox.put(None)
        worker.join(WAIT)
    traces.wait_for(lambda spans: not traces.incomplete, timeout=WAIT)
    (run,) = traces.find_all("run actor")
    assert (run.pending, run.parent_id) == (False, hex_ids(boot)[1])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_run_span_takes_the_name_the_child_renamed_itself_to(traces, method):
    ctx = multiprocessing.get_context(method)
    with tl.span("restock") as root:
        worker = ctx.Process(target=renamed, args=("inventory",))
        worker.start()
        worker.join(WAIT)
    assert worker.exitcode == 0
    traces.wait_for(
        lambda spans: any(s.name == "run renamed" and not s.pending for s in spans), timeout=WAIT
    )
    trace = traces.trace(hex_ids(root)[0])
    trace.assert_connected()
    run, count = trace.find("run renamed"), trace.find("stock count")
    assert (run.service, run.parent_id, run.pending) == ("inventory", hex_ids(root)[1], False)
    assert (count.service, count.parent_id) == ("inventory", run.span_id)
    assert trace.root.service == "tests"


def test_a_worker_started_under_an_unsampled_context_records_no_run_span(traces):
    # As docs/processes.md shows, and the demo does.
    ctx = multiprocessing.get_context("spawn")
    inbox, outbox = ctx.Queue(), ctx.Queue()
    unsampled = trace.SpanContext(trace_id=1, span_id=1, is_remote=False)
    with trace.use_span(trace.NonRecordingSpan(unsampled)):
        worker = ctx.Process(target=actor, args=(inbox, outbox))
        worker.start()
    with tl.span("checkout") as root:
        Mailbox(inbox, "requests").send("tea")
        with Mailbox(outbox, "replies").receive(timeout=WAIT) as reply:
            assert reply == "TEA"
    inbox.put(None)
    worker.join(WAIT)
    assert worker.exitcode == 0
    traces.wait_for(lambda spans: any(s.name == "handle" for s in spans), timeout=WAIT)
    traces.settle()  # the run span, had it been recorded, is exported by now
    assert traces.find_all("run actor") == []
    trace_ = traces.one()
    trace_.assert_connected()
    assert trace_.trace_id == hex_ids(root)[0]
    assert trace_.find("handle").pid == worker.pid
