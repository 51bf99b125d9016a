"""Mailboxes: a traced send / receive over any queue, following the OTel messaging conventions.

    orders = Mailbox(queue.Queue(), "orders")
    orders.send(item)                       # PRODUCER span "send orders"; the item travels sealed
    with orders.receive(timeout=5) as item: # CONSUMER span "process orders" around the block,
        handle(item)                        # a child of the send span (or linked, on request)

The receiving side must take items through ``receive()`` / ``areceive()`` (or hand what it got to
``open()``): a plain ``get()`` returns the ``Envelope`` itself, whose ``.item`` is the payload.
Items put by untraced code come out of ``receive()`` unchanged and are processed under the
receiver's own context. An Envelope orders by its item, so ``PriorityQueue`` order is unchanged.
``receive_batch(max_size=, timeout=)`` (Broadway's batch size and batch timeout) /
``open_batch()`` process many messages in one CONSUMER span that links to each sender (the
messaging conventions' batch receive), capped and deduplicated.

A Mailbox is generic over a put function and a get function (``Mailbox(put=conn.send,
get=conn.recv, name="results")``), so the same envelope crosses processes: pickled, it carries
the W3C carrier (traceparent, tracestate, baggage) instead of the in-process Context.

Nothing is patched here. ``instrument()`` / ``uninstrument()`` switch tracing of the explicit API on and
off (on by default); when off, ``send`` puts the bare item and ``receive`` still unwraps envelopes.
"""

from __future__ import annotations

import asyncio
import inspect
import queue as stdlib_queue
import time
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection as _Connection
from multiprocessing.queues import SimpleQueue as _ProcessSimpleQueue
from typing import Any, cast

from opentelemetry.trace import SpanKind

from threadline.boundaries._renamed import renamed
from threadline.seam import (
    RELATIONS,
    Handoff,
    Relation,
    batch_span,
    capture,
    compact,
    from_compact,
    resume,
    sender_links,
    start_span,
)

__all__ = [
    "Batch",
    "Delivery",
    "Envelope",
    "Mailbox",
    "install",
    "installed",
    "instrument",
    "instrumented",
    "open",
    "open_batch",
    "seal",
    "sender_links",
    "uninstall",
    "uninstrument",
]

_installed = True
_relation: Relation = "child"


class _Unset:
    """The type of an argument not given (None has a meaning of its own)."""


_UNSET = _Unset()
_NOTHING = object()  # a take that found no message in time


class Envelope:
    """An item sealed with the context it was sent from (``handoff``, what capture() returned
    then). Compares by its item (PriorityQueue)."""

    __slots__ = ("item", "handoff")

    def __init__(self, item: Any, handoff: Handoff) -> None:
        self.item = item
        self.handoff = handoff

    # Across processes an Envelope carries what the W3C carrier would: most often just the
    # traceparent's three numbers (seam.compact), sent as they are and read back without parsing
    # a header. Anything more (tracestate, baggage, other propagators) travels as the Handoff's
    # carrier.
    def __reduce__(self):
        numbers = compact(self.handoff)
        if numbers is None:
            return (Envelope, (self.item, self.handoff))
        return (_unseal, (self.item, *numbers))

    def __lt__(self, other: Any) -> bool:
        return self.item < _item(other)

    def __le__(self, other: Any) -> bool:
        return self.item <= _item(other)

    def __gt__(self, other: Any) -> bool:
        return self.item > _item(other)

    def __ge__(self, other: Any) -> bool:
        return self.item >= _item(other)

    def __repr__(self) -> str:
        return f"Envelope({self.item!r}, {self.handoff!r})"


def _unseal(item: Any, trace_id: int, span_id: int, flags: int) -> Envelope:
    """An Envelope from its compact wire form (seam.from_compact)."""
    return Envelope(item, from_compact(trace_id, span_id, flags))


def _item(value: Any) -> Any:
    return value.item if type(value) is Envelope else value


def seal(item: Any) -> Any:
    """The item sealed with the context of now (the bare item while mailboxes are uninstalled).
    ``item`` is any value; it must pickle when the envelope crosses processes."""
    return Envelope(item, capture()) if _installed else item


