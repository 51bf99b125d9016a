"""Child processes across start methods: every span a child ends is delivered, in the parent's
trace, under the right parent; killed work stays visible as incomplete spans."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from process_work import (
    burst,
    current_trace_id,
    hang,
    hold,
    leave,
    pair,
    recording,
    remember,
    task,
    terminated_while_counting,
    threads_taking_sigterm,
    wait_behind,
)

import threadline as tl
from threadline import _export, seam
from threadline.boundaries import processes
from threadline.testing import hex_ids
from threadline.testing.collector import Collector, decode

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
    traces.settle()  # a duplicate or a straggler would have arrived by now: count exactly
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
        (exited,) = delivered(traces, exits, 1)
        assert exited.attributes["process.exit_code"] == 0
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
    (exited,) = delivered(traces, exits, 1)
    assert exited.attributes["process.exit_code"] == 0
    if method == "fork":
        with pytest.raises(ValueError, match="incompatible"):  # the standard library's rule
            ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1)
        return
    with tl.span("one task per child") as parent:
        with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as ex:
            assert list(ex.map(task, ["return"] * 3)) == [2, 2, 2]
    assert len({s.pid for s in delivered(traces, parent, 3)}) == 3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("code", [0, 3])
def test_sys_exit_in_a_child(traces, method, code):
    with tl.span("parent") as parent:
        p = multiprocessing.get_context(method).Process(target=leave, args=(code,))
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


def kill_when_ready(p, ready) -> None:
    """SIGKILL a Process running hang() once it is in its span, and reap it."""
    assert ready.wait(WAIT)
    os.kill(p.pid, signal.SIGKILL)
    p.join(WAIT)
    assert p.exitcode == -signal.SIGKILL


def announcement(traces):
    """The pending copy of the one "run hang" span (a slow collector may still be reading it)."""
    traces.wait_for(lambda spans: any(s.name == "run hang" for s in spans), timeout=WAIT)
    (announced,) = traces.find_all("run hang")
    assert announced.pending
    return announced


def killed(traces, parent, pid: int, every_span: bool = False, task: str | None = None) -> None:
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
    expected = {"process.pid": pid, "process.signal": "SIGKILL"}
    if task is not None:
        expected["threadline.worker.task"] = task
    assert died == expected


@pytest.mark.parametrize("method", METHODS)
def test_sigkilled_process(traces, method):
    every_span = method == "spawn"
    if every_span:
        seam.children({"exporter": "otlp", "endpoint": traces.endpoint, "announce": True})
    ctx = multiprocessing.get_context(method)
    ready = ctx.Event()
    with tl.span("parent") as parent:
        p = ctx.Process(target=hang, args=(ready,))
        p.start()
        kill_when_ready(p, ready)
    killed(traces, parent, p.pid, every_span)


@pytest.mark.parametrize("method", METHODS)
def test_sigkilled_pool_worker(traces, method):
    ctx = multiprocessing.get_context(method)
    ready = ctx.Event()
    with ctx.Pool(1, initializer=remember, initargs=(ready,)) as pool:
        with tl.span("parent") as parent:
            pool.apply_async(hang)
            assert ready.wait(WAIT)
            announced = announcement(traces)  # the pending copy names the worker
            os.kill(announced.pid, signal.SIGKILL)
            # The single worker's replacement runs this, so the pool has seen the death.
            assert pool.apply(os.getpid) != announced.pid
    killed(traces, parent, announced.pid, task="running")


@pytest.mark.parametrize("method", METHODS)
def test_sigkilled_executor_worker(traces, method):
    ctx = multiprocessing.get_context(method)
    ready = ctx.Event()
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=remember, initargs=(ready,)) as ex:
        with tl.span("parent") as parent:
            future = ex.submit(hang)
            assert ready.wait(WAIT)
            announced = announcement(traces)
            os.kill(announced.pid, signal.SIGKILL)
            with pytest.raises(BrokenProcessPool):
                future.result(WAIT)
    killed(traces, parent, announced.pid, task="running")


def worker_died(traces, sender, pid: int, **extra) -> None:
    """The death seen after `sender` ended is a "worker died" span under it."""
    trace_id, sender_id = hex_ids(sender)
    traces.wait_for(lambda spans: any(s.name == "worker died" for s in spans), timeout=WAIT)
    trace = traces.trace(trace_id)
    trace.assert_connected()
    died = trace.find("worker died")
    attrs = {"process.pid": pid, "process.signal": "SIGKILL", **extra}
    assert (died.parent_id, died.pid, died.status) == (sender_id, os.getpid(), "ERROR")
    assert died.status_message == f"worker {pid} was killed by SIGKILL"
    assert {k: died.attributes[k] for k in attrs} == attrs
    assert died.events == [("threadline.worker.died", attrs)]
    assert trace.find(sender.name).events == []  # it had ended: the event could not go there


def test_a_process_joined_after_its_senders_span_reports_in_a_span_of_its_own(traces):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    with tl.span("parent") as parent:
        p = ctx.Process(target=hang, args=(ready,))
        p.start()
    kill_when_ready(p, ready)  # joined outside any span
    assert trace.get_current_span().get_span_context().is_valid is False
    worker_died(traces, parent, p.pid)


def test_a_pool_worker_killed_after_its_senders_span_reports_in_a_span_of_its_own(traces):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    with ctx.Pool(1, initializer=remember, initargs=(ready,)) as pool:
        with tl.span("parent") as parent:
            pool.apply_async(hang)
        assert ready.wait(WAIT)
        announced = announcement(traces)
        os.kill(announced.pid, signal.SIGKILL)
        assert pool.apply(os.getpid) != announced.pid  # seen in the pool's handler thread
    worker_died(traces, parent, announced.pid, **{"threadline.worker.task": "running"})


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_pool_worker_death_is_told_to_the_sender_of_the_task_it_ran(traces):
    """Two requests share a pool; the worker running one of them is killed: only that request
    hears of it. A worker whose task is not known (its note is gone) is told to every request in
    flight, saying so."""
    ctx = multiprocessing.get_context("fork")
    started = ctx.Queue()
    tracer = trace.get_tracer("tests")
    with ctx.Pool(2, initializer=remember, initargs=(started,)) as pool:
        a, b = tracer.start_span("request a"), tracer.start_span("request b")
        for label, span in (("a", a), ("b", b)):
            with trace.use_span(span):
                pool.apply_async(hold, (label,))
        running = dict(started.get(timeout=WAIT) for _ in range(2))
        os.kill(running["a"], signal.SIGKILL)
        until(lambda: len(a.events) == 1, "the death of a's worker")
        os.unlink(os.path.join(processes._running.dir, str(running["b"])))
        os.kill(running["b"], signal.SIGKILL)
        until(lambda: len(b.events) == 1 and len(a.events) == 2, "the death of b's worker")
        a.end()
        b.end()

    def died(pid, task):
        attrs = {"process.pid": pid, "process.signal": "SIGKILL", "threadline.worker.task": task}
        return ("threadline.worker.died", attrs)

    (got_a,), (got_b,) = traces.find_all("request a"), traces.find_all("request b")
    # a's job never completes (the standard library's pool loses it): still in flight for b's.
    assert got_a.events == [died(running["a"], "running"), died(running["b"], "unknown")]
    assert got_b.events == [died(running["b"], "unknown")]


def test_a_worker_killed_between_tasks_took_nobodys_work_with_it(traces):
    """A worker whose last task raised is idle: killing it breaks the pool, but no task of the
    sender's (another is still running elsewhere) was in it."""
    ctx = multiprocessing.get_context("fork")
    started = ctx.Queue()
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=remember, initargs=(started,)) as ex:
        with tl.span("sender") as sender:
            held = ex.submit(hold, "held")  # one worker is busy with this from now on
            (_, busy) = started.get(timeout=WAIT)
            with pytest.raises(ValueError):
                ex.submit(task, "raise").result(WAIT)  # so the other one ran this
            (raised,) = [s for s in traces.find_all("run task") if s.pending]
            assert raised.pid != busy
            os.kill(raised.pid, signal.SIGKILL)
            with pytest.raises(BrokenProcessPool):
                held.result(WAIT)
    (ended,) = traces.find_all("sender")
    assert ended.events == []
    assert hex_ids(sender)[1] == ended.span_id


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


