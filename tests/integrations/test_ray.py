"""Ray: a real local cluster (ray.init(num_cpus=2)), its worker processes exporting to the
`traces` collector. Ray kills its workers at ray.shutdown() without running atexit, and a
worker's batch processor would export only every 5 s: what arrives was flushed by the worker
as each task ended."""

from __future__ import annotations

import os
import signal
import time

import pytest

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")

from opentelemetry import context, trace  # noqa: E402

import threadline as tl  # noqa: E402
from threadline.boundaries import processes  # noqa: E402
from threadline.integrations import ray as tl_ray  # noqa: E402
from threadline.testing import hex_ids  # noqa: E402

N = 8


@ray.remote
def price(item):
    with tl.span("price", attributes={"item": item}):
        return 9.5, os.getpid()


@ray.remote
def quote(items):
    """A task that submits tasks in turn."""
    return sum(p for p, _ in ray.get([price.remote(i) for i in items]))


@ray.remote
def boom(item):
    raise ValueError(f"no stock for {item!r}")


@ray.remote
def seen():
    """The trace context current inside the task."""
    return tl.capture().carrier, os.getpid()


@ray.remote
class Cart:
    def __init__(self, owner):
        self.owner = owner
        self.total = 0.0

    def add(self, item):
        with tl.span("add", attributes={"item": item}):
            self.total += ray.get(price.remote(item))[0]
        return self.total

    async def total_now(self):
        return self.total, os.getpid()

    def leak(self):
        """Leaves a foreign span current, as careless code might."""
        foreign = trace.NonRecordingSpan(
            trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1))
        )
        context.attach(trace.set_span_in_context(foreign))
        return True

    def seen(self):
        return tl.capture().carrier

    def add_twice(self, item):
        """Calls its own methods: plain calls, no spans of their own."""
        self.add(item)
        return self.add(item)

    def stats(self):
        return tl.export_stats()

    def close(self):
        ray.actor.exit_actor()


@pytest.fixture(scope="module", autouse=True)
def instrumented():
    sigterm = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        tl_ray.instrument()
        yield
        tl_ray.uninstrument()
        ray.shutdown()
    signal.signal(signal.SIGTERM, sigterm)  # ray.init() leaves a handler of its own behind


@pytest.fixture
def cluster(traces):
    """The module's local cluster, started on first use; the `traces` fixture comes first, so
    the tasks carry its collector's endpoint to the workers."""
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024 * 1024,
            log_to_driver=False,
        )
    return traces


def arrived(traces, *names: str, count: int = 1, timeout: float = 10.0):
    """Wait until each name has `count` spans, then until nothing more arrives."""
    traces.wait_for(
        lambda spans: all(sum(s.name == n for s in spans) >= count for n in names), timeout
    )
    return traces.settle()


def ids(carrier: dict[str, str]) -> tuple[str, str]:
    """(trace id, span id) of a carrier's traceparent."""
    _, trace_id, span_id, _ = carrier["traceparent"].split("-")
    return trace_id, span_id


def test_a_task_continues_the_callers_trace(cluster):
    with tl.span("checkout") as root:
        value, worker_pid = ray.get(price.remote("book"))
    assert value == 9.5
    assert worker_pid != os.getpid()
    arrived(cluster, "price")
    trace_id, root_id = hex_ids(root)
    t = cluster.one()
    t.assert_connected()
    assert [s.name for s in t] == ["checkout", "submit price", "run price", "price"]
    submit, run, work = t.find("submit price"), t.find("run price"), t.find("price")
    assert (submit.trace_id, submit.parent_id, submit.kind) == (trace_id, root_id, "PRODUCER")
    assert (run.trace_id, run.parent_id, run.kind) == (trace_id, submit.span_id, "CONSUMER")
    assert work.parent_id == run.span_id
    assert (submit.pid, run.pid, work.pid) == (os.getpid(), worker_pid, worker_pid)
    assert t.services() == {"tests"}
    assert run.status == "UNSET"
    assert submit.attributes["ray.remote"] == run.attributes["ray.remote"] == "function"
    assert (
        submit.attributes["ray.function"] == run.attributes["ray.function"] == f"{__name__}.price"
    )
    assert submit.attributes["ray.task_id"] == run.attributes["ray.task_id"]
    assert run.attributes["ray.job_id"] == ray.get_runtime_context().get_job_id()
    assert run.attributes["threadline.boundary"] == "ray"
    assert cluster.incomplete == []


