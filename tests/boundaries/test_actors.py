"""Actors: call / reply with a timeout (the reply is the call's child) and cast, between threads
and between processes, over real queues."""

from __future__ import annotations

import multiprocessing
import queue
import threading

import pytest
from long_lived_work import counter_actor

import threadline as tl
from threadline.boundaries.actors import Actor, ActorError, CallTimeout, serve
from threadline.testing import hex_ids

WAIT = 60


@pytest.fixture
def counter():
    """A counter actor in a thread: (handle, thread)."""
    requests, replies = queue.Queue(), queue.Queue()
    gate = threading.Event()
    total = {"n": 0}

    def handle(message):
        if message[0] == "add":
            with tl.span("add", attributes={"n": message[1]}):
                total["n"] += message[1]
            return total["n"]
        if message[0] == "hold":  # wait for the test before answering
            gate.wait(WAIT)
            return "held"
        if message[0] == "fail":
            raise ValueError("no such account")
        return None

    thread = threading.Thread(
        target=serve, args=(requests, replies, handle), kwargs={"name": "counter"}
    )
    thread.start()
    handle_ = Actor(requests, replies, "counter")
    handle_.gate = gate
    yield handle_
    gate.set()
    handle_.stop()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_a_call_and_its_reply_are_one_trace(traces, counter):
    with tl.span("checkout") as root:
        assert counter.call(("add", 2)) == 2
    trace = traces.trace(hex_ids(root)[0])
    trace.assert_connected()
    call = trace.find("call counter")
    send = trace.find("send counter")
    process = trace.find("process counter")
    add = trace.find("add")
    reply_send = trace.find("send counter.reply")
    reply = trace.find("process counter.reply")
    assert (call.kind, call.parent_id) == ("CLIENT", hex_ids(root)[1])
    assert (send.kind, send.parent_id) == ("PRODUCER", call.span_id)
    assert (process.kind, process.parent_id) == ("CONSUMER", send.span_id)
    assert add.parent_id == process.span_id
    assert (reply_send.kind, reply_send.parent_id) == ("PRODUCER", process.span_id)
    # the reply is the call's child, linked to the actor's send
    assert (reply.kind, reply.parent_id) == ("CONSUMER", call.span_id)
    assert [(t, s) for t, s, _ in reply.links] == [(trace.trace_id, reply_send.span_id)]
    assert reply.attributes["messaging.destination.name"] == "counter.reply"
    assert len(trace) == 7


def test_a_cast_is_a_send_with_no_reply(traces, counter):
    with tl.span("reset") as root:
        counter.cast(("add", 5))
    assert counter.call(("add", 1)) == 6  # the cast was handled first
    trace = traces.trace(hex_ids(root)[0])
    trace.assert_connected()
    assert sorted(s.name for s in trace) == ["add", "process counter", "reset", "send counter"]
    assert trace.find("process counter").parent_id == trace.find("send counter").span_id


def test_a_call_times_out_and_its_late_reply_is_dropped(traces, counter):
    with pytest.raises(CallTimeout, match=r"no reply from actor 'counter' within 0.1 s"):
        counter.call(("hold",), timeout=0.1)
    (call,) = traces.find_all("call counter")
    assert call.status == "ERROR" and "within 0.1 s" in call.status_message
    counter.gate.set()  # the held call is answered now, after its caller gave up
    assert counter.call(("add", 3)) == 3  # the late "held" is not taken for this reply
    assert counter.late_replies == 1


def test_a_handler_that_raises_fails_the_call_and_the_actor_goes_on(traces, counter):
    with pytest.raises(ActorError, match=r"actor 'counter' raised ValueError: no such account"):
        counter.call(("fail",))
    assert counter.call(("add", 1)) == 1
    failed = traces.find_all("process counter")[0]
    assert (failed.status, failed.status_message) == ("ERROR", "ValueError: no such account")
    assert failed.event("exception")["exception.type"] == "ValueError"


def test_callers_in_several_threads_share_one_handle(traces, counter):
    results: dict[int, list] = {0: [], 1: []}

    def caller(k):
        for _ in range(20):
            results[k].append(counter.call(("add", 0)))

    threads = [threading.Thread(target=caller, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert results == {0: [0] * 20, 1: [0] * 20}
    assert counter.late_replies == 0
    for call in traces.find_all("call counter"):
        trace = traces.trace(call.trace_id)
        trace.assert_connected()
        assert trace.find("process counter.reply").parent_id == call.span_id


def test_an_actor_in_another_process(traces):
    ctx = multiprocessing.get_context("spawn")
    requests, replies = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=counter_actor, args=(requests, replies))
    worker.start()  # at boot: a long-lived worker
    counter = Actor(requests, replies, "counter")
    try:
        with tl.span("checkout") as root:
            assert counter.call(("add", 4), timeout=WAIT) == 4
            counter.cast(("add", 1))
            assert counter.call(("add", 1), timeout=WAIT) == 6
            with pytest.raises(ActorError, match="raised ValueError: no such account"):
                counter.call(("fail",), timeout=WAIT)
    finally:
        counter.stop()
        worker.join(WAIT)
    assert worker.exitcode == 0
    traces.wait_for(lambda spans: len([s for s in spans if s.name == "add"]) == 3, timeout=WAIT)
    trace = traces.trace(hex_ids(root)[0])
    trace.assert_connected()
    processes = trace.find_all("process counter")
    assert len(processes) == 4 and {s.pid for s in processes} == {worker.pid}
    calls = trace.find_all("call counter")
    replies_ = trace.find_all("process counter.reply")
    assert sorted(r.parent_id for r in replies_) == sorted(c.span_id for c in calls)
    assert {r.pid for r in replies_} == {trace.root.pid}