# -- the export path across fork, sampling, drops --------------------------------------------


def test_fork_neither_duplicates_nor_loses_queued_spans(traces):
    received = []
    collector = Collector(received.extend)
    collector.start()
    try:
        tl.configure("tests", endpoint=collector.endpoint)  # batched: spans wait in the queue
        traces.redirect_children = True  # its children report to the capture
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
            seam.children(
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


class _Endpoint:
    """A real OTLP/HTTP endpoint on 127.0.0.1: `reply(spans, n)` (n counts requests from 0) is
    the status to answer a request with, or None to hold it open, never answering."""

    def __init__(self, reply) -> None:
        self.requests: list[list] = []  # the spans of every request received
        self.answered: list = []  # the spans of the requests answered
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                spans = decode(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                n = len(endpoint.requests)
                endpoint.requests.append(spans)
                status = reply(spans, n)
                if status is None:
                    endpoint.release.wait(WAIT)
                    self.close_connection = True
                    return
                if status < 300:
                    endpoint.answered.extend(spans)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def announcements(self) -> int:
        return sum(any(s.pending for s in spans) for spans in self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_overflow_and_refused_exports_are_counted(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    release = threading.Event()
    endpoint = _Endpoint(lambda spans, n: release.wait(WAIT) and 400)  # held, then refused
    try:
        tl.configure("tests", endpoint=endpoint.endpoint)
        before = tl.export_stats()
        for _ in range(10):
            with tl.span("lost"):
                pass
        # At most one batch (4) is held by the endpoint and 4 wait in the queue: 2+ overflow.
        release.set()
        tl.flush()
        after = tl.export_stats()
        counts = {k: after[k] - before[k] for k in ("exported", "failed", "dropped")}
        assert counts["exported"] == 0
        # Every span is accounted for (the SDK may count a drop it raced out of).
        assert counts["failed"] + counts["dropped"] >= 10
        assert counts["dropped"] >= 2 and counts["failed"] >= 4
        assert after["errors"]["queue_full"] >= 2
    finally:
        tl.shutdown()
        endpoint.close()
        _export.stats.reset()  # this test's own losses: not for the exit report


def test_an_endpoint_that_never_answers_announcements_does_not_stall_the_work(traces):
    """Announcing waits briefly, once: after a failure the worker stops announcing for a while
    (counted), and its tasks run on."""
    endpoint = _Endpoint(lambda spans, n: None if any(s.pending for s in spans) else 200)
    processes.configure_children(exporter="otlp", endpoint=endpoint.endpoint)
    try:
        with tl.span("parent"):
            with multiprocessing.get_context("fork").Pool(1) as pool:
                assert [pool.apply(task, ("return", x)) for x in (1, 2, 3)] == [2, 4, 6]
                stats = pool.apply(tl.export_stats)
        assert endpoint.announcements() == 1  # the first task's; no retry, then a pause
        assert (stats["announced"], stats["announce_failed"], stats["announce_skipped"]) == (
            0,
            1,
            3,  # the two other tasks, and the one asking
        )
        assert stats["errors"]["announce_TimeoutError"] == 1
        assert stats["failed"] == 0  # announcements are not spans: the exit report stays exact
        # Leaving the pool flushed the worker: its real spans reached the endpoint.
        assert sorted(s.name for s in endpoint.answered) == (
            ["inner"] * 3 + ["run export_stats"] + ["run task"] * 3
        )
    finally:
        processes.configure_children()
        endpoint.close()


REPORT = re.compile(r"threadline: (\d+) span\(s\) exported, (\d+) failed to export, (\d+) dropped")


def test_the_exit_flush_is_bounded_and_its_report_exact(traces, capfd):
    """A child ends 3000 spans; the endpoint takes the first batch and then never answers. The
    exit flush gives up after FLUSH_TIMEOUT and counts what it could not send as dropped:
    exported + failed + dropped == the spans the child ended."""
    endpoint = _Endpoint(lambda spans, n: 200 if n == 0 else None)
    processes.configure_children(exporter="otlp", endpoint=endpoint.endpoint, announce=False)
    try:
        with tl.span("parent"):
            p = multiprocessing.get_context("spawn").Process(target=burst, args=(3000, 2.0))
            p.start()
            p.join(WAIT)
    finally:
        processes.configure_children()
        endpoint.close()
    assert p.exitcode == 0
    err = capfd.readouterr().err
    (report,) = REPORT.findall(err)
    exported, failed, dropped = map(int, report)
    assert exported == len(endpoint.answered) > 0
    assert exported + failed + dropped == 3000 + 1  # the bursts and the task's own "run burst"
    assert dropped > 0
    assert "dropping spans before export (shutdown_timeout)" in err


def test_sigterm_inside_the_export_counters_still_exits(traces):
    """The final flush of a SIGTERM handler counts and reports from the thread the signal
    interrupted, which may be counting a span itself: it must not wait on itself."""
    p = multiprocessing.get_context("fork").Process(target=terminated_while_counting, args=(1.0,))
    p.start()
    try:
        p.join(WAIT)
        assert p.exitcode == -signal.SIGTERM  # not None: it did not hang on its own lock
    finally:
        if p.is_alive():
            p.kill()
            p.join()


@pytest.mark.parametrize("method", METHODS)
def test_only_a_childs_main_thread_takes_sigterm(traces, method):
    """A pool's terminate() sends SIGTERM to workers waiting in a lock. Were the export thread to
    take it, the waiting main thread would never run the handler and never exit."""
    with multiprocessing.get_context(method).Pool(1) as pool:
        assert pool.apply(threads_taking_sigterm) == []


def test_a_sigterm_another_thread_took_still_ends_a_child_waiting_in_a_lock(traces):
    """The handler runs in the main thread only; if a SIGTERM trips it without waking a main
    thread waiting in a lock (here: sent to another thread), the child must end all the same."""
    ctx = multiprocessing.get_context("fork")
    lock, helpers = ctx.Lock(), ctx.Queue()
    lock.acquire()
    with tl.span("parent") as parent:
        p = ctx.Process(target=wait_behind, args=(lock, helpers))
        p.start()
    try:
        helper = helpers.get(timeout=WAIT)
        tgkill = 234  # the x86-64 system call: a signal to one thread of a process
        assert ctypes.CDLL(None, use_errno=True).syscall(tgkill, p.pid, helper, signal.SIGTERM) == 0
        p.join(WAIT)
        assert p.exitcode == -signal.SIGTERM  # not None: the handler ran, the flush too
    finally:
        lock.release()
        if p.is_alive():
            p.kill()
            p.join()
    trace_id, parent_id = hex_ids(parent)
    traces.wait_for(lambda spans: any(s.name == "run wait_behind" for s in spans), timeout=WAIT)
    traces.settle()
    (run,) = traces.find_all("run wait_behind")
    assert (run.trace_id, run.parent_id, run.pending) == (trace_id, parent_id, False)
    assert (run.status, run.attributes["process.signal"]) == ("ERROR", "SIGTERM")


def test_a_batch_processor_of_unknown_shape_is_said_and_its_losses_counted(
    traces, caplog, monkeypatch
):
    """An SDK whose batch processor threadline cannot read drops spans unseen: that is said once,
    and what it lost is counted when the export path shuts down."""

    class Memory(SpanExporter):
        def __init__(self):
            self.spans = []

        def export(self, spans):
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

    class Lossy(SpanProcessor):  # a batch processor keeping every other span, its queue unseen
        def __init__(self, exporter):
            self.exporter, self.seen = exporter, 0

        def on_end(self, span):
            self.seen += 1
            if self.seen % 2:
                self.exporter.export([span])

    monkeypatch.setattr(_export, "_said_unknown", False)
    caplog.set_level(logging.WARNING, logger="threadline")
    memory = Memory()
    lossy = Lossy(_export.GuardedExporter(memory))
    _export.count_drops(lossy)
    _export.count_drops(Lossy(memory))  # said once
    said = [r.getMessage() for r in caplog.records if "keeps no queue" in r.getMessage()]
    assert said == [
        "threadline: this opentelemetry-sdk's Lossy keeps no queue threadline knows; spans it "
        "drops are counted when threadline shuts down, not as they are dropped"
    ]
    _export.stats.reset()
    try:
        seam.add_tap(lossy)
        for _ in range(10):
            with tl.span("maybe"):
                pass
        seam.remove_tap(lossy)
        _export.stats.report()
        stats = tl.export_stats()
        assert (stats["ended"], stats["exported"], stats["dropped"]) == (10, 5, 5)
        assert stats["errors"]["not_exported"] == 5
        assert len(memory.spans) == 5
    finally:
        _export.stats.reset()


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
    assert "threadline: could not announce a started span" in err
    # The task span and "inner" failed; the task span's announcement is counted apart.
    assert (
        "threadline: 0 span(s) exported, 2 failed to export, 0 dropped; "
        "1 announcement(s) of started spans not sent" in err
    )
    assert not [s for s in traces.spans if s.pid == p.pid]


def test_children_are_configured_like_the_parent(traces):
    received = []
    collector = Collector(received.extend)
    collector.start()
    try:
        tl.configure("shop", endpoint=collector.endpoint, environment="staging")
        seam.children(None)  # no test overrides: exactly what a program's children get
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
        processes.uninstrument()
        nodes.uninstrument()
        processes.uninstrument()  # idempotent
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
        processes.instrument()
        nodes.instrument()
        processes.instrument()
    assert (process.BaseProcess.start, managers.BaseProxy._callmethod) == patched[::2]
    assert pool.Pool.apply_async.__wrapped__ is patched[1].__wrapped__
    assert processes.instrumented() and nodes.instrumented()
