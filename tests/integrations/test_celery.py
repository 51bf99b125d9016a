"""Celery against the Redis broker on 127.0.0.1:6379 (db 15), with a real worker in another OS
process: ``celery -A celery_tasks worker --pool=prefork``, exporting to the `traces` collector.

The worker's batch processor exports every 5 s; a pool process recycled after its one task
(--max-tasks-per-child=1) is gone long before that, so what arrives before the worker is stopped
was exported by the exiting process itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import celery_tasks
import pytest
import redis
from brokers import unique
from celery import chain, group

import threadline as tl
from local_services import require
from threadline.integrations import celery
from threadline.testing import hex_ids

HERE = Path(__file__).parent
BROKER = "redis://127.0.0.1:6379/15"
N = 10


@pytest.fixture
def queue():
    require(6379, "Redis")
    name = unique("celery")
    celery_tasks.app.conf.task_default_queue = name
    yield name
    r = redis.Redis(host="127.0.0.1", db=15)
    r.delete(name, *r.keys(f"_kombu.binding*.{name}"))


class Worker:
    """``celery -A celery_tasks worker`` on the test's queue, exporting to the test's collector."""

    def __init__(self, traces, queue: str, output, *options: str, **env: str) -> None:
        environ = {
            k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_"))
        }
        environ.update(OTEL_EXPORTER_OTLP_ENDPOINT=traces.endpoint, THREADLINE_CELERY_QUEUE=queue)
        environ.update(env)
        self.output = output
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=prefork",
             "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=warning", *options],
            cwd=HERE, env=environ, stdout=self.output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.pid = self.proc.pid

    def stop(self) -> int:
        """Warm shutdown (SIGTERM): running tasks finish, pool processes exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log(self) -> str:
        self.output.seek(0)
        return self.output.read()[-4000:]


@contextlib.contextmanager
def worker(traces, queue: str, *options: str, **env: str):
    with tempfile.TemporaryFile("w+") as output:
        w = Worker(traces, queue, output, *options, **env)
        try:
            yield w
        except BaseException:
            w.stop()
            print(w.log())  # shown with the failure
            raise
        finally:
            w.stop()


def done(spans, name: str) -> list:
    return [s for s in spans if s.name == name and not s.pending]


def wait_done(traces, counts: dict[str, int], timeout: float = 40) -> None:
    traces.wait_for(lambda spans: all(len(done(spans, n)) >= c for n, c in counts.items()), timeout)


def wait_started(traces, name: str, count: int, timeout: float = 40) -> None:
    """Until `count` tasks have started: each run span is announced as it starts."""
    traces.wait_for(lambda spans: len([s for s in spans if s.name == name]) >= count, timeout)


def test_each_task_in_its_senders_trace_nothing_lost_with_max_tasks_per_child_1(traces, queue):
    with worker(traces, queue, "--concurrency=2", "--max-tasks-per-child=1") as w:
        senders = []
        for i in range(N):
            with tl.span("checkout", attributes={"i": i}) as s:
                celery_tasks.add.delay(i, i)
            senders.append(hex_ids(s))
        wait_done(traces, {"run/celery_tasks.add": N})  # before the worker is stopped
    spans = traces.settle()

    runs = done(spans, "run/celery_tasks.add")
    assert len(runs) == N and len({s.span_id for s in runs}) == N  # none lost, none twice
    assert sorted(s.trace_id for s in runs) == sorted(t for t, _ in senders)
    assert len({s.pid for s in runs}) == N  # each task in a pool process of its own
    for (trace_id, span_id), i in zip(senders, range(N), strict=True):
        t = traces.trace(trace_id)
        t.assert_connected()
        produce = t.find("apply_async/celery_tasks.add")
        run = t.find("run/celery_tasks.add")
        assert (produce.parent_id, produce.kind, produce.service) == (span_id, "PRODUCER", "tests")
        assert (run.parent_id, run.kind, run.service) == (
            produce.span_id,
            "CONSUMER",
            "celery_tasks",
        )
        assert run.attributes["messaging.message.id"] == produce.attributes["messaging.message.id"]
        assert run.resource["process.parent_pid"] == w.pid
        add = t.find("add")
        assert (add.parent_id, add.attributes["x"], add.service) == (run.span_id, i, "celery_tasks")
        assert run.status == "UNSET"


