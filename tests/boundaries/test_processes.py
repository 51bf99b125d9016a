"""Child processes across start methods: every span a child ends is delivered, in the parent's
trace, under the right parent; killed work stays visible as incomplete spans."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from process_work import current_trace_id, hang, leave, pair, recording, remember, task

import threadline as tl
from threadline import _config
from threadline._collector import Collector
from threadline.boundaries import processes
from threadline.testing import hex_ids

METHODS = ["fork", "spawn", "forkserver"]
WAIT = 60  # seconds; spawn children start slowly on a busy machine


def delivered(traces, parent, runs: int, name: str = "run task", errors: int = 0):
    """Wait for the children's spans of `parent`'s trace and check them: exactly `runs` task
    spans (each with one "inner" child), all children of `parent`, errors as expected."""
    trace_id, parent_id = hex_ids(parent)
    me = os.getpid()

    def ours(spans):
        return [s for s in spans if s.trace_id == trace_id and s.pid != me and not s.pending]

    traces.wait_for(lambda spans: len(ours(spans)) >= 2 * runs, timeout=WAIT)
    trace = traces.trace(trace_id)
    trace.assert_connected()
    children = ours(trace.spans)
    assert len(children) == 2 * runs, trace.tree()
    assert not [s for s in trace.spans if s.pending], trace.tree()
    tasks = [s for s in children if s.name.startswith("run ")]
    assert [s.name for s in tasks] == [name] * runs
    for s in tasks:
        assert s.parent_id == parent_id
        assert s.service == "tests"
        assert s.resource["process.parent_pid"] == me
        inner = trace.children(s)
        assert [(c.name, c.pid) for c in inner] == [("inner", s.pid)]
    assert sum(s.status == "ERROR" for s in tasks) == errors
    return tasks


# -- the matrix: {fork, spawn, forkserver} x {Process, Pool, ProcessPoolExecutor} x
#    {return, os._exit, one task per child, exception} -----------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_process(traces, method):
    ctx = multiprocessing.get_context(method)
    outcomes = {}
    for mode in ("return", "exit", "raise"):
        with tl.span(f"start {mode}") as parent:
            p = ctx.Process(target=task, args=(mode,))
            p.start()
            p.join(WAIT)
        outcomes[mode] = (parent, p.exitcode)
    assert {m: code for m, (_, code) in outcomes.items()} == {"return": 0, "exit": 0, "raise": 1}
    delivered(traces, outcomes["return"][0], 1)
    (exited,) = delivered(traces, outcomes["exit"][0], 1)
    assert exited.attributes["process.exit_code"] == 0
    (failed,) = delivered(traces, outcomes["raise"][0], 1, errors=1)
    assert failed.event("exception")["exception.type"] == "ValueError"
    # A process is one task per child: two of them, each delivering its own spans.
    with tl.span("two processes") as parent:
        procs = [ctx.Process(target=task, args=("return", i)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(WAIT)
    assert len({s.pid for s in delivered(traces, parent, 2)}) == 2


@pytest.mark.parametrize("method", METHODS)
def test_pool(traces, method):
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        with tl.span("every pool method") as returns:
            assert pool.apply(task, ("return", 1)) == 2
            assert pool.apply_async(task, ("return", 2)).get(WAIT) == 4
            assert pool.map(task, ["return"]) == [2]
            assert pool.map_async(task, ["return"]).get(WAIT) == [2]
            assert list(pool.imap(task, ["return"])) == [2]
            assert list(pool.imap_unordered(task, ["return"])) == [2]
        with tl.span("starmap") as starmap:
            assert pool.starmap(pair, [(1, 2)]) == [6]
        with tl.span("raise") as raises:
            with pytest.raises(ValueError, match="boom 1"):
                pool.apply(task, ("raise",))
        with tl.span("exit") as exits:
            pool.apply_async(task, ("exit",))  # the worker dies; the pool replaces it
        delivered(traces, exits, 1)
    # Leaving the block terminates the pool (SIGTERM): its workers flush before they go.
    delivered(traces, returns, 6)
    delivered(traces, starmap, 1, name="run pair")
    (failed,) = delivered(traces, raises, 1, errors=1)
    assert failed.status_message == "ValueError: boom 1"
    with tl.span("one task per child") as parent:
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            assert pool.map(task, ["return"] * 3, chunksize=1) == [2, 2, 2]
            pool.close()
            pool.join()
    assert len({s.pid for s in delivered(traces, parent, 3)}) == 3


@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor(traces, method):
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        with tl.span("submit and map") as returns:
            assert ex.submit(task, "return", 1).result(WAIT) == 2
            assert list(ex.map(task, ["return", "return"], [1, 2])) == [2, 4]
        with tl.span("raise") as raises:
            with pytest.raises(ValueError, match="boom 1"):
                ex.submit(task, "raise").result(WAIT)
    delivered(traces, returns, 3)
    delivered(traces, raises, 1, errors=1)
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        with tl.span("exit") as exits:
            with pytest.raises(BrokenProcessPool):
                ex.submit(task, "exit").result(WAIT)
    delivered(traces, exits, 1)
    if method == "fork":
        with pytest.raises(ValueError, match="incompatible"):  # the standard library's rule
            ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1)
        return
    with tl.span("one task per child") as parent:
        with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as ex:
            assert list(ex.map(task, ["return"] * 3)) == [2, 2, 2]
    assert len({s.pid for s in delivered(traces, parent, 3)}) == 3


@pytest.mark.parametrize("code", [0, 3])
def test_sys_exit_in_a_child(traces, code):
    with tl.span("parent") as parent:
        p = multiprocessing.get_context("fork").Process(target=leave, args=(code,))
        p.start()
        p.join(WAIT)
    assert p.exitcode == code
    (run,) = delivered(traces, parent, 1, name="run leave", errors=int(code != 0))
    assert run.attributes["process.exit_code"] == code


def test_a_reused_worker_keeps_no_context(traces):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        with tl.span("traced") as parent:
            first = ex.submit(current_trace_id).result(WAIT)
        second = ex.submit(current_trace_id).result(WAIT)  # sent from no trace: starts its own
    assert first == hex_ids(parent)[0]
    assert second != first
    runs = {s.trace_id: s for s in traces.find_all("run current_trace_id")}
    assert runs[first].parent_id == hex_ids(parent)[1]
    assert runs[second].parent_id is None


# -- killed work stays visible ------------------------------------------------------------------


def killed(traces, parent, pid: int, every_span: bool = False) -> None:
    """The killed task's span is in the trace as incomplete, and the parent says who died."""
    trace_id, parent_id = hex_ids(parent)
    trace = traces.trace(trace_id)
    trace.assert_connected()
    run = trace.find("run hang")
    assert (run.pending, run.parent_id, run.pid) == (True, parent_id, pid)
    assert run.end_ns == run.start_ns
    assert run.span_id in {s.span_id for s in traces.incomplete}
    if every_span:  # configure(announce=True): the span inside the task shows too
        inner = trace.find("inner")
        assert (inner.pending, inner.parent_id) == (True, run.span_id)
    else:
        assert trace.find_all("inner") == []  # tasks are announced, other spans when they end
    died = trace.find(parent.name).event("threadline.worker.died")
    assert died == {"process.pid": pid, "process.signal": "SIGKILL"}


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sigkilled_process(traces, method):
    every_span = method == "spawn"
    if every_span:
        _config.children({"exporter": "otlp", "endpoint": traces.endpoint, "announce": True})
    ctx = multiprocessing.get_context(method)
    ready = ctx.Event()
    with tl.span("parent") as parent:
        p = ctx.Process(target=hang, args=(ready,))
        p.start()
        assert ready.wait(WAIT)
        os.kill(p.pid, signal.SIGKILL)
        p.join(WAIT)
    assert p.exitcode == -signal.SIGKILL
    killed(traces, parent, p.pid, every_span)


