"""One span model: the analysis functions take the server's Span or the testing plugin's
CapturedSpan, and give the same answers for the same spans."""

from __future__ import annotations

import pytest
from opentelemetry.trace import Status, StatusCode

import threadline as tl
from threadline.server import analysis as an
from threadline.server.model import (
    KIND_CONSUMER,
    KIND_PRODUCER,
    STATUS_ERROR,
    Event,
    Link,
    Span,
    as_span,
    to_captured,
)
from threadline.testing import CapturedSpan, hex_ids


def test_a_captured_trace_is_analysed_as_the_server_would(traces):
    with tl.span("checkout") as root:
        with tl.span("publish", kind="producer"):
            h = tl.capture()
        with tl.resume(h, "process", kind="consumer"):
            with tl.span("charge") as charge:
                charge.set_status(Status(StatusCode.ERROR, "card declined"))
    captured = traces.one().spans
    assert all(isinstance(s, CapturedSpan) for s in captured)

    tree = an.assemble(captured)
    assert [n.name for n in tree.real_roots] == ["checkout"]
    assert tree.real_roots[0].span_id == hex_ids(root)[1]
    assert [n.name for n in tree.walk()] == ["checkout", "publish", "process", "charge"]
    assert an.breaks(tree) == []
    result = an.analyse(captured)
    assert result.error_count == 1
    assert result.services == ["tests"]
    c = an.completeness([captured])
    assert (c.traces, c.one_root, c.with_orphans) == (1, 1, 0)

    # the same spans as the model give the same answers
    model = [as_span(s) for s in captured]
    assert [n.name for n in an.assemble(model).walk()] == [n.name for n in tree.walk()]
    (process,) = [s for s in model if s.name == "process"]
    (publish,) = [s for s in model if s.name == "publish"]
    assert (process.kind, process.parent_span_id) == (KIND_CONSUMER, publish.span_id)
    (failed,) = [s for s in model if s.name == "charge"]
    assert (failed.status_code, failed.status_message) == (STATUS_ERROR, "card declined")
    assert as_span(captured[0]).parent_span_id == ""  # a root: None in the view, "" in the model


def test_the_views_convert_both_ways_without_loss_of_what_both_hold():
    span = Span(
        trace_id="ab" * 16,
        span_id="01" * 8,
        parent_span_id="",
        name="send",
        kind=KIND_PRODUCER,
        start_ns=10,
        end_ns=20,
        service="shop",
        status_code=STATUS_ERROR,
        status_message="broker down",
        attributes={"n": 1},
        resource={"service.name": "shop"},
        scope_name="threadline",
        events=[Event(0, "retry", {"attempt": 2})],
        links=[Link("cd" * 16, "02" * 8, attributes={"k": "v"})],
    )
    view = to_captured(span)
    assert (view.kind, view.status, view.parent_id, view.service) == (
        "PRODUCER",
        "ERROR",
        None,
        "shop",
    )
    assert as_span(view) == span


def test_a_span_of_neither_model_is_refused_by_name():
    with pytest.raises(TypeError, match="expected a threadline Span or CapturedSpan, not dict"):
        an.assemble([{"name": "x"}])
    bad = CapturedSpan("x", "ab" * 16, "01" * 8, None, "SERVERISH", "UNSET", "", 1, 2)
    with pytest.raises(ValueError, match="kind 'SERVERISH'"):
        an.assemble([bad])