def test_a_task_calling_tasks_stays_in_one_trace(cluster):
    with tl.span("order") as root:
        assert ray.get(quote.remote(["book", "pen", "ink"])) == 28.5
    arrived(cluster, "price", count=3)
    t = cluster.one()
    t.assert_connected()
    assert t.trace_id == hex_ids(root)[0]
    run_quote = t.find("run quote")
    assert run_quote.parent_id == t.find("submit quote").span_id
    submits = t.find_all("submit price")
    runs = t.find_all("run price")
    assert len(submits) == len(runs) == 3
    assert {s.parent_id for s in submits} == {run_quote.span_id}
    assert {s.pid for s in submits} == {run_quote.pid}  # submitted from quote's worker
    assert sorted(r.parent_id for r in runs) == sorted(s.span_id for s in submits)
    assert sorted(w.parent_id for w in t.find_all("price")) == sorted(r.span_id for r in runs)
    assert {r.kind for r in runs} == {"CONSUMER"} and {s.kind for s in submits} == {"PRODUCER"}


def test_an_actors_creation_and_method_chain(cluster):
    with tl.span("shopping") as root:
        cart = Cart.remote("ann")
        for item in ("book", "pen"):
            ray.get(cart.add.remote(item))
        total, actor_pid = ray.get(cart.total_now.remote())
    assert total == 19.0
    arrived(cluster, "run Cart.total_now", "price")
    t = cluster.one()
    t.assert_connected()
    trace_id, root_id = hex_ids(root)
    actor_id = cart._actor_id.hex()
    names = ["Cart.__init__", "Cart.add", "Cart.add", "Cart.total_now"]
    submits = [s for s in t if s.name.startswith("submit Cart.")]
    runs = [s for s in t if s.name.startswith("run Cart.")]
    assert [s.name for s in submits] == [f"submit {n}" for n in names]
    assert [s.name for s in runs] == [f"run {n}" for n in names]
    for submit, run in zip(submits, runs, strict=True):
        assert (submit.trace_id, submit.parent_id, submit.kind) == (trace_id, root_id, "PRODUCER")
        assert (run.parent_id, run.kind, run.pid) == (submit.span_id, "CONSUMER", actor_pid)
        assert submit.attributes["ray.actor_id"] == run.attributes["ray.actor_id"] == actor_id
        assert run.attributes["ray.actor_class"] == "Cart"
        assert run.attributes["ray.actor_method"] == run.name.split(".")[-1]
    # each add ran a task of its own from inside the actor, under its "add" span
    adds = t.find_all("add")
    assert [a.parent_id for a in adds] == [r.span_id for r in runs[1:3]]
    assert sorted(s.parent_id for s in t.find_all("submit price")) == sorted(
        a.span_id for a in adds
    )
    assert {s.pid for s in t.find_all("submit price")} == {actor_pid}
    assert len(t.find_all("run price")) == 2


def test_an_actor_calling_its_own_methods_makes_no_run_spans_for_them(cluster):
    cart = Cart.remote("dan")
    with tl.span("two mugs") as root:
        assert ray.get(cart.add_twice.remote("mug")) == 19.0
    arrived(cluster, "run Cart.add_twice", "price", count=1)
    t = cluster.trace(hex_ids(root)[0])
    t.assert_connected()
    run = t.find("run Cart.add_twice")
    assert [a.parent_id for a in t.find_all("add")] == [run.span_id, run.span_id]
    assert t.find_all("run Cart.add") == []
    assert len(t.find_all("run price")) == 2


def test_an_actor_that_exits_has_exported_its_span(cluster):
    cart = Cart.remote("bob")
    with tl.span("leave") as root:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(cart.close.remote())
    arrived(cluster, "run Cart.close")
    run = cluster.find_all("run Cart.close")[0]
    assert run.trace_id == hex_ids(root)[0]
    assert run.status == "UNSET"  # exit_actor() is no error


def test_a_failing_task_is_recorded_and_raised_as_ray_does(cluster):
    with tl.span("restock") as root:
        ref = boom.remote("ink")
        with pytest.raises(ValueError, match="no stock for 'ink'") as raised:
            ray.get(ref)
    assert isinstance(raised.value, ray.exceptions.RayTaskError)
    arrived(cluster, "run boom")
    t = cluster.one()
    t.assert_connected()
    run, submit = t.find("run boom"), t.find("submit boom")
    assert run.trace_id == hex_ids(root)[0] and run.parent_id == submit.span_id
    assert (run.status, run.status_message) == ("ERROR", "ValueError: no stock for 'ink'")
    event = run.event("exception")
    assert (event["exception.type"], event["exception.message"]) == (
        "ValueError",
        "no stock for 'ink'",
    )
    assert submit.status == "UNSET"  # the submission itself went fine


def test_an_uninstrumented_caller_gets_a_clean_root_from_a_reused_worker(cluster):
    probe = Cart.remote("eve")
    with tl.span("before") as before:
        assert ray.get(probe.leak.remote()) is True
    tl_ray.uninstrument()
    try:
        with tl.span("untraced caller") as caller:
            carrier = ray.get(probe.seen.remote())  # no context sent
            value, _ = ray.get(price.remote("pen"))  # a traced function, called plainly, works
    finally:
        tl_ray.instrument()
    assert value == 9.5
    arrived(cluster, "run Cart.seen")
    run = cluster.find_all("run Cart.seen")[0]
    assert run.parent_id is None  # a root of its own...
    assert run.trace_id not in (hex_ids(before)[0], hex_ids(caller)[0], format(0xABC, "032x"))
    assert ids(carrier) == (run.trace_id, run.span_id)  # ...current inside
    assert cluster.find_all("submit Cart.seen") == cluster.find_all("submit price") == []


