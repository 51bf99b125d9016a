import asyncio
import logging
import traceback

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl


def ids(span):
    return span.context.trace_id, span.context.span_id


def test_nested_spans_form_a_tree(memory, finished):
    with tl.span("outer", attributes={"a": 1}) as outer:
        with tl.span("inner", kind="client") as inner:
            assert trace.get_current_span() is inner
        assert trace.get_current_span() is outer
    spans = {s.name: s for s in finished(memory)}
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert spans["inner"].context.trace_id == spans["outer"].context.trace_id
    assert spans["outer"].parent is None
    assert spans["inner"].kind is SpanKind.CLIENT
    assert spans["outer"].attributes["a"] == 1
    assert not trace.get_current_span().get_span_context().is_valid


def test_exception_is_recorded_and_reraised_unchanged(memory, finished):
    err = KeyError("missing")
    with pytest.raises(KeyError) as caught:
        with tl.span("fails"):
            raise err
    assert caught.value is err
    (span,) = finished(memory)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "KeyError: 'missing'"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert event.attributes["exception.message"] == "'missing'"
    assert "raise err" in event.attributes["exception.stacktrace"]


class Opaque:
    __slots__ = ()

    def __repr__(self):
        return "<Opaque>"


def test_values_the_api_accepts_pass_as_they_are_without_a_warning(memory, finished, caplog):
    caplog.set_level(logging.WARNING)
    attrs = {
        "ok": [1, 2],
        "b": b"\x00\x01",
        "n": None,
        "m": {"x": 1, "y": [True]},
        "mixed": [1, "a"],
    }
    with tl.span("attrs", attributes=attrs) as s:
        s.set_attribute("later.m", {"k": "v"})
        s.set_attributes({"later.b": b"z", "later.n": None})
    (span,) = finished(memory)
    assert dict(span.attributes) == {
        "ok": (1, 2),
        "b": b"\x00\x01",
        "n": None,
        "m": {"x": 1, "y": (True,)},
        "mixed": (1, "a"),
        "later.m": {"k": "v"},
        "later.b": b"z",
        "later.n": None,
    }
    assert [r.getMessage() for r in caplog.records] == []


def test_a_value_the_api_rejects_is_kept_as_repr_with_a_warning_naming_the_key(
    memory, finished, caplog
):
    from threadline import _attributes

    _attributes._warned.clear()
    caplog.set_level(logging.WARNING)
    with tl.span("attrs", attributes={"obj": Opaque(), 7: "seven"}) as s:
        s.set_attribute("later", Opaque())
        s.set_attributes({"later.many": {Opaque()}, "obj": Opaque()})
    (span,) = finished(memory)
    assert dict(span.attributes) == {
        "obj": "<Opaque>",
        "7": "seven",
        "later": "<Opaque>",
        "later.many": "{<Opaque>}",
    }
    messages = [r.getMessage() for r in caplog.records]
    rejected = "OpenTelemetry does not accept a value of type {}; recorded as its repr"
    assert messages == [
        f"threadline: attribute 'obj': {rejected.format('Opaque')} (logged once per key)",
        "threadline: attribute key 7 is not a string but int; recorded as its str() "
        "(logged once per key)",
        f"threadline: attribute 'later': {rejected.format('Opaque')} (logged once per key)",
        f"threadline: attribute 'later.many': {rejected.format('set')} (logged once per key)",
    ]


def test_span_arguments_are_checked(memory):
    with pytest.raises(ValueError, match="span name must be a non-empty string"):
        tl.span("")
    with pytest.raises(ValueError, match="kind must be a SpanKind or one of"):
        tl.span("x", kind="sideways")
    with pytest.raises(TypeError, match="links takes Link, SpanContext, Span or Handoff"):
        with tl.span("x", links=[42]):
            pass
    with pytest.raises(TypeError, match="attributes must be a mapping of names to values, not str"):
        tl.span("x", attributes="a=1")
    with pytest.raises(TypeError, match="attributes must be a mapping"):
        tl.traced(attributes=[("a", 1)])(print)