def test_sigkilled_pool_worker(traces):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    with ctx.Pool(1, initializer=remember, initargs=(ready,)) as pool:
        with tl.span("parent") as parent:
            pool.apply_async(hang)
            assert ready.wait(WAIT)
            (announced,) = traces.find_all("run hang")  # the pending copy names the worker
            os.kill(announced.pid, signal.SIGKILL)
            # The single worker's replacement runs this, so the pool has seen the death.
            assert pool.apply(os.getpid) != announced.pid
    killed(traces, parent, announced.pid)


def test_a_pool_stopped_on_purpose_reports_no_death(traces):
    """Leaving `with Pool(...)` terminates idle workers (SIGTERM): the pool's own doing, not a
    death to report on the span that handed the work over."""
    with tl.span("parent") as parent:
        with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
            assert pool.map(task, ["return", "return"], chunksize=1) == [2, 2]
        # The workers that replaced the finished ones were idle when the pool terminated them.
    delivered(traces, parent, 2)
    (ended,) = traces.find_all("parent")
    assert ended.events == []


def test_sigkilled_executor_worker(traces):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=remember, initargs=(ready,)) as ex:
        with tl.span("parent") as parent:
            future = ex.submit(hang)
            assert ready.wait(WAIT)
            (announced,) = traces.find_all("run hang")
            os.kill(announced.pid, signal.SIGKILL)
            with pytest.raises(BrokenProcessPool):
                future.result(WAIT)
    killed(traces, parent, announced.pid)