def test_a_worker_sees_only_the_context_it_was_sent(cluster):
    with tl.span("first") as first:
        carrier, pid = ray.get(seen.remote())
    run = next(s for s in cluster.spans if s.name == "run seen")
    assert ids(carrier) == (hex_ids(first)[0], run.span_id)
    # not sampled: one decision for the whole trace, workers included
    unsampled = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-00"}
    with tl.resume(unsampled):
        carrier, _ = ray.get(seen.remote())
    assert carrier["traceparent"].startswith(f"00-{'1' * 32}-")
    assert carrier["traceparent"].endswith("-00")
    assert [s.name for s in cluster.settle() if s.trace_id == "1" * 32] == []


@pytest.mark.parametrize("relation", ["link", "none"])
def test_relation_link_and_none(cluster, relation):
    tl_ray.uninstrument()
    tl_ray.instrument(relation=relation)
    try:
        with tl.span("batch") as root:
            ray.get(price.remote("mug"))
    finally:
        tl_ray.uninstrument()
        tl_ray.instrument()
    arrived(cluster, "price")
    submit = cluster.find_all("submit price")[0]
    run = cluster.find_all("run price")[0]
    assert submit.trace_id == hex_ids(root)[0]
    assert run.parent_id is None and run.trace_id != submit.trace_id
    assert run.links == ([(submit.trace_id, submit.span_id, {})] if relation == "link" else [])
    assert cluster.find_all("price")[0].parent_id == run.span_id


def test_instrument_names_a_bad_or_conflicting_argument():
    with pytest.raises(ValueError, match="relation must be one of"):
        tl_ray.instrument(relation="sibling")
    with pytest.raises(ValueError, match="relation='link' would change how"):
        tl_ray.instrument(relation="link")
    tl_ray.instrument(relation="child")  # the same again: nothing to do


def test_workers_take_the_configuration_of_the_callers_children(cluster):
    processes.configure_children(service_name="pricing", exporter="otlp", endpoint=cluster.endpoint)
    try:
        with tl.span("quote") as root:
            ray.get(price.remote("cup"))
    finally:
        processes.configure_children(exporter="otlp", endpoint=cluster.endpoint)
    arrived(cluster, "price")
    t = cluster.trace(hex_ids(root)[0])
    assert {s.name: s.service for s in t} == {
        "quote": "tests",
        "submit price": "tests",
        "run price": "pricing",
        "price": "pricing",
    }
    assert "process.parent_pid" not in t.find("run price").resource  # a raylet started it


def test_an_unreachable_endpoint_never_breaks_a_task(cluster):
    processes.configure_children(exporter="otlp", endpoint="http://127.0.0.1:9")  # refused
    try:
        cart = Cart.remote("fay")
        with tl.span("offline"):
            carrier = ray.get(cart.seen.remote())
        for _ in range(100):  # the failing export goes on beside the calls
            stats = ray.get(cart.stats.remote())
            if stats["failed"]:
                break
            time.sleep(0.1)
    finally:
        processes.configure_children(exporter="otlp", endpoint=cluster.endpoint)
        ray.kill(cart)
    assert carrier["traceparent"]  # the calls ran, traced
    assert stats["failed"] >= 1 and stats["exported"] == 0  # and the failures were counted


def test_n_tasks_from_n_traces_lose_nothing_at_shutdown(cluster):
    """Last: it shuts the cluster down."""
    roots, refs = [], []
    for i in range(N):
        with tl.span(f"request {i}") as root:
            refs.append(price.remote(f"item {i}"))
        roots.append(hex_ids(root))
    pids = {pid for _, pid in ray.get(refs)}
    ray.shutdown()  # kills the workers
    spans = cluster.settle()
    runs = [s for s in spans if s.name == "run price"]
    work = [s for s in spans if s.name == "price"]
    assert len(runs) == len(work) == N
    assert len(cluster.traces()) == N
    submits = {s.trace_id: s for s in spans if s.name == "submit price"}
    assert sorted(submits) == sorted(trace_id for trace_id, _ in roots)
    for i, (trace_id, root_id) in enumerate(roots):
        t = cluster.trace(trace_id)
        t.assert_connected()
        assert [s.name for s in t] == [f"request {i}", "submit price", "run price", "price"]
        assert t.root.span_id == root_id
        assert t.find("run price").parent_id == submits[trace_id].span_id
    assert {r.pid for r in runs} == pids
    assert cluster.incomplete == []