def test_links_accept_handoffs_and_spans(memory, finished):
    with tl.span("a") as a:
        h = tl.capture()
    with tl.span("b", links=[h, a]):
        pass
    spans = {s.name: s for s in finished(memory)}
    linked = [link.context.span_id for link in spans["b"].links]
    assert linked == [spans["a"].context.span_id] * 2


class Shop:
    @tl.traced
    def checkout(self, n):
        with tl.span("inside"):
            return n * 2


def test_traced_sync_uses_qualname_and_returns(memory, finished):
    assert Shop().checkout(21) == 42
    spans = {s.name: s for s in finished(memory)}
    assert set(spans) == {"Shop.checkout", "inside"}
    assert spans["inside"].parent.span_id == spans["Shop.checkout"].context.span_id


def test_traced_with_name_attributes_and_kind(memory, finished):
    @tl.traced(name="charge card", attributes={"payment.provider": "acme"}, kind="client")
    def charge():
        raise RuntimeError("declined")

    with pytest.raises(RuntimeError, match="declined"):
        charge()
    (span,) = finished(memory)
    assert span.name == "charge card"
    assert span.attributes["payment.provider"] == "acme"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "RuntimeError"


def test_traced_coroutine(memory, finished):
    @tl.traced
    async def fetch(x):
        await asyncio.sleep(0)
        with tl.span("io"):
            await asyncio.sleep(0)
        return x

    @tl.traced
    async def handler():
        return await asyncio.gather(fetch(1), fetch(2))

    assert asyncio.run(handler()) == [1, 2]
    spans = finished(memory)
    root = next(s for s in spans if s.name.endswith("handler"))
    fetches = [s for s in spans if s.name.endswith("fetch")]
    ios = [s for s in spans if s.name == "io"]
    assert len(fetches) == 2 and len(ios) == 2
    assert {f.parent.span_id for f in fetches} == {root.context.span_id}
    assert {io.parent.span_id for io in ios} == {f.context.span_id for f in fetches}
    assert len({s.context.trace_id for s in spans}) == 1


def test_traced_generator_covers_the_whole_iteration(memory, finished):
    @tl.traced
    def numbers():
        for i in range(3):
            with tl.span(f"make {i}"):
                pass
            yield i

    seen_between = []
    with tl.span("consumer") as consumer:
        for n in numbers():
            # between items the consumer's own span is current, not the generator's
            seen_between.append(trace.get_current_span() is consumer)
            assert n in (0, 1, 2)
    assert seen_between == [True, True, True]
    spans = {s.name: s for s in finished(memory)}
    gen = spans["test_traced_generator_covers_the_whole_iteration.<locals>.numbers"]
    for i in range(3):
        assert spans[f"make {i}"].parent.span_id == gen.context.span_id
    assert gen.parent.span_id == spans["consumer"].context.span_id
    assert gen.end_time >= spans["make 2"].end_time


def test_traced_generator_send_throw_and_return(memory, finished):
    @tl.traced(name="echo")
    def echo():
        received = []
        try:
            while True:
                received.append((yield len(received)))
        except GeneratorExit:
            raise
        except ValueError:
            return received

    g = echo()
    assert next(g) == 0
    assert g.send("a") == 1
    with pytest.raises(StopIteration) as stop:
        g.throw(ValueError("done"))
    assert stop.value.value == ["a"]
    (span,) = finished(memory)
    assert span.name == "echo"
    assert span.status.status_code is StatusCode.UNSET


def test_traced_generator_error_and_early_close(memory, finished):
    @tl.traced(name="boom")
    def boom():
        yield 1
        raise OSError("disk")

    @tl.traced(name="endless")
    def endless():
        while True:
            yield 1

    with pytest.raises(OSError, match="disk"):
        list(boom())
    g = endless()
    next(g)
    g.close()
    spans = {s.name: s for s in finished(memory)}
    assert spans["boom"].status.status_code is StatusCode.ERROR
    assert spans["endless"].status.status_code is StatusCode.UNSET
    assert spans["endless"].end_time is not None