def test_failure_retry_and_os_exit_are_recorded_on_the_task_span(traces, queue):
    with worker(traces, queue, "--concurrency=2", "--max-tasks-per-child=1"):
        with tl.span("order") as order:
            celery_tasks.charge.delay("tea")
        with tl.span("restock") as restock:
            celery_tasks.flaky.delay("tea")
        with tl.span("abort") as abort:
            celery_tasks.bail.delay(3)
        wait_done(traces, {"run/celery_tasks.charge": 1, "run/celery_tasks.flaky": 2,
                           "run/celery_tasks.bail": 1})  # fmt: skip
    traces.settle()

    t = traces.trace(hex_ids(order)[0])
    t.assert_connected()
    run = t.find("run/celery_tasks.charge")
    assert run.parent_id == t.find("apply_async/celery_tasks.charge").span_id
    assert (run.status, run.status_message) == ("ERROR", "no price for tea")
    error = run.event("exception")
    assert (error["exception.type"], error["exception.message"]) == (
        "ValueError",
        "no price for tea",
    )

    t = traces.trace(hex_ids(restock)[0])
    t.assert_connected()
    first, second = t.find_all("run/celery_tasks.flaky")
    sent, resent = t.find_all("apply_async/celery_tasks.flaky")
    assert (sent.parent_id, first.parent_id) == (hex_ids(restock)[1], sent.span_id)
    assert (resent.parent_id, second.parent_id) == (first.span_id, resent.span_id)
    assert first.status == "ERROR" and "stock service down for tea" in first.status_message
    error = first.event("exception")
    assert error["exception.type"] == "ConnectionError"
    assert error["exception.message"] == "stock service down for tea"
    assert "celery.retries" not in first.attributes
    assert (second.status, second.attributes["celery.retries"], second.event("exception")) == (
        "UNSET", 1, None,
    )  # fmt: skip

    t = traces.trace(hex_ids(abort)[0])
    run = t.find("run/celery_tasks.bail")
    assert run.parent_id == t.find("apply_async/celery_tasks.bail").span_id
    assert (run.status, run.status_message) == ("ERROR", "process exited with code 3")
    assert run.attributes["process.exit_code"] == 3


def test_chain_and_group_keep_one_trace(traces, queue):
    with worker(traces, queue, "--concurrency=2", "--max-tasks-per-child=1"):
        with tl.span("pipeline") as pipeline:
            chain(celery_tasks.add.s(1, 1), celery_tasks.add.s(10)).delay()
            group(celery_tasks.add.s(i, 100) for i in range(3)).delay()
        wait_done(traces, {"run/celery_tasks.add": 5})
    traces.settle()

    t = traces.one()
    t.assert_connected()
    assert t.root.span_id == hex_ids(pipeline)[1]
    runs = t.find_all("run/celery_tasks.add")
    assert len(runs) == 5
    by_id = {s.span_id: s for s in t}
    parents = [by_id[by_id[r.parent_id].parent_id] for r in runs]  # run <- apply_async <- ?
    from_root = [r for r, p in zip(runs, parents, strict=True) if p.name == "pipeline"]
    from_chain = [r for r, p in zip(runs, parents, strict=True) if p.name == "run/celery_tasks.add"]
    assert (len(from_root), len(from_chain)) == (4, 1)  # the chain's 2nd step is sent by its 1st
    assert {(s.attributes["x"], s.attributes["y"]) for s in t.find_all("add")} == {
        (1, 1),
        (2, 10),
        (0, 100),
        (1, 100),
        (2, 100),
    }


