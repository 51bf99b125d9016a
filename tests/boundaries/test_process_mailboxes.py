"""Mailboxes between processes: multiprocessing queues, Pipe connections and managers' queue
proxies carry the sender's context; the receiver's CONSUMER span continues (or links to) the
PRODUCER span, in another process."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from process_work import consume, produce

import threadline as tl
from threadline.boundaries.mailboxes import Mailbox
from threadline.testing import hex_ids

WAIT = 60
METHODS = ["fork", "spawn", "forkserver"]
KINDS = ["Queue", "SimpleQueue", "JoinableQueue", "Pipe", "manager Queue", "manager JoinableQueue"]


def ends(ctx, kind: str):
    """(this process's end, the child's end, a manager to shut down or None)."""
    if kind == "Pipe":
        mine, theirs = ctx.Pipe()
        return mine, theirs, None
    if kind.startswith("manager "):
        manager = ctx.Manager()
        q = getattr(manager, kind.removeprefix("manager "))()
        return q, q, manager
    q = getattr(ctx, kind)()
    return q, q, None


def mailbox_spans(trace, name: str = "jobs"):
    sends = [s for s in trace.spans if s.name == f"send {name}"]
    received = [s for s in trace.spans if s.name == f"process {name}"]
    return sends, received


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_parent_sends_child_receives(traces, kind, method):
    ctx = multiprocessing.get_context(method)
    mine, theirs, manager = ends(ctx, kind)
    try:
        child = ctx.Process(target=consume, args=(theirs, "jobs", 2))
        child.start()
        box = Mailbox(mine, "jobs")
        with tl.span("producer") as root:
            box.send(1)
            box.send(2)
        if kind.endswith("JoinableQueue"):
            mine.join()  # task_done() in the child releases it
        child.join(WAIT)
        assert child.exitcode == 0
    finally:
        if manager is not None:
            manager.shutdown()
    trace_id, root_id = hex_ids(root)
    me = os.getpid()
    traces.wait_for(
        lambda spans: (
            sum(s.trace_id == trace_id and s.name == "handle" and not s.pending for s in spans) == 2
        ),
        timeout=WAIT,
    )
    trace = traces.trace(trace_id)
    trace.assert_connected()
    sends, received = mailbox_spans(trace)
    assert [(s.kind, s.parent_id, s.pid) for s in sends] == [("PRODUCER", root_id, me)] * 2
    assert [(s.kind, s.pid) for s in received] == [("CONSUMER", child.pid)] * 2
    assert [r.parent_id for r in received] == [s.span_id for s in sends]  # in order, each its own
    handled = [trace.children(r) for r in received]
    assert [[(h.name, h.attributes["item"]) for h in hs] for hs in handled] == [
        [("handle", 1)],
        [("handle", 2)],
    ]
    if kind.startswith("manager "):  # the puts are calls to the manager's node, inside the sends
        typeid = kind.removeprefix("manager ")
        puts = [s for s in trace.spans if s.name == f"{typeid}/put"]
        assert sorted(s.kind for s in puts) == ["CLIENT", "CLIENT", "SERVER", "SERVER"]
    else:
        assert len(trace) == 1 + 2 + 2 + 2


def test_child_sends_parent_receives_through_spawn(traces):
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    child = ctx.Process(target=produce, args=(q, "results", ["a", "b"]))
    with tl.span("parent"):
        child.start()
    box = Mailbox(q, "results")
    got = []
    for _ in range(2):
        with box.receive(timeout=WAIT) as item:
            got.append(item)
    child.join(WAIT)
    assert (child.exitcode, got) == (0, ["a", "b"])
    traces.wait_for(
        lambda spans: len([s for s in spans if s.name == "send results"]) == 2, timeout=WAIT
    )
    trace = traces.trace(traces.find_all("process results")[0].trace_id)
    trace.assert_connected()
    sends, processed = mailbox_spans(trace, "results")
    assert [s.pid for s in sends] == [child.pid] * 2
    assert [s.pid for s in processed] == [os.getpid()] * 2
    assert [p.parent_id for p in processed] == [s.span_id for s in sends]
    assert trace.root.name == "parent"


def test_link_on_request(traces):
    ctx = multiprocessing.get_context("fork")
    q = ctx.SimpleQueue()
    child = ctx.Process(target=consume, args=(q, "jobs", 1, "link"))
    child.start()
    with tl.span("producer") as root:
        Mailbox(q, "jobs").send(7)
    child.join(WAIT)
    assert child.exitcode == 0
    (processed,) = [
        s
        for s in traces.wait_for(lambda spans: any(s.name == "handle" for s in spans), timeout=WAIT)
        if s.name == "process jobs"
    ]
    sends, _ = mailbox_spans(traces.trace(hex_ids(root)[0]))
    assert processed.trace_id != hex_ids(root)[0]
    assert processed.parent_id is None
    assert [(t, s) for t, s, _ in processed.links] == [(sends[0].trace_id, sends[0].span_id)]


@pytest.mark.parametrize("kind", ["Queue", "SimpleQueue", "Pipe", "manager Queue"])
def test_a_batch_received_from_another_process(traces, kind):
    """receive_batch works on every process mailbox, a Pipe end and a SimpleQueue (whose get
    takes no timeout) included: one CONSUMER span linked to each send."""
    ctx = multiprocessing.get_context("fork")
    mine, theirs, manager = ends(ctx, kind)
    try:
        child = ctx.Process(target=produce, args=(theirs, "results", ["a", "b", "c"]))
        child.start()
        child.join(WAIT)
        assert child.exitcode == 0
        box = Mailbox(mine, "results")
        with tl.span("collect") as collect:
            with box.receive_batch(10, timeout=0.5, wait=WAIT) as items:
                assert items == ["a", "b", "c"]
            with box.receive_batch(10, timeout=0.05) as items:
                assert items == []  # nothing more came in time: no span
    finally:
        if manager is not None:
            manager.shutdown()
    traces.wait_for(
        lambda spans: len([s for s in spans if s.name == "send results"]) == 3, timeout=WAIT
    )
    sends = traces.find_all("send results")
    (batch,) = traces.find_all("process results")
    assert [s.pid for s in sends] == [child.pid] * 3
    assert (batch.kind, batch.parent_id) == ("CONSUMER", hex_ids(collect)[1])
    assert batch.links == [(s.trace_id, s.span_id, {}) for s in sends]
    assert batch.attributes["messaging.batch.message_count"] == 3
