"""Capture keeps one span per span id: a completed span replaces its pending announcement."""

from __future__ import annotations

from threadline.testing import Capture, CapturedSpan


def span(span_id: str, pending: bool, end_ns: int) -> CapturedSpan:
    attrs = {"threadline.pending": True} if pending else {}
    return CapturedSpan(
        "work", "ab" * 16, span_id, None, "INTERNAL", "UNSET", "", 10, end_ns, attrs
    )


def test_a_completed_span_supersedes_its_announcement_in_either_order():
    capture = Capture()
    capture.add([span("01" * 8, True, 10), span("02" * 8, False, 30)])
    capture.add([span("01" * 8, False, 20), span("02" * 8, True, 10)])
    assert [(s.span_id, s.pending, s.end_ns) for s in capture.spans] == [
        ("01" * 8, False, 20),
        ("02" * 8, False, 30),
    ]
    assert capture.incomplete == []


def test_an_announcement_never_completed_is_incomplete():
    capture = Capture()
    capture.add([span("03" * 8, True, 10)])
    (only,) = capture.incomplete
    assert (only.span_id, only.pending, only.end_ns) == ("03" * 8, True, 10)
    assert "(incomplete)" in capture.one().tree()
