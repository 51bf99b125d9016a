"""A unit of work bound to the context it was handed off in, and the policy a boundary runs it by.

Every in-process boundary (and the process boundaries, which pickle it) wraps the callable it
hands over in a Task at hand-off time. A Task is never wrapped again: a boundary that is given a
Task passes it through, so stacked boundaries (asyncio's run_in_executor over a patched
ThreadPoolExecutor, a patched process Pool under ThreadPool) capture and resume exactly once.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

from threadline.seam import RELATIONS, Handoff, Relation, attach, current, reset, resume

__all__ = ["Policy", "Task", "task_name"]


class Policy:
    """How a boundary continues the sender's work.

    relation: "child" (default: the task continues the sender's trace), "link" (a new trace whose
    task span links to the sender) or "none" (the task starts clean).
    span: False runs the task in the sender's context without a span of its own (the cheapest
    hop); True gives each task a span named after its function; a string names that span.
    Left as None it is True for "link" (the link lives on that span) and False otherwise.
    """

    __slots__ = ("relation", "span")

    def __init__(self, relation: Relation = "child", span: bool | str | None = None) -> None:
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
        if span is None:
            span = relation == "link"
        if not isinstance(span, bool | str) or span == "":
            raise ValueError(f"span must be True, False or a non-empty span name, not {span!r}")
        if relation == "link" and span is False:
            raise ValueError("relation='link' needs a span per task: the link lives on that span")
        self.relation: Relation = relation
        self.span: bool | str = span

    @property
    def plain(self) -> bool:
        """Child without a span: exactly what copying the context already gives."""
        return self.relation == "child" and self.span is False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and (self.relation, self.span) == (
            other.relation,
            other.span,
        )

    def __hash__(self) -> int:
        return hash((self.relation, self.span))

    def __repr__(self) -> str:
        return f"Policy(relation={self.relation!r}, span={self.span!r})"


class Task:
    """fn, bound to the context captured when the Task was made; each call runs under it and
    restores the caller's context afterwards, so a reused worker never keeps a task's context.
    Picklable when fn is (the context travels as its W3C carrier)."""

    __slots__ = ("fn", "context", "relation", "name", "plain")

    def __init__(self, fn: Callable[..., Any], policy: Policy, name: str | None = None) -> None:
        self.fn = fn
        self.context = current()  # the capture: the context object itself, nothing formatted
        self.relation: Relation = policy.relation
        span = policy.span
        self.name = (span if isinstance(span, str) else name or task_name(fn)) if span else None
        self.plain = self.name is None and self.relation == "child"

    @property
    def handoff(self) -> Handoff:
        return Handoff(self.context)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.plain:  # the hop alone: set, run, reset
            token = attach(self.context)
            try:
                return self.fn(*args, **kwargs)
            finally:
                reset(token)
        with resume(Handoff(self.context), self.name, relation=self.relation):
            return self.fn(*args, **kwargs)

    def __reduce__(self):
        return (_rebuild, (self.fn, self.handoff, self.relation, self.name))

    def __getattr__(self, attr: str) -> Any:  # __name__, __qualname__, __wrapped__... of fn
        if attr in Task.__slots__:  # a slot not yet set (mid-unpickling): no recursion into fn
            raise AttributeError(attr)
        return getattr(self.fn, attr)

    def __repr__(self) -> str:
        return f"Task({self.fn!r}, {self.handoff!r})"


def _rebuild(
    fn: Callable[..., Any], handoff: Handoff, relation: Relation, name: str | None
) -> Task:
    task = Task.__new__(Task)
    task.fn, task.context, task.relation, task.name = fn, handoff.context, relation, name
    task.plain = name is None and relation == "child"
    return task


def task_name(fn: Any) -> str:
    """The qualified name of what fn really runs (through partials and Context.run)."""
    while isinstance(fn, functools.partial):
        runs_in_context = isinstance(getattr(fn.func, "__self__", None), contextvars.Context)
        fn = fn.args[0] if runs_in_context and fn.args else fn.func
    if isinstance(fn, Task):
        fn = fn.fn
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__
