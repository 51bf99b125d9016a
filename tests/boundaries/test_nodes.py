"""Nodes: managers served by their own OS processes. A call is a CLIENT span in the caller and a
SERVER span in the node, in one trace, through as many nodes as the call goes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest
from process_work import NodeA, NodeB

import threadline as tl
from threadline import seam
from threadline.boundaries import nodes
from threadline.boundaries.processes import rename
from threadline.testing import hex_ids

WAIT = 60
LOCAL = ("127.0.0.1", 0)


@pytest.fixture
def node_b(traces):
    node = NodeB(address=LOCAL, authkey=b"b-key")
    node.start(rename, ("node-b",))
    yield node
    node.shutdown()


def node_spans(traces, trace_id: str, count: int):
    me = os.getpid()

    def done(spans):
        return [s for s in spans if s.trace_id == trace_id and s.pid != me and not s.pending]

    traces.wait_for(lambda spans: len(done(spans)) >= count, timeout=WAIT)
    return done(traces.spans)


def test_a_call_through_two_nodes_is_one_connected_trace(traces, node_b):
    a = NodeA(address=LOCAL, authkey=b"a-key")
    a.start(rename, ("node-a",))
    try:
        with tl.span("client") as root:
            relay = a.Relay(node_b.address, b"b-key")
            assert relay.add(2) == 2
            assert relay.add(3) == 5
            with pytest.raises(ValueError, match="only up"):
                relay.add(-1)
    finally:
        a.shutdown()
        node_b.shutdown()
    trace_id, root_id = hex_ids(root)
    node_spans(traces, trace_id, 2 + 3 * 3 + 3)  # creates and adds served, counted, relayed
    trace = traces.trace(trace_id)
    trace.assert_connected()
    assert not [s for s in trace.spans if s.pending]
    shape = sorted((s.name, s.kind, s.service) for s in trace.spans)
    assert shape == sorted(
        [("client", "INTERNAL", "tests")]
        + [("Relay/create", "CLIENT", "tests"), ("Relay/create", "SERVER", "node-a")]
        + [("Counter/create", "CLIENT", "node-a"), ("Counter/create", "SERVER", "node-b")]
        + [("Relay/add", "CLIENT", "tests"), ("Relay/add", "SERVER", "node-a")] * 3
        + [("Counter/add", "CLIENT", "node-a"), ("Counter/add", "SERVER", "node-b")] * 3
        + [("count", "INTERNAL", "node-b")] * 3
    )
    assert len({s.pid for s in trace.spans}) == 3
    by_id = {s.span_id: s for s in trace.spans}
    for server in (s for s in trace.spans if s.kind == "SERVER"):
        client = by_id[server.parent_id]
        assert (client.kind, client.name) == ("CLIENT", server.name)
        assert client.pid != server.pid
        assert server.attributes["rpc.system"] == "multiprocessing"
    for client in (s for s in trace.spans if s.name.startswith("Relay/")):
        if client.kind == "CLIENT":
            assert client.parent_id == root_id
            assert client.attributes["server.port"] == a.address[1]
    failed = [
        s
        for s in trace.spans
        if s.name in ("Relay/add", "Counter/add", "count") and s.status == "ERROR"
    ]
    assert len(failed) == 5  # the error travels back through every hop
    (count,) = [s for s in trace.find_all("count") if s.status == "ERROR"]
    assert count.event("exception")["exception.message"] == "only up"


def test_an_untraced_client_is_served_in_a_trace_of_its_own(traces, node_b):
    host, port = node_b.address
    client = textwrap.dedent(f"""
        from multiprocessing.managers import BaseManager
        class NodeB(BaseManager):
            pass
        NodeB.register("Counter")
        node = NodeB(address=({host!r}, {port}), authkey=b"b-key")
        node.connect()
        print(node.Counter().add(4))
    """)
    out = subprocess.run(
        [sys.executable, "-c", client], capture_output=True, text=True, timeout=WAIT
    )
    assert (out.returncode, out.stdout.strip()) == (0, "4"), out.stderr
    node_b.shutdown()
    served = {s.name: s for s in traces.wait_for(3, timeout=WAIT) if s.kind == "SERVER"}
    assert set(served) == {"Counter/create", "Counter/add"}
    assert all(s.parent_id is None and s.service == "node-b" for s in served.values())
    count = traces.trace(served["Counter/add"].trace_id).find("count")
    assert count.parent_id == served["Counter/add"].span_id


def test_the_authkey_is_respected(traces, node_b):
    intruder = NodeB(address=node_b.address, authkey=b"wrong")
    with pytest.raises(multiprocessing.AuthenticationError):
        intruder.connect()


def test_a_sampled_out_call_records_nothing_on_the_node(traces):
    try:
        tl.configure("tests", exporter="none", sample_ratio=0.0)
        # The node would sample everything on its own: the caller's decision must win.
        seam.children({"exporter": "otlp", "endpoint": traces.endpoint, "sample_ratio": 1.0})
        node = NodeB(address=LOCAL, authkey=b"b-key")
        node.start()
        try:
            with tl.span("unsampled") as root:
                assert not root.is_recording()
                counter = node.Counter()
                assert counter.add(1) == 1
            # The control: the same node, the same object, a sampled caller.
            tl.configure("tests", exporter="none", sample_ratio=1.0)
            with tl.span("sampled") as sampled:
                assert counter.add(2) == 3
        finally:
            node.shutdown()
        assert node._process.exitcode == 0  # flushed and gone
        trace_id = hex_ids(sampled)[0]
        served = node_spans(traces, trace_id, 2)
        assert sorted((s.name, s.kind) for s in served) == [
            ("Counter/add", "SERVER"),
            ("count", "INTERNAL"),
        ]
        from_node = [s for s in traces.spans if s.pid == node._process.pid]
        assert {s.trace_id for s in from_node} == {trace_id}  # nothing of the unsampled call
        assert len(from_node) == 2
    finally:
        tl.configure("tests", exporter="none")


# A node whose Python has no threadline (nor OpenTelemetry): the system interpreter, isolated.
PLAIN_PYTHON = "/usr/bin/python3"
PLAIN_NODE = """
import importlib.util
from multiprocessing.managers import BaseManager

