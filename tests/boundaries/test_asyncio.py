import asyncio
import queue
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from multiprocessing.pool import ThreadPool

import pytest
from opentelemetry import trace

import threadline as tl
from threadline.boundaries import asyncio as asyncio_boundary
from threadline.boundaries import threads
from threadline.testing import hex_ids

NO_SPAN = ("0" * 32, "0" * 16)


def current_ids():
    return hex_ids(trace.get_current_span())


def work():
    with tl.span("work"):
        return current_ids()


def assert_children(traces, root, name="work", count=1):
    t = traces.one()
    t.assert_connected()
    trace_id, span_id = hex_ids(root)
    found = t.find_all(name)
    assert t.trace_id == trace_id and len(found) == count
    assert {(s.parent_id, s.kind) for s in found} == {(span_id, "INTERNAL")}


@pytest.mark.parametrize("threads_installed", [True, False], ids=["with-threads", "alone"])
@pytest.mark.parametrize("executor", ["default", "custom"])
def test_run_in_executor(traces, executor, threads_installed):
    if not threads_installed:
        threads.uninstrument()  # the asyncio boundary carries the context on its own

    async def main():
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            with tl.span("handler") as root:
                await loop.run_in_executor(pool if executor == "custom" else None, work)
            # the worker is bare again: probe it with a function no boundary wrapped
            asyncio_boundary.uninstrument()
            threads.uninstrument()
            probe = await loop.run_in_executor(pool if executor == "custom" else None, current_ids)
        return root, probe

    root, probe = asyncio.run(main())
    assert probe == NO_SPAN
    assert_children(traces, root)


def test_to_thread(traces):
    async def main():
        with tl.span("handler") as root:
            await asyncio.to_thread(work)
        return root

    assert_children(traces, asyncio.run(main()))


def test_callbacks_are_captured_at_scheduling_time(traces):
    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        left = [4]

        def callback():
            work()
            left[0] -= 1
            if not left[0]:
                done.set()

        with tl.span("schedule") as root:
            loop.call_soon(callback)
            loop.call_later(0.001, callback)
            loop.call_at(loop.time() + 0.001, callback)
            loop.call_soon_threadsafe(callback)
        await asyncio.wait_for(done.wait(), 10)
        return root

    assert_children(traces, asyncio.run(main()), count=4)


def test_a_thread_hands_work_into_a_running_loop(traces):
    result = {}

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        async def handle():
            return work()

        def from_thread():
            with tl.span("thread") as root:
                result["root"] = root
                result["coro"] = asyncio.run_coroutine_threadsafe(handle(), loop).result(10)
                loop.call_soon_threadsafe(lambda: (work(), done.set()))

        await asyncio.to_thread(from_thread)  # another thread, outside any trace of this loop
        await asyncio.wait_for(done.wait(), 10)

    asyncio.run(main())
    assert_children(traces, result["root"], count=2)
    assert result["coro"][0] == hex_ids(result["root"])[0]


def test_tasks_keep_their_own_context_with_everything_installed(traces):
    async def child(i):
        with tl.span(f"child {i}"):
            await asyncio.sleep(0)
            await asyncio.to_thread(work)
            return current_ids()

    async def main():
        with tl.span("parent") as parent:
            ids = await asyncio.gather(*(child(i) for i in range(3)))
            assert current_ids() == hex_ids(parent)  # the parent's context is untouched
        assert current_ids() == NO_SPAN
        return parent, ids

    parent, ids = asyncio.run(main())
    t = traces.one()
    t.assert_connected()
    for i, (trace_id, span_id) in enumerate(ids):
        c = t.find(f"child {i}")
        assert (c.trace_id, c.span_id, c.parent_id) == (trace_id, span_id, hex_ids(parent)[1])
        assert [s.parent_id for s in t.find_all("work") if s.parent_id == span_id] == [span_id]


def test_nesting_thread_executor_loop_to_thread_thread_pool(traces):
    """thread -> ThreadPoolExecutor -> an event loop in that worker -> to_thread -> ThreadPool."""

    def in_thread_pool():
        with tl.span("5 thread pool task"):
            pass

    def in_to_thread(pool):
        with tl.span("4 to_thread"):
            pool.apply(in_thread_pool)

    async def in_loop(pool):
        with tl.span("3 loop"):
            await asyncio.to_thread(in_to_thread, pool)

    def in_executor(pool):
        with tl.span("2 executor task"):
            asyncio.run(in_loop(pool))

    def in_thread(ex, pool):
        with tl.span("1 thread"):
            ex.submit(in_executor, pool).result(20)

    with ThreadPoolExecutor(1) as ex, ThreadPool(1) as pool:
        with tl.span("0 request"):
            t = threading.Thread(target=in_thread, args=(ex, pool))
            t.start()
            t.join(30)
    trace_ = traces.one()
    trace_.assert_connected()
    chain = sorted(trace_.spans, key=lambda s: s.name)
    assert [s.name[0] for s in chain] == list("012345")
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child.parent_id == parent.span_id


