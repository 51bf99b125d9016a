import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.pool import ThreadPool

import pytest
from opentelemetry import trace

import threadline as tl
from threadline.boundaries import threads
from threadline.testing import hex_ids

NO_SPAN = ("0" * 32, "0" * 16)


def current_ids():
    return hex_ids(trace.get_current_span())


def work(n=0):
    with tl.span("work"):
        return n * 2


def assert_child_of(traces, root, name="work", count=1):
    """One connected trace rooted at `root`, with `count` INTERNAL spans `name` directly under it."""
    t = traces.one()
    t.assert_connected()
    trace_id, span_id = hex_ids(root)
    assert t.trace_id == trace_id
    found = t.find_all(name)
    assert len(found) == count
    assert {(s.parent_id, s.kind) for s in found} == {(span_id, "INTERNAL")}


def test_thread_continues_the_trace_of_whoever_started_it(traces):
    t = threading.Thread(target=work)  # created outside any trace: start() is what counts
    with tl.span("request") as root:
        t.start()
    t.join()
    assert_child_of(traces, root)


def test_thread_subclass_with_its_own_run(traces):
    class Worker(threading.Thread):
        def run(self):
            work()

    with tl.span("request") as root:
        w = Worker()
        w.start()
        w.join()
    assert_child_of(traces, root)


def test_timer_fires_in_the_trace_it_was_started_in(traces):
    fired = threading.Event()

    def later():
        work()
        fired.set()

    with tl.span("schedule") as root:
        threading.Timer(0.01, later).start()
    assert fired.wait(10)
    assert_child_of(traces, root)


def test_executor_submit_and_map(traces):
    with ThreadPoolExecutor(2) as ex:
        with tl.span("request") as root:
            assert ex.submit(work, 1).result(10) == 2
            assert list(ex.map(work, [1, 2, 3])) == [2, 4, 6]
    assert_child_of(traces, root, count=4)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p: [p.apply(work, (1,))], id="apply"),
        pytest.param(lambda p: [p.apply_async(work, (1,)).get(10)], id="apply_async"),
        pytest.param(lambda p: p.map(work, [1, 2, 3]), id="map"),
        pytest.param(lambda p: p.map_async(work, [1, 2, 3]).get(10), id="map_async"),
        pytest.param(lambda p: list(p.imap(work, [1, 2, 3])), id="imap"),
        pytest.param(lambda p: sorted(p.imap_unordered(work, [1, 2, 3])), id="imap_unordered"),
        pytest.param(lambda p: p.starmap(work, [(1,), (2,), (3,)]), id="starmap"),
        pytest.param(
            lambda p: p.starmap_async(work, [(1,), (2,), (3,)]).get(10), id="starmap_async"
        ),
    ],
)
def test_thread_pool(traces, call):
    with ThreadPool(2) as pool:
        with tl.span("request") as root:
            results = call(pool)
        threads.uninstrument()  # so the probe reads the bare worker, not a context handed to it
        assert pool.apply(current_ids) == NO_SPAN
    assert results == [2, 4, 6][: len(results)]
    assert_child_of(traces, root, count=len(results))


def test_thread_pool_callbacks_run_in_the_submitters_trace(traces):
    done = threading.Semaphore(0)

    def callback(result):
        work()
        done.release()

    def fail():
        raise KeyError("boom")

    with ThreadPool(1) as pool:
        with tl.span("request") as root:
            pool.apply_async(int, callback=callback)
            pool.map_async(fail, [1], 1, None, callback)  # error_callback given positionally
        assert done.acquire(timeout=10) and done.acquire(timeout=10)
    assert_child_of(traces, root, count=2)


@pytest.mark.parametrize("pool_kind", ["executor", "thread_pool"])
def test_pool_workers_do_not_keep_the_context_of_whoever_created_them(traces, pool_kind):
    with tl.span("creator"):  # workers are created here, by the first submission
        if pool_kind == "executor":
            pool = ThreadPoolExecutor(1)
            pool.submit(work).result(10)
            run = lambda fn: pool.submit(fn).result(10)  # noqa: E731
        else:
            pool = ThreadPool(1)
            pool.apply(work)
            run = pool.apply
    threads.uninstrument()  # so the probe reads the bare worker, not a context handed to it
    try:
        assert run(current_ids) == NO_SPAN
    finally:
        pool.shutdown() if pool_kind == "executor" else pool.terminate()


