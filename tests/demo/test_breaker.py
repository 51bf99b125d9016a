"""The demo's circuit breaker: every state change is an event on the span current at the time."""

from __future__ import annotations

import pytest

import threadline as tl
from threadline.demo.breaker import EVENT, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def moves(span) -> list[tuple[str, str]]:
    return [
        (e["circuit_breaker.from"], e["circuit_breaker.to"]) for n, e in span.events if n == EVENT
    ]


def test_open_half_open_and_back(traces):
    clock = Clock()
    b = CircuitBreaker("payments", failures=2, cooldown=5, clock=clock)
    with tl.span("first"):
        b.check()
        b.failure("HTTP 500")
        b.check()
        b.failure("timed out")  # second in a row: opens
        with pytest.raises(CircuitOpen, match="retry after 5.0s"):
            b.check()
    clock.now += 4.9
    with tl.span("refused"), pytest.raises(CircuitOpen) as refused:
        b.check()
    assert refused.value.retry_after == pytest.approx(0.1)
    clock.now += 0.1
    with tl.span("trial fails"):
        b.check()  # cooldown over: one trial call
        b.failure("HTTP 503")  # a failed trial opens it again at once
    clock.now += 5
    with tl.span("trial succeeds"):
        b.check()
        b.success()
    with tl.span("closed"):
        b.check()
    spans = {s.name: s for s in traces.spans}
    assert moves(spans["first"]) == [("closed", "open")]
    assert (
        spans["first"].event(EVENT)["circuit_breaker.reason"]
        == "2 failure(s) in a row, last: timed out"
    )
    assert moves(spans["refused"]) == []
    assert spans["refused"].attributes["circuit_breaker.state"] == "open"
    assert moves(spans["trial fails"]) == [("open", "half_open"), ("half_open", "open")]
    assert moves(spans["trial succeeds"]) == [("open", "half_open"), ("half_open", "closed")]
    assert spans["closed"].attributes["circuit_breaker.state"] == "closed"


def test_a_success_resets_the_count(traces):
    b = CircuitBreaker("payments", failures=2, clock=Clock())
    with tl.span("calls"):
        b.failure("x")
        b.success()
        b.failure("y")
        b.check()  # one failure in a row: still closed
    assert b.state == "closed" and moves(traces.one().find("calls")) == []


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"cooldown": 0}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kwargs)