def test_policy_none_patches_callbacks_and_restores_them_when_plain(traces):
    plain_call_soon = asyncio.BaseEventLoop.call_soon
    threads.uninstrument()  # else the default executor's own boundary carries it, by its policy
    asyncio_boundary.instrument(relation="none")
    assert asyncio.BaseEventLoop.call_soon is not plain_call_soon

    async def main():
        loop = asyncio.get_running_loop()
        seen = loop.create_future()
        with tl.span("schedule"):
            loop.call_soon(lambda: seen.set_result(current_ids()))
            in_executor = await loop.run_in_executor(None, current_ids)
            inner = current_ids()
        return await seen, in_executor, inner

    callback_ids, executor_ids, inner = asyncio.run(main())
    assert callback_ids == executor_ids == NO_SPAN
    assert inner != NO_SPAN
    asyncio_boundary.instrument(relation="child")
    assert asyncio.BaseEventLoop.call_soon is plain_call_soon


def test_policy_link_on_callbacks(traces):
    asyncio_boundary.instrument(relation="link", span="tick")

    async def main():
        loop = asyncio.get_running_loop()
        seen = loop.create_future()
        with tl.span("schedule") as root:
            loop.call_soon(lambda: seen.set_result(current_ids()))
        return root, await seen

    root, (trace_id, span_id) = asyncio.run(main())
    (tick,) = traces.find_all("tick")
    assert (tick.trace_id, tick.span_id, tick.parent_id) == (trace_id, span_id, None)
    assert tick.links == [hex_ids(root) + ({},)]


def test_debug_loop_still_rejects_coroutines_in_executor():
    async def coro():
        pass

    async def main():
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            await asyncio.get_running_loop().run_in_executor(None, coro)

    asyncio.run(main(), debug=True)


def test_install_uninstall_idempotent():
    original = asyncio.BaseEventLoop.run_in_executor
    asyncio_boundary.instrument()
    asyncio_boundary.instrument()
    asyncio_boundary.uninstrument()
    asyncio_boundary.uninstrument()
    assert not asyncio_boundary.instrumented()
    assert asyncio.BaseEventLoop.run_in_executor.__module__ == "asyncio.base_events"
    asyncio_boundary.instrument()
    assert asyncio.BaseEventLoop.run_in_executor is original


class OneWorker(Executor):
    """A user's own executor: one long-lived thread, started before any trace, fed by a queue."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            future.set_result(fn(*args))

    def submit(self, fn, /, *args):
        future = Future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self, wait=True, **_):
        self._jobs.put(None)
        self._thread.join(10)


def test_run_in_executor_with_a_users_own_executor(traces):
    ex = OneWorker()

    async def main():
        loop = asyncio.get_running_loop()
        with tl.span("handler") as root:
            inner = await loop.run_in_executor(ex, work)
        after = await loop.run_in_executor(ex, lambda: current_ids())
        return root, inner, after

    try:
        root, inner, after = asyncio.run(main())
    finally:
        ex.shutdown()
    assert after == NO_SPAN
    assert_children(traces, root)
    assert inner[0] == hex_ids(root)[0]


def test_an_executor_with_its_own_boundary_is_wrapped_once(traces):
    threads.instrument(span="job")
    asyncio_boundary.instrument(relation="none")  # would cut the trace if it wrapped as well

    async def main():
        with tl.span("handler") as root:
            await asyncio.get_running_loop().run_in_executor(None, work)
        return root

    root = asyncio.run(main())
    t = traces.trace(hex_ids(root)[0])  # (asyncio.run's executor shutdown thread has its own)
    job = t.find("job")  # the threads boundary's span, once; asyncio's policy is not applied
    assert (job.parent_id, t.find("work").parent_id) == (hex_ids(root)[1], job.span_id)


def test_an_executor_subclass_with_its_own_submit_is_still_carried(traces):
    class QueuedPool(OneWorker, ThreadPoolExecutor):
        """A ThreadPoolExecutor whose own submit never reaches the pool's (patched) one."""

    ex = QueuedPool()

    async def main():
        with tl.span("handler") as root:
            await asyncio.get_running_loop().run_in_executor(ex, work)
        return root

    try:
        root = asyncio.run(main())
    finally:
        ex.shutdown()
    assert_children(traces, root)


def test_span_per_callback_leaves_asyncios_own_callbacks_alone(traces):
    asyncio_boundary.instrument(span=True)

    def user_callback(seen):
        seen.set_result(current_ids())

    async def main():
        loop = asyncio.get_running_loop()
        seen = loop.create_future()
        with tl.span("schedule") as root, ThreadPoolExecutor(1) as pool:
            await asyncio.sleep(0.001)  # asyncio wakes itself with _set_result_unless_cancelled
            await asyncio.wrap_future(pool.submit(current_ids))  # and _chain_future's _set_state
            loop.call_soon(seen.set_result, None)  # Future.set_result, scheduled by the user
            await seen
            seen = loop.create_future()
            loop.call_soon(user_callback, seen)
            inside = await seen
        return root, inside

    root, inside = asyncio.run(main())
    t = traces.trace(hex_ids(root)[0])
    assert sorted(s.name for s in t.spans) == [
        "schedule",
        "test_span_per_callback_leaves_asyncios_own_callbacks_alone.<locals>.user_callback",
    ]
    (callback,) = [s for s in t.spans if s.name != "schedule"]
    assert (callback.parent_id, inside) == (hex_ids(root)[1], (t.trace_id, callback.span_id))