def test_two_workers_1000_traces_nothing_leaks(traces):
    """A 2-worker pool runs 1,000 tasks, each submitted from its own trace: every task span lands
    in its submitter's trace, and right after each task its worker has no current span."""
    gate = threading.Event()
    after = {}  # task index -> (worker thread, current ids once the task returned)
    roots = {}

    def task(i):
        gate.wait(10)
        with tl.span("task") as s:
            s.set_attribute("i", i)
        if i % 7 == 0:
            raise ValueError(i)  # a failing task must not leak either
        return i

    def record(i):
        def done(_future):  # runs in the worker right after the task returned (gate held)
            after[i] = (threading.current_thread().name, current_ids())

        return done

    with ThreadPoolExecutor(2, thread_name_prefix="leak") as ex:
        futures = []
        for i in range(1000):
            with tl.span("submit") as root:
                roots[i] = hex_ids(root)
                f = ex.submit(task, i)
            f.add_done_callback(record(i))
            futures.append(f)
        gate.set()
        for i, f in enumerate(futures):
            assert (f.exception(10) is None) == (i % 7 != 0)
    assert len(after) == 1000
    assert all(name.startswith("leak") and ids == NO_SPAN for name, ids in after.values())
    tasks = {s.attributes["i"]: s for s in traces.find_all("task")}
    assert len(tasks) == 1000
    for i, (trace_id, span_id) in roots.items():
        assert (tasks[i].trace_id, tasks[i].parent_id) == (trace_id, span_id)


def test_policy_link_gives_each_task_a_linked_span(traces):
    threads.instrument(relation="link")
    with ThreadPoolExecutor(1) as ex:
        with tl.span("request") as root:
            inner = ex.submit(current_ids).result(10)
    root_trace, root_span = hex_ids(root)
    (task,) = traces.find_all("current_ids")
    assert task.trace_id != root_trace and task.parent_id is None
    assert task.links == [(root_trace, root_span, {})]
    assert inner == (task.trace_id, task.span_id)


def test_policy_none_starts_each_task_clean(traces):
    threads.instrument(relation="none")
    with ThreadPoolExecutor(1) as ex:
        with tl.span("request"):
            assert ex.submit(current_ids).result(10) == NO_SPAN
            t = threading.Thread(target=work)
            t.start()
            t.join()
    assert traces.find_all("work")[0].parent_id is None


def test_policy_span_per_task(traces):
    threads.instrument(span=True)
    with ThreadPoolExecutor(1) as ex:
        with tl.span("request") as root:
            inner = ex.submit(current_ids).result(10)
    t = traces.one()
    task = t.find("current_ids")  # named after the function
    assert (task.parent_id, task.kind) == (hex_ids(root)[1], "INTERNAL")
    assert inner == (t.trace_id, task.span_id)
    threads.instrument(span="job")
    with ThreadPoolExecutor(1) as ex:
        ex.submit(int).result(10)
    assert len(traces.find_all("job")) == 1


def test_bad_policy_fails_at_the_call_site():
    with pytest.raises(ValueError, match="relation"):
        threads.instrument(relation="sibling")
    with pytest.raises(ValueError, match="needs a span"):
        threads.instrument(relation="link", span=False)
    assert threads.policy().relation == "child"


def test_install_is_idempotent_and_uninstall_restores_everything(traces):
    originals = (threading.Thread.start, ThreadPoolExecutor.submit)
    threads.instrument()
    threads.instrument()
    assert threads.instrumented()
    threads.uninstrument()
    threads.uninstrument()
    assert not threads.instrumented()
    assert "apply_async" not in ThreadPool.__dict__
    assert threading.Thread.start is not originals[0]  # the originals are what is back
    assert ThreadPoolExecutor.submit.__module__ == "concurrent.futures.thread"
    with ThreadPoolExecutor(1) as ex:
        with tl.span("request") as root:
            assert ex.submit(current_ids).result(10) == NO_SPAN  # no boundary: nothing carried
            assert ex.submit(tl.wrap(current_ids)).result(10) == hex_ids(root)  # by hand
    threads.instrument()
    assert (threading.Thread.start, ThreadPoolExecutor.submit) == originals


def test_explicit_capture_and_resume_without_any_patching(traces):
    threads.uninstrument()
    handed = []

    def worker():
        with tl.resume(handed[0], "consume", relation="link", kind="consumer"):
            work()

    with tl.span("request") as root:
        handed.append(tl.capture())
        t = threading.Thread(target=worker)
        t.start()
    t.join()
    consume = traces.find_all("consume")[0]
    assert (consume.kind, consume.parent_id) == ("CONSUMER", None)
    assert consume.links == [hex_ids(root) + ({},)]
    assert traces.find_all("work")[0].parent_id == consume.span_id