class Delivery:
    """One received message. ``with delivery as item:`` runs the block in a CONSUMER
    "process <destination>" span continuing the sender's trace; ``.item`` is the payload.

    ``message`` is an Envelope or a bare item (processed under the receiver's own context);
    ``destination`` names the span and ``messaging.destination.name``; ``relation`` ("child",
    "link" or "none") defaults to the one instrument() set; ``attributes`` are added to the span.
    """

    __slots__ = ("item", "handoff", "destination", "relation", "_attributes", "_cm")

    def __init__(
        self,
        message: Any,
        destination: str,
        *,
        relation: Relation | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        if type(message) is Envelope:
            self.item, self.handoff = message.item, message.handoff
        else:
            self.item, self.handoff = message, None
        self.destination = destination
        self.relation: Relation = _check(relation or _relation)
        self._attributes = attributes
        self._cm = None

    def __enter__(self) -> Any:
        if _installed:
            name = f"process {self.destination}"
            attrs = _attrs(self._attributes, "process")
            if not self.handoff:  # sent from no trace: processed under the receiver's own context
                self._cm = start_span(name, attributes=attrs, kind=SpanKind.CONSUMER)
            elif self.relation == "child":  # resume(relation="child"), without its checks
                self._cm = start_span(
                    name, attributes=attrs, kind=SpanKind.CONSUMER, context=self.handoff.context
                )
            else:
                self._cm = resume(
                    self.handoff,
                    name,
                    relation=self.relation,
                    kind=SpanKind.CONSUMER,
                    attributes=attrs,
                )
            self._cm.__enter__()
        return self.item

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        cm, self._cm = self._cm, None
        return cm.__exit__(exc_type, exc, tb) if cm is not None else None

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        return self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"Delivery({self.item!r} from {self.destination!r}, {self.handoff!r})"


def open(  # the messaging verb; shadows the builtin only inside this module
    message: Any,
    destination: str,
    *,
    relation: Relation | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Delivery:
    """A Delivery for a message obtained any way at all (an envelope or a bare item).
    ``destination``, ``relation`` and ``attributes`` are as for Delivery."""
    return Delivery(message, destination, relation=relation, attributes=attributes)


class Batch:
    """Messages received together. ``with batch as items:`` runs the block in one CONSUMER
    "process <destination>" span under the receiver's context, linked to every distinct sender
    (at most semconv.MAX_LINKS; the rest are counted in semconv.LINKS_DROPPED).

    ``messages`` are Envelopes or bare items, mixed; ``destination`` names the span and
    ``messaging.destination.name``; ``attributes`` are added to the span.
    """

    __slots__ = ("items", "handoffs", "destination", "_attributes", "_cm")

    def __init__(
        self,
        messages: Iterable[Any],
        destination: str,
        *,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.items: list[Any] = []
        self.handoffs: list[Handoff] = []
        for message in messages:
            if type(message) is Envelope:
                self.items.append(message.item)
                self.handoffs.append(message.handoff)
            else:
                self.items.append(message)
        self.destination = destination
        self._attributes = attributes
        self._cm = None

    def __len__(self) -> int:
        return len(self.items)

    def __enter__(self) -> list[Any]:
        if _installed and self.items:
            self._cm = batch_span(
                f"process {self.destination}",
                self.handoffs,
                message_count=len(self.items),
                attributes=_attrs(self._attributes, "process"),
            )
            self._cm.__enter__()
        return self.items

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        cm, self._cm = self._cm, None
        return cm.__exit__(exc_type, exc, tb) if cm is not None else None

    def __repr__(self) -> str:
        return f"Batch({len(self.items)} from {self.destination!r})"


def open_batch(
    messages: Iterable[Any], destination: str, *, attributes: Mapping[str, Any] | None = None
) -> Batch:
    """A Batch for messages obtained any way at all (envelopes or bare items, mixed).
    ``destination`` and ``attributes`` are as for Batch."""
    return Batch(messages, destination, attributes=attributes)


def _attrs(extra: Mapping[str, Any] | None, operation: str) -> dict[str, Any]:
    attrs = {"messaging.operation.type": operation, "messaging.operation.name": operation}
    if extra:
        attrs.update(extra)
    return attrs


def _check(relation: str) -> Relation:
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
    return relation  # type: ignore[return-value]


class Mailbox:
    """A traced view of a queue (``queue.Queue``, ``LifoQueue``, ``PriorityQueue``,
    ``SimpleQueue``, ``asyncio.Queue``, ``multiprocessing`` queues and managers' queue proxies),
    of a ``multiprocessing`` Pipe connection (``send`` / ``recv``), or of any put / get pair.

    ``send`` / ``receive`` take the same extra arguments as the queue's own ``put`` / ``get``
    (``block``, ``timeout``); ``asend`` / ``areceive`` await them (``asyncio.Queue``).

    ``queue``: the queue or connection to wrap (it needs ``put`` and ``get``, or is a Pipe
    end); or, instead of it, ``put`` and ``get``: the functions that send and take one message.
    ``name``: the destination, in span names and ``messaging.destination.name`` (default: the
    queue's class name, or "mailbox"). ``system``: ``messaging.system`` (default: the queue's
    library, or "threadline"). ``relation``: "child", "link" or "none" for this mailbox's
    receives (default: the one instrument() set).
    """

    __slots__ = (
        "name",
        "system",
        "relation",
        "_put",
        "_get",
        "_poll",
        "_attributes",
        "_send_attributes",
        "_awaitable",
    )

    def __init__(
        self,
        queue: Any = None,
        name: str | None = None,
        *,
        put: Callable[..., Any] | None = None,
        get: Callable[..., Any] | None = None,
        system: str | None = None,
        relation: Relation | None = None,
    ) -> None:
        # How receive_batch waits when get() itself cannot (a Pipe end, a multiprocessing
        # SimpleQueue): poll(timeout) -> whether a message is there to take.
        self._poll: Callable[[float | None], bool] | None = None
        if queue is not None:
            if put is not None or get is not None:
                raise TypeError("Mailbox takes a queue or put= and get=, not both")
            if isinstance(queue, _Connection):
                self._poll = queue.poll  # one end of a Pipe: both directions
                put, get = queue.send, queue.recv
            elif isinstance(queue, str):
                raise TypeError(f"Mailbox(queue, name): the queue comes first, not {queue!r}")
            elif not (
                callable(getattr(queue, "put", None)) and callable(getattr(queue, "get", None))
            ):
                raise TypeError(
                    f"Mailbox's queue needs put() and get() methods, which {type(queue).__name__} "
                    "lacks; pass put= and get= functions for anything else"
                )
            else:
                put, get = queue.put, queue.get
                if isinstance(queue, _ProcessSimpleQueue):
                    self._poll = queue._reader.poll  # noqa: SLF001 - its get() has no timeout  # pyright: ignore[reportAttributeAccessIssue]
        if put is None or get is None:
            raise TypeError("Mailbox needs a queue, or both put= and get= functions")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        self.name = name or (type(queue).__name__ if queue is not None else "mailbox")
        # messaging.system: the queue's library ("queue", "asyncio", "multiprocessing").
        self.system = system or (
            type(queue).__module__.split(".")[0].lstrip("_") if queue is not None else "threadline"
        )
        self.relation: Relation | None = _check(relation) if relation is not None else None
        self._put, self._get = put, get
        self._awaitable = inspect.iscoroutinefunction(put) or inspect.iscoroutinefunction(get)
        self._attributes = {
            "messaging.system": self.system,
            "messaging.destination.name": self.name,
        }
        self._send_attributes = _attrs(self._attributes, "send")  # every span copies its own

    def _send_span(self):
        return start_span(
            f"send {self.name}", attributes=self._send_attributes, kind=SpanKind.PRODUCER
        )

    def send(self, item: Any, *args: Any, **kwargs: Any) -> Any:
        """Put the item, sealed, inside a PRODUCER "send <name>" span. Returns what put returns.
        ``args`` and ``kwargs`` go to put as they are."""
        if self._awaitable:
            raise TypeError(f"{self!r} has coroutine put/get: use `await mailbox.asend(item)`")
        if not _installed:
            return self._put(item, *args, **kwargs)
        with self._send_span():
            return self._put(Envelope(item, capture()), *args, **kwargs)

    async def asend(self, item: Any, *args: Any, **kwargs: Any) -> Any:
        """send() for a coroutine put (``asyncio.Queue``): awaits it."""
        if not _installed:
            return await self._put(item, *args, **kwargs)
        with self._send_span():
            return await self._put(Envelope(item, capture()), *args, **kwargs)

    def open(self, message: Any) -> Delivery:
        """A Delivery for a message (an Envelope or a bare item) taken from this mailbox some
        other way."""
        return Delivery(message, self.name, relation=self.relation, attributes=self._attributes)

    def receive(self, *args: Any, **kwargs: Any) -> Delivery:
        """Take one message now (``get(*args, **kwargs)``; ``queue.Empty`` etc. propagate).
        Use the result as ``with mailbox.receive() as item:`` to process it in its trace."""
        if self._awaitable:
            raise TypeError(f"{self!r} has coroutine put/get: use `async with mailbox.areceive()`")
        return self.open(self._get(*args, **kwargs))

    def receive_batch(
        self,
        max_size: int = 100,
        timeout: float | None = 1.0,
        *,
        wait: float | None | _Unset = _UNSET,
    ) -> Batch:
        """Take messages as one batch, with Broadway's batch size and batch timeout:
        ``with mailbox.receive_batch(max_size=100, timeout=1.0) as items:``.

        Waits up to ``wait`` seconds for the first message (default: ``timeout``; None: for
        ever), then up to ``timeout`` seconds from that first message for the batch to fill
        (None: until it is full), and then takes what is already waiting. The batch is handed
        over as soon as it holds ``max_size`` messages, or when the timeout passes with fewer:
        so messages a sender put together arrive together, even across a multiprocessing
        Queue whose feeder thread writes them to the pipe a little later. An empty batch
        (nothing arrived in time) makes no span.

        Works with a queue-style ``get(block, timeout)`` and with Pipe connections and
        multiprocessing SimpleQueues (their ``poll``). A Pipe closed after some messages ends
        the batch at them; closed before any, EOFError propagates as from receive()."""
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int, not {max_size!r}")
        for label, value in (("timeout", timeout), ("wait", wait)):
            if (
                value is not None
                and value is not _UNSET
                and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0)
            ):
                raise ValueError(f"{label} must be None or seconds >= 0, not {value!r}")
        if self._awaitable:
            raise TypeError(f"{self!r} has coroutine put/get: receive_batch needs a blocking get")
        first_wait = timeout if isinstance(wait, _Unset) else wait
        if self._poll is not None:
            take = self._poll_taker()
        elif _takes_block_and_timeout(self._get):
            take = self._get_taker()
        else:
            raise TypeError(
                f"receive_batch needs a get(block, timeout) or a Pipe / SimpleQueue to poll; "
                f"{getattr(self._get, '__qualname__', type(self._get).__name__)} takes no timeout: "
                "take messages with receive() and hand them to open_batch()"
            )
        messages: list[Any] = []
        first = take(first_wait)
        if first is not _NOTHING:
            messages.append(first)
            deadline = None if timeout is None else time.monotonic() + timeout
            while len(messages) < max_size:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                message = take(left)
                if message is _NOTHING:
                    break
                messages.append(message)
        return Batch(messages, self.name, attributes=self._attributes)

    def _get_taker(self) -> Callable[[float | None], Any]:
        def take(wait: float | None) -> Any:
            try:
                return self._get(False) if wait == 0 else self._get(True, wait)
            except (stdlib_queue.Empty, asyncio.QueueEmpty):
                return _NOTHING

        return take

    def _poll_taker(self) -> Callable[[float | None], Any]:
        poll = cast(Callable[[float | None], bool], self._poll)

        taken = 0

        def take(wait: float | None) -> Any:
            nonlocal taken
            try:
                message = self._get() if poll(wait) else _NOTHING
            except EOFError:  # the other end has closed: this batch ends, the next one says so
                if not taken:
                    raise
                return _NOTHING
            taken += 1
            return message

        return take

    def areceive(self, *args: Any, **kwargs: Any) -> _Receiving:
        """``async with mailbox.areceive() as item:`` or ``delivery = await mailbox.areceive()``.
        ``args`` and ``kwargs`` go to the awaited get as they are."""
        return _Receiving(self, args, kwargs)

    def __repr__(self) -> str:
        return f"Mailbox({self.name!r}, system={self.system!r})"


def _takes_block_and_timeout(get: Callable[..., Any]) -> bool:
    try:
        inspect.signature(get).bind(True, 1.0)
    except TypeError:
        return False
    except ValueError:  # no signature to read: let the call itself decide
        pass
    return True


class _Receiving:
    """Awaitable and async context manager: the get is awaited on entry."""

    __slots__ = ("_mailbox", "_args", "_kwargs", "_delivery")

    def __init__(self, mailbox: Mailbox, args: tuple, kwargs: dict) -> None:
        self._mailbox, self._args, self._kwargs = mailbox, args, kwargs
        self._delivery: Delivery | None = None

    async def _take(self) -> Delivery:
        return self._mailbox.open(await self._mailbox._get(*self._args, **self._kwargs))  # noqa: SLF001

    def __await__(self):
        return self._take().__await__()

    async def __aenter__(self) -> Any:
        self._delivery = await self._take()
        return self._delivery.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        return cast(Delivery, self._delivery).__exit__(exc_type, exc, tb)  # set by __aenter__


# -- install / uninstall: tracing of the explicit API on or off (nothing is patched) ----------


def instrument(*, relation: Relation | None = None) -> None:
    """Trace send / receive. ``relation``, when given, is the default for every receive ("child"
    at first | "link" | "none"), overridable per Mailbox and per open(). Idempotent."""
    global _installed, _relation
    if relation is not None:
        _relation = _check(relation)
    _installed = True


def uninstrument() -> None:
    """send puts bare items and receive makes no span (envelopes already queued still unwrap)."""
    global _installed, _relation
    _installed, _relation = False, "child"


def instrumented() -> bool:
    """Whether send / receive are traced now."""
    return _installed


# The names of 0.1, kept for one minor release.
install = renamed(instrument, "threadline.boundaries.mailboxes.install")
uninstall = renamed(uninstrument, "threadline.boundaries.mailboxes.uninstall")
installed = renamed(instrumented, "threadline.boundaries.mailboxes.installed")