def test_traced_async_generator(memory, finished):
    @tl.traced(name="ticks")
    async def ticks():
        for i in range(2):
            with tl.span(f"tick {i}"):
                await asyncio.sleep(0)
            yield i

    async def main():
        with tl.span("loop") as loop_span:
            out = []
            async for t in ticks():
                assert trace.get_current_span() is loop_span
                out.append(t)
            return out

    assert asyncio.run(main()) == [0, 1]
    spans = {s.name: s for s in finished(memory)}
    assert spans["tick 0"].parent.span_id == spans["ticks"].context.span_id
    assert spans["tick 1"].parent.span_id == spans["ticks"].context.span_id
    assert spans["ticks"].parent.span_id == spans["loop"].context.span_id


def test_traced_rejects_non_callables():
    with pytest.raises(TypeError, match="@traced decorates a callable"):
        tl.traced(42)


def test_stack_is_preserved_for_errors(memory):
    @tl.traced
    def inner():
        raise ZeroDivisionError("x")

    with pytest.raises(ZeroDivisionError) as caught:
        inner()
    frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == "inner"


def plain_decorator(f):
    def inner(*args, **kwargs):
        return f(*args, **kwargs)

    return inner


def test_traced_over_a_plain_decorator_covers_what_the_call_returns(memory, finished):
    @tl.traced(name="coro")
    @plain_decorator
    async def coro():
        await asyncio.sleep(0.001)
        with tl.span("in coro"):
            return 1

    @tl.traced(name="gen")
    @plain_decorator
    def gen():
        with tl.span("in gen"):
            yield 1

    @tl.traced(name="agen")
    @plain_decorator
    async def agen():
        await asyncio.sleep(0)
        with tl.span("in agen"):
            yield 1

    async def main():
        assert await coro() == 1
        assert [i async for i in agen()] == [1]

    assert list(gen()) == [1]
    asyncio.run(main())
    spans = {s.name: s for s in finished(memory)}
    for outer in ("coro", "gen", "agen"):
        inner = spans[f"in {outer}"]
        assert inner.parent.span_id == spans[outer].context.span_id
        assert spans[outer].end_time >= inner.end_time


def test_wrap_runs_generators_in_the_captured_context(memory, finished):
    def steps():
        for i in range(2):
            with tl.span(f"step {i}"):
                yield i

    async def asteps():
        with tl.span("astep"):
            yield 1

    def makes_a_generator():
        return steps()

    with tl.span("origin") as origin:
        wrapped = [tl.wrap(steps), tl.wrap(makes_a_generator)]
        awrapped = tl.wrap(asteps)

    async def consume():
        return [i async for i in awrapped()]

    with tl.span("elsewhere"):
        assert [list(w()) for w in wrapped] == [[0, 1], [0, 1]]
        assert asyncio.run(consume()) == [1]
    spans = finished(memory)
    inner = [s for s in spans if s.name.startswith(("step", "astep"))]
    assert len(inner) == 5
    assert {s.parent.span_id for s in inner} == {origin.get_span_context().span_id}


def test_cancellation_is_not_an_error_anywhere(memory, finished):
    @tl.traced(name="coroutine")
    async def coroutine():
        await asyncio.sleep(10)

    @tl.traced(name="async generator")
    async def ticks():
        while True:
            await asyncio.sleep(10)
            yield 1

    async def block():
        with tl.span("block"):
            await asyncio.sleep(10)

    async def consume():
        async for _ in ticks():
            pass

    async def main():
        tasks = [asyncio.create_task(c) for c in (coroutine(), consume(), block())]
        await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)

    asyncio.run(main())
    spans = {s.name: s for s in finished(memory)}
    assert sorted(spans) == ["async generator", "block", "coroutine"]
    for s in spans.values():
        assert (s.status.status_code, s.events) == (StatusCode.UNSET, ()), s.name


def test_decorated_functions_keep_their_kind_for_frameworks_that_inspect_it():
    import inspect

    async def coro():
        pass

    def gen():
        yield

    async def agen():
        yield

    for wrap in (tl.traced, tl.wrap):
        assert inspect.iscoroutinefunction(wrap(coro))
        assert inspect.isgeneratorfunction(wrap(gen))
        assert inspect.isasyncgenfunction(wrap(agen))
        assert wrap(agen).__name__ == "agen"
