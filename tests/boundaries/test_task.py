import asyncio
import contextvars
import functools
import pickle

import pytest
from opentelemetry import trace

import threadline as tl
from threadline import boundaries
from threadline.boundaries import threads
from threadline.boundaries._task import Policy, Task, task_name
from threadline.testing import hex_ids


def current_ids():
    return hex_ids(trace.get_current_span())


def test_a_task_pickles_with_its_context_as_w3c_headers(traces):
    with tl.span("sender") as root:
        task = Task(current_ids, Policy())
    data = pickle.dumps(task)
    assert b"traceparent" in data and b"opentelemetry.context" not in data
    assert pickle.loads(data)() == hex_ids(root)
    assert current_ids() == ("0" * 32, "0" * 16)


def test_a_task_looks_like_its_function():
    task = Task(current_ids, Policy())
    assert (task.__name__, task.__qualname__) == ("current_ids", "current_ids")


def test_task_names_see_through_partials_and_context_run():
    ctx = contextvars.copy_context()
    assert task_name(functools.partial(ctx.run, current_ids)) == "current_ids"
    assert task_name(functools.partial(functools.partial(print, 1), 2)) == "print"
    assert task_name(Task(current_ids, Policy())) == "current_ids"
    assert task_name(object()) == "object"


def test_policy_defaults_and_errors():
    assert (Policy().relation, Policy().span, Policy().plain) == ("child", False, True)
    assert Policy("link").span is True
    assert Policy("none").plain is False
    with pytest.raises(ValueError, match="span must be"):
        Policy(span="")


def test_configure_installs_threads_and_asyncio():
    boundaries.uninstrument("threads", "asyncio")
    tl.configure("tests", exporter="none", boundaries=False)
    assert "threads" not in boundaries.instrumented()
    threads.instrument(span="job")
    tl.configure("tests", exporter="none")
    assert {"threads", "asyncio"} <= set(boundaries.instrumented())
    assert threads.policy() == Policy(span="job")  # a chosen policy survives reconfiguring
    threads.instrument(relation="child")

    async def hop():
        return await asyncio.to_thread(current_ids)

    with tl.span("s") as root:
        assert asyncio.run(hop()) == hex_ids(root)