def test_untraced_sender_gets_its_own_trace_in_a_reused_worker_with_a_leaked_context(traces, queue):
    # One pool process for every task, left by other code with a span current outside any task.
    with worker(traces, queue, "--concurrency=1", THREADLINE_CELERY_LEAK="1") as w:
        with tl.span("first") as first:
            celery_tasks.add.delay(1, 1)
        untraced = subprocess.run(
            [sys.executable, "-c",
             "import sys; from celery import Celery; "
             "Celery(broker=sys.argv[1]).send_task('celery_tasks.add', (2, 2), queue=sys.argv[2])",
             BROKER, queue],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert untraced.returncode == 0, untraced.stderr
        with tl.span("third") as third:
            celery_tasks.add.delay(3, 3)
        wait_started(traces, "run/celery_tasks.add", 3)
        assert w.stop() == 0  # warm shutdown: the last task finishes, everything is flushed
    spans = traces.settle()

    runs = done(spans, "run/celery_tasks.add")
    assert len(runs) == 3 and len({s.pid for s in runs}) == 1  # one reused process
    assert not [s for s in spans if s.name == "left open"]  # never ended
    for sender in (first, third):
        t = traces.trace(hex_ids(sender)[0])
        t.assert_connected()
        assert (
            t.find("run/celery_tasks.add").parent_id
            == t.find("apply_async/celery_tasks.add").span_id
        )
    alone = [r for r in runs if r.trace_id not in (hex_ids(first)[0], hex_ids(third)[0])]
    assert len(alone) == 1 and alone[0].parent_id is None  # not a child of "left open"
    t = traces.trace(alone[0].trace_id)
    t.assert_connected()
    assert [s.name for s in t] == ["run/celery_tasks.add", "add"]
    assert t.find("add").attributes["x"] == 2


@pytest.mark.parametrize("relation", ["link", "none"])
def test_relation_link_or_none_starts_a_new_trace(traces, queue, relation):
    env = {"THREADLINE_CELERY_RELATION": relation, "THREADLINE_CELERY_WORKER_SERVICE": "billing"}
    with worker(traces, queue, "--concurrency=1", **env) as w:
        with tl.span("batch") as batch:
            celery_tasks.add.delay(4, 4)
        wait_started(traces, "run/celery_tasks.add", 1)
        assert w.stop() == 0
    traces.settle()

    sent = traces.trace(hex_ids(batch)[0])
    produce = sent.find("apply_async/celery_tasks.add")
    assert [s.name for s in sent] == ["batch", "apply_async/celery_tasks.add"]
    (run,) = done(traces.spans, "run/celery_tasks.add")
    assert run.trace_id != sent.trace_id and run.parent_id is None
    links = [(sent.trace_id, produce.span_id)] if relation == "link" else []
    assert [(lt, ls) for lt, ls, _ in run.links] == links
    add = traces.trace(run.trace_id).find("add")
    assert (add.parent_id, run.service, add.service) == (run.span_id, "billing", "billing")


def test_a_worker_configured_by_its_app_module_configures_its_pool_processes_alike(traces, queue):
    with worker(traces, queue, "--concurrency=2", "--max-tasks-per-child=1",
                THREADLINE_CELERY_SERVICE="shop-worker") as w:  # fmt: skip
        with tl.span("two") as two:
            celery_tasks.add.delay(6, 6)
            celery_tasks.add.delay(7, 7)
        wait_done(traces, {"run/celery_tasks.add": 2})
    traces.settle()

    t = traces.trace(hex_ids(two)[0])
    t.assert_connected()
    runs = t.find_all("run/celery_tasks.add")
    assert {s.service for s in runs} == {"shop-worker"} and len({s.pid for s in runs}) == 2
    assert {s.resource["process.parent_pid"] for s in runs} == {w.pid}


def test_sigterm_mid_task_and_warm_shutdown_lose_no_span(traces, queue):
    with worker(traces, queue, "--concurrency=1") as w:
        with tl.span("cut") as cut:
            celery_tasks.slow.delay(30)
        # Announced as it starts: the task is visible (incomplete) while it runs.
        started = traces.wait_for(lambda spans: any(s.pending for s in spans))
        (pending,) = [s for s in started if s.pending]
        assert pending.name == "run/celery_tasks.slow"
        os.kill(pending.pid, signal.SIGTERM)  # the pool process itself, mid-task
        wait_done(traces, {"run/celery_tasks.slow": 1})
        with tl.span("report") as report:
            celery_tasks.slow.delay(1)
        traces.wait_for(
            lambda spans: any(s.pending and s.trace_id == hex_ids(report)[0] for s in spans)
        )
        assert w.stop() == 0  # warm shutdown: the running task finishes first
    traces.settle()

    t = traces.trace(hex_ids(cut)[0])
    run = t.find("run/celery_tasks.slow")
    assert not run.pending and run.pid == pending.pid
    assert run.parent_id == t.find("apply_async/celery_tasks.slow").span_id
    assert (run.status, run.status_message) == ("ERROR", "process ended by SIGTERM")
    assert run.attributes["process.signal"] == "SIGTERM"

    t = traces.trace(hex_ids(report)[0])
    t.assert_connected()
    run = t.find("run/celery_tasks.slow")
    assert not run.pending and run.status == "UNSET" and "process.signal" not in run.attributes
    assert run.pid != pending.pid


def test_eager_task_runs_in_the_callers_trace(traces):
    with tl.span("inline") as inline:
        assert celery_tasks.add.apply((5, 5)).get() == 10
    t = traces.one()
    t.assert_connected()
    run = t.find("run/celery_tasks.add")
    assert run.parent_id == hex_ids(inline)[1]
    assert t.find("add").parent_id == run.span_id


def test_instrument_arguments():
    app = celery_tasks.app
    assert celery.instrument(app) is app  # instrumented at import: the same arguments again
    assert tl.instrument(app) is app
    with pytest.raises(ValueError, match=r"relation='link' \(was 'child'\)"):
        celery.instrument(app, relation="link")
    with pytest.raises(ValueError, match=r"relation='none' \(was 'child'\)"):
        tl.instrument(app, trust="ignore")
    with pytest.raises(ValueError, match=r"relation must be one of \('child', 'link', 'none'\)"):
        celery.instrument(app, relation="sideways")
    with pytest.raises(TypeError, match="app must be a celery.Celery application, not object"):
        celery.instrument(object())
    with pytest.raises(ValueError, match="worker_service must be a non-empty string, not ''"):
        celery.instrument(app, worker_service="")


SEND_ON_LOGFIRE = """
from opentelemetry import trace
import celery_tasks
with trace.get_tracer("shop").start_as_current_span("checkout") as span:
    celery_tasks.add.delay(2, 3)
print(f"{span.get_span_context().trace_id:032x}")
"""


def test_on_logfire_sender_and_worker_make_one_trace(traces, queue):
    """Sender and worker both on Logfire (``logfire.configure(...)`` in the app module) with
    ThreadlineInstrumentor: the task runs in the sender's trace, nothing threadline configured."""
    with worker(traces, queue, "--concurrency=1", THREADLINE_CELERY_LOGFIRE="celery-worker"):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_"))}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=traces.endpoint,
            THREADLINE_CELERY_QUEUE=queue,
            THREADLINE_CELERY_LOGFIRE="shop",
        )
        sent = subprocess.run(
            [sys.executable, "-c", SEND_ON_LOGFIRE], cwd=HERE, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        trace_id = sent.stdout.split()[-1]
        wait_done(traces, {"add": 1, "checkout": 1})
    t = traces.trace(trace_id)
    t.assert_connected()
    assert sorted(s.name for s in t) == [
        "add", "apply_async/celery_tasks.add", "checkout", "run/celery_tasks.add",
    ]  # fmt: skip
    checkout = t.find("checkout")
    produce = t.find("apply_async/celery_tasks.add")
    run = t.find("run/celery_tasks.add")
    add = t.find("add")
    assert (checkout.parent_id, checkout.service) == (None, "shop")
    assert (produce.parent_id, produce.kind, produce.service) == (
        checkout.span_id,
        "PRODUCER",
        "shop",
    )
    assert (run.parent_id, run.kind, run.service) == (produce.span_id, "CONSUMER", "celery-worker")
    assert (add.parent_id, add.service, add.attributes["x"]) == (run.span_id, "celery-worker", 2)