# -- the export path across fork, sampling, drops --------------------------------------------


def test_fork_neither_duplicates_nor_loses_queued_spans(traces):
    received = []
    collector = Collector(received.extend)
    collector.start()
    try:
        tl.configure("tests", endpoint=collector.endpoint)  # batched: spans wait in the queue
        for i in range(5):
            with tl.span("queued", attributes={"i": i}):
                pass
        p = multiprocessing.get_context("fork").Process(target=task, args=("return",))
        p.start()
        p.join(WAIT)
        tl.flush()
        assert sorted(s.attributes["i"] for s in received) == [0, 1, 2, 3, 4]
        assert {s.pid for s in received} == {os.getpid()}
        from_child = [s for s in traces.spans if s.pid == p.pid]
        assert sorted(s.name for s in from_child) == ["inner", "run task"]
    finally:
        tl.configure("tests", exporter="none")
        collector.stop()


def test_the_parents_sampling_decision_holds_in_children(traces):
    me = os.getpid()
    try:
        for parent_ratio, child_ratio in ((0.0, 1.0), (1.0, 0.0)):
            tl.configure("tests", exporter="none", sample_ratio=parent_ratio)
            _config.children(
                {"exporter": "otlp", "endpoint": traces.endpoint, "sample_ratio": child_ratio}
            )
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
                with tl.span("decided") as parent:
                    assert ex.submit(recording).result(WAIT) is parent.is_recording()
        from_children = [s for s in traces.spans if s.pid != me]
        assert sorted(s.name for s in from_children) == ["inner", "run recording"]
        (sampled,) = traces.find_all("decided")
        assert {s.trace_id for s in from_children} == {sampled.trace_id}
    finally:
        tl.configure("tests", exporter="none")