class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

class Node(BaseManager):
    pass

Node.register("Counter", Counter)
server = Node(address=("127.0.0.1", 0), authkey=b"plain-key").get_server()
print(importlib.util.find_spec("threadline") is None, server.address[1], flush=True)
server.serve_forever()
"""


@pytest.mark.skipif(not os.path.exists(PLAIN_PYTHON), reason="needs the system python3")
def test_a_node_without_threadline_is_called_plainly(traces):
    node = subprocess.Popen(
        [PLAIN_PYTHON, "-I", "-c", PLAIN_NODE], stdout=subprocess.PIPE, text=True
    )
    try:
        without, port = node.stdout.readline().split()
        assert without == "True"  # the node cannot read a carried context
        client = NodeB(address=("127.0.0.1", int(port)), authkey=b"plain-key")
        client.connect()
        with tl.span("client") as root:
            counter = client.Counter()
            assert counter.add(4) == 4
            assert counter.add(1) == 5
    finally:
        node.kill()
        node.wait(WAIT)
    assert nodes._understood[("127.0.0.1", int(port))] is False  # asked once, remembered
    trace = traces.one()
    trace.assert_connected()
    root_id = hex_ids(root)[1]
    calls = [s for s in trace.spans if s.kind == "CLIENT"]
    assert [(s.name, s.parent_id, s.status) for s in calls] == [
        ("Counter/create", root_id, "UNSET"),
        ("Counter/add", root_id, "UNSET"),
        ("Counter/add", root_id, "UNSET"),
    ]
    assert {s.attributes["server.port"] for s in calls} == {int(port)}
    assert len(trace) == 4  # nothing else: the node made no spans
