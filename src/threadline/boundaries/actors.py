"""Actors: a call with a reply, and a cast, over a pair of mailboxes (Erlang's GenServer).

    counter = Actor(requests, replies, "counter")     # the callers' handle: any two queues
    counter.call(("add", 2), timeout=5)              # the reply, or CallTimeout after 5 s
    counter.cast(("reset",))                         # a send with no reply
    counter.stop()                                   # the loop returns after what came before

    serve(requests, replies, handle, name="counter")  # the actor: in a thread or a process

Each message the actor takes runs ``handle(message)`` in a CONSUMER "process <name>" span, a
child of the sender's "send <name>" span. For a call, the caller's CLIENT "call <name>" span
holds the send, and the reply comes back as its child: the actor sends it from its process span
("send <name>.reply") and the caller takes it in a CONSUMER "process <name>.reply" span under
the call span, linked to the actor's send. So one trace runs caller -> actor -> caller.

The queues are anything with ``put`` and ``get(block, timeout)``: ``queue.Queue`` between
threads, ``multiprocessing`` queues (and managers' queue proxies) between processes. Replies
carry the call's reference: callers in several threads may share one handle and one reply
queue; a reply that comes after its call gave up is dropped and counted (``late_replies``).

What happens on error: a call whose handler raises gets ``ActorError`` naming the exception (the
actor records it on its span and goes on); a cast whose handler raises is recorded on the span
and logged; a call with no reply within ``timeout`` raises ``CallTimeout`` (a TimeoutError), its
span ended with status ERROR. A message put on the requests queue by code that knows nothing
of actors is handled as a cast.
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from threadline.boundaries.mailboxes import Envelope, Mailbox
from threadline.seam import start_span

__all__ = ["Actor", "ActorError", "CallTimeout", "serve"]

log = logging.getLogger("threadline")

_CALL, _CAST, _STOP = "threadline.call", "threadline.cast", "threadline.stop"
DEFAULT_TIMEOUT = 5.0  # seconds, GenServer.call's default


class ActorError(RuntimeError):
    """The actor's handler raised while answering a call."""


class CallTimeout(TimeoutError):
    """No reply within the call's timeout."""


class Actor:
    """The callers' handle on an actor: ``requests`` is the queue the actor takes messages from,
    ``replies`` the queue it answers calls on, ``name`` names the spans and
    ``messaging.destination.name``."""

    def __init__(self, requests: Any, replies: Any, name: str = "actor") -> None:
        for label, q in (("requests", requests), ("replies", replies)):
            if not (callable(getattr(q, "put", None)) and callable(getattr(q, "get", None))):
                raise TypeError(
                    f"Actor's {label} must be a queue with put() and get(block, timeout), "
                    f"not {type(q).__name__}"
                )
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        self.name = name
        self._requests = Mailbox(requests, name)
        self._replies = replies
        self._reply_name = f"{name}.reply"
        self._lock = threading.Condition()
        self._waiting: set[str] = set()
        self._arrived: dict[str, Envelope | Any] = {}  # replies taken by another caller's read
        self._reading = False
        self.late_replies = 0  # replies that came after their call gave up

    def call(self, message: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Send ``message`` and wait for the reply (``timeout`` seconds; None: for ever).
        Raises CallTimeout when none comes in time, ActorError when the handler raised."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
        ):
            raise ValueError(f"timeout must be None or seconds >= 0, not {timeout!r}")
        ref = uuid.uuid4().hex
        deadline = None if timeout is None else time.monotonic() + timeout
        with start_span(f"call {self.name}", kind=SpanKind.CLIENT):
            with self._lock:
                self._waiting.add(ref)
            try:
                self._requests.send((_CALL, ref, message))
                reply = self._await(ref, deadline, timeout)
            finally:
                with self._lock:
                    self._waiting.discard(ref)
            handoff = reply.handoff if isinstance(reply, Envelope) else None
            _, ok, value = reply.item if isinstance(reply, Envelope) else reply
            attrs = {
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": self._reply_name,
            }
            with start_span(
                f"process {self._reply_name}",
                attributes=attrs,
                kind=SpanKind.CONSUMER,
                links=[handoff] if handoff else None,
            ):
                if not ok:
                    raise ActorError(f"actor {self.name!r} {value}")
                return value

    def cast(self, message: Any) -> None:
        """Send ``message``; no reply."""
        self._requests.send((_CAST, None, message))

    def stop(self) -> None:
        """Ask the actor's loop to return once it has handled what was sent before."""
        self._requests.send((_STOP, None, None))

    def _await(self, ref: str, deadline: float | None, timeout: float | None) -> Any:
        """The reply to ref. One caller reads the queue at a time; a reply for another waiting
        caller is left for it, one for no caller is late (its call gave up) and dropped."""
        with self._lock:
            while ref not in self._arrived and self._reading:
                if not self._lock.wait(_left(deadline)) and _left(deadline) == 0:
                    raise self._timeout(timeout)
            if ref in self._arrived:
                return self._arrived.pop(ref)
            self._reading = True
        try:
            while True:
                left = _left(deadline)
                try:
                    raw = self._replies.get(False) if left == 0 else self._replies.get(True, left)
                except stdlib_queue.Empty:
                    raise self._timeout(timeout) from None
                item = raw.item if isinstance(raw, Envelope) else raw
                if not (isinstance(item, tuple) and len(item) == 3):
                    log.warning("threadline: actor %r: not a reply, dropped: %r", self.name, item)
                    continue
                if item[0] == ref:
                    return raw
                with self._lock:
                    if item[0] in self._waiting:
                        self._arrived[item[0]] = raw
                        self._lock.notify_all()
                    else:
                        self.late_replies += 1
        finally:
            with self._lock:
                self._reading = False
                self._lock.notify_all()

    def _timeout(self, timeout: float | None) -> CallTimeout:
        return CallTimeout(f"no reply from actor {self.name!r} within {timeout} s")

    def __repr__(self) -> str:
        return f"Actor({self.name!r})"


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def serve(requests: Any, replies: Any, handle: Callable[[Any], Any], *, name: str = "actor") -> int:
    """The actor's loop: take each message from ``requests`` and run ``handle(message)`` in a
    CONSUMER "process <name>" span continuing the sender's trace; a call's return value (or
    the exception it raised) goes back on ``replies``. Returns the number of messages handled
    once ``Actor.stop()`` arrives."""
    inbox = Mailbox(requests, name)
    outbox = Mailbox(replies, f"{name}.reply")
    handled = 0
    while True:
        with inbox.receive() as message:
            if (
                isinstance(message, tuple)
                and len(message) == 3
                and message[0]
                in (
                    _CALL,
                    _CAST,
                    _STOP,
                )
            ):
                kind, ref, payload = message
            else:  # put there by code that knows nothing of actors: a cast
                kind, ref, payload = _CAST, None, message
            if kind == _STOP:
                return handled
            handled += 1
            try:
                value, ok = handle(payload), True
            except Exception as exc:  # noqa: BLE001 - the caller hears of it; the actor goes on
                span = trace.get_current_span()
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                value, ok = f"raised {type(exc).__name__}: {exc}", False
                if kind == _CAST:
                    log.warning("threadline: actor %r: a cast raised %r", name, exc)
            if kind == _CALL:
                outbox.send((ref, ok, value))