class _Refusing(BaseHTTPRequestHandler):
    """An OTLP endpoint that holds each request until released, then refuses it."""

    release = threading.Event()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.release.wait(WAIT)
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_overflow_and_refused_exports_are_counted(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tl.configure("tests", endpoint=f"http://127.0.0.1:{server.server_address[1]}")
        before = tl.export_stats()
        for _ in range(10):
            with tl.span("lost"):
                pass
        # At most one batch (4) is held by the endpoint and 4 wait in the queue: 2+ overflow.
        _Refusing.release.set()
        tl.flush()
        after = tl.export_stats()
        counts = {k: after[k] - before[k] for k in ("exported", "failed", "dropped")}
        assert counts["exported"] == 0
        # Every span is accounted for (the SDK may count a drop it raced out of).
        assert counts["failed"] + counts["dropped"] >= 10
        assert counts["dropped"] >= 2 and counts["failed"] >= 4
    finally:
        tl.shutdown()
        server.shutdown()
        server.server_close()


def test_a_child_reports_what_it_could_not_export(traces, capfd):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    processes.configure_children(exporter="otlp", endpoint=dead, service_name="lost")
    try:
        with tl.span("parent"):
            # spawn: a fresh interpreter logs as a program would (no pytest log capture in it)
            p = multiprocessing.get_context("spawn").Process(target=task, args=("return",))
            p.start()
            p.join(WAIT)
    finally:
        processes.configure_children()
    assert p.exitcode == 0  # tracing never breaks the child
    err = capfd.readouterr().err
    assert "threadline: could not export" in err
    assert "3 failed to export" in err  # the task span's announcement, the task span, "inner"
    assert not [s for s in traces.spans if s.pid == p.pid]


def test_children_are_configured_like_the_parent(traces):
    received = []
    collector = Collector(received.extend)
    collector.start()
    try:
        tl.configure("shop", endpoint=collector.endpoint, environment="staging")
        _config.children(None)  # no test overrides: exactly what a program's children get
        with tl.span("checkout") as parent:
            p = multiprocessing.get_context("spawn").Process(target=task, args=("return",))
            p.start()
            p.join(WAIT)
        tl.flush()
    finally:
        tl.configure("tests", exporter="none")
        collector.stop()
    from_child = sorted((s for s in received if s.pid == p.pid), key=lambda s: (s.name, s.pending))
    assert [(s.name, s.pending) for s in from_child] == [
        ("inner", False),
        ("run task", False),
        ("run task", True),  # the announcement, exported where the parent exports too
    ]
    for s in from_child:
        assert s.trace_id == hex_ids(parent)[0]
        assert s.service == "shop"
        assert s.resource["deployment.environment.name"] == "staging"
        assert s.resource["process.parent_pid"] == os.getpid()


def test_the_default_context_and_pool(traces):
    with tl.span("default") as parent:
        p = multiprocessing.Process(target=task, args=("return",))
        p.start()
        p.join(WAIT)
        with multiprocessing.Pool(1) as pool:
            assert pool.map(task, ["return"]) == [2]
            pool.close()
            pool.join()
    delivered(traces, parent, 2)


def test_run_in_executor_with_a_process_pool(traces):
    async def main(ex):
        with tl.span("handler") as parent:
            assert await asyncio.get_running_loop().run_in_executor(ex, task, "return") == 2
        return parent

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        parent = asyncio.run(main(ex))
    delivered(traces, parent, 1)  # captured once, by the processes boundary


def test_pool_callbacks_run_in_the_submitters_context(traces):
    seen = []

    def callback(result):
        seen.append((result, hex_ids(trace.get_current_span())[1]))

    with multiprocessing.get_context("fork").Pool(1) as pool:
        with tl.span("submitter") as parent:
            pool.apply_async(task, ("return",), callback=callback).get(WAIT)
            pool.map_async(task, ["return"], error_callback=callback, callback=callback).get(WAIT)
            with pytest.raises(ValueError):
                pool.apply_async(task, ("raise",), {}, None, callback).get(WAIT)
    me = hex_ids(parent)[1]
    assert [(repr(r), s) for r, s in seen] == [
        ("2", me),
        ("[2]", me),
        ("ValueError('boom 1')", me),
    ]


def test_uninstall_puts_the_standard_library_back(traces):
    from multiprocessing import managers, pool, process

    from threadline.boundaries import nodes

    patched = (process.BaseProcess.start, pool.Pool.apply_async, managers.BaseProxy._callmethod)
    try:
        processes.uninstall()
        nodes.uninstall()
        processes.uninstall()  # idempotent
        assert process.BaseProcess.start is not patched[0]
        assert (
            pool.Pool.__dict__["_join_exited_workers"].__func__.__module__ == "multiprocessing.pool"
        )
        assert "threadline" not in managers.BaseProxy._callmethod.__module__
        with tl.span("untraced hand-off"):
            p = multiprocessing.get_context("fork").Process(target=task, args=("return",))
            p.start()
            p.join(WAIT)
        assert p.exitcode == 0
        assert [s.name for s in traces.spans] == ["untraced hand-off"]  # the child made none
    finally:
        processes.install()
        nodes.install()
        processes.install()
    assert (process.BaseProcess.start, managers.BaseProxy._callmethod) == patched[::2]
    assert pool.Pool.apply_async.__wrapped__ is patched[1].__wrapped__
    assert processes.installed() and nodes.installed()
