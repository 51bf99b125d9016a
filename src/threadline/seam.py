"""The seam: what a boundary or an integration may use from threadline's core, and nothing else.

Who it is for
-------------
The stdlib boundaries (``threadline.boundaries``), the third-party integrations
(``threadline.integrations``) and the pytest plugin build on the names below, and so may an
extension outside threadline that carries context across a transport of its own (a message
broker, an RPC framework, a job queue). An application needs none of it: ``threadline``'s own
names (``configure``, ``span``, ``capture``, ``resume``, ...) are its API.

Every module of threadline outside the core imports only from ``threadline`` (the public API),
``threadline.seam`` and ``threadline.semconv`` (the attribute names); a test fails on any other
import of a private name. What the core keeps private may change in any release.

What it promises
----------------
The names here change only with a note in the changelog, and a name is deprecated for one minor
release before it goes. They are documented below by what they do, not by how the core does it.

How to carry context across a transport
---------------------------------------
Every boundary is the same three steps: **capture** at the sender when the work is handed off
(``capture()``, or ``inject()`` straight into the transport's headers), **carry** the Handoff in
the transport's own way (its ``carrier`` is a dict of headers: W3C traceparent, tracestate and
baggage by default, or what ``OTEL_PROPAGATORS`` chose; ``carrier_keys()`` names them, and a
transport that picks headers out of a message keeps those; a Handoff also pickles, and
``compact()`` / ``from_compact()`` turn one that holds just a traceparent into its three numbers
and back, the cheapest form to pickle), and **resume** at the receiver around exactly the unit of work
(``resume()``), which restores what was current before when the block ends. A receiver accepts
whatever arrives: ``as_handoff()`` takes a Handoff, a header mapping, JSON or None, and a carrier
that cannot be read starts a new trace (say why with ``count_garbled()``; it never raises)::

    from opentelemetry.trace import SpanKind

    from threadline import seam, semconv

    def send(queue, item):
        with seam.start_span("send jobs", kind=SpanKind.PRODUCER):
            queue.put({"headers": seam.inject(), "item": item})

    def work(queue, handle):
        message = queue.get()
        with seam.resume(
            seam.as_handoff(message["headers"]), "process jobs", relation="child",
            kind=SpanKind.CONSUMER, attributes={semconv.BOUNDARY: "jobs"},
        ):
            handle(message["item"])

A consumer that takes messages in batches opens one span for all of them with ``batch_span()``.
Whether to carry context at all is ``enabled()``: threadline is configured, or instrumented on
top of another OpenTelemetry set-up (``ThreadlineInstrumentor``; then ``settings()`` is None and
spans go to whatever provider is global). A transport that starts processes takes
``child_settings()`` along (plain values), calls ``set_up_child(settings)`` in the child before
its first task, and makes it flush on the way out with ``guard()``.

The server and the testing collector read OTLP protobuf with ``any_value()``, the one conversion
of an OTLP AnyValue to a Python value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline import _w3c as w3c
from threadline._batch import batch_span, sender_links
from threadline._children import borrow, child_settings, children, set_up_child, unborrow
from threadline._context import attach, current, reset
from threadline._exit import before_exit, final_flush, guard, mark_cut_short
from threadline._handoff import (
    CARRIER_KEYS,
    RELATIONS,
    Handoff,
    Relation,
    as_handoff,
    call,
    capture,
    carrier_keys,
    compact,
    count_garbled,
    from_compact,
    inject,
    resume,
)
from threadline._otlp_values import any_value
from threadline._runtime import (
    add_tap,
    adopt,
    announce,
    configure,
    enabled,
    flush,
    remove_tap,
    settings,
)
from threadline._runtime import current as _current_runtime
from threadline._settings import Settings, env, env_resource
from threadline._signals import sigterm_blocked
from threadline._spans import check_name, start_span
from threadline._w3c import KNOWN_FLAGS

if TYPE_CHECKING:  # the SDK is not imported with the seam
    from opentelemetry.sdk.trace.export import SpanExporter


def current_exporter() -> SpanExporter | None:
    """The SpanExporter instance the user handed configure(), or None (a named exporter, or not
    configured). A child process in the same interpreter (a thread pool standing in for a process
    pool) may share it."""
    rt = _current_runtime()
    return rt.exporter if rt is not None else None


def exports_failed() -> int:
    """Spans this process could not export so far (``threadline.export_stats()["failed"]``)."""
    from threadline._export import stats  # the SDK's export path: imported when first asked

    return stats.failed


__all__ = [
    "CARRIER_KEYS",
    "carrier_keys",
    "KNOWN_FLAGS",
    "RELATIONS",
    "Handoff",
    "Relation",
    "Settings",
    "add_tap",
    "adopt",
    "announce",
    "any_value",
    "as_handoff",
    "attach",
    "batch_span",
    "before_exit",
    "borrow",
    "call",
    "capture",
    "check_name",
    "child_settings",
    "children",
    "compact",
    "configure",
    "count_garbled",
    "current",
    "current_exporter",
    "enabled",
    "env",
    "env_resource",
    "exports_failed",
    "final_flush",
    "flush",
    "from_compact",
    "guard",
    "inject",
    "mark_cut_short",
    "remove_tap",
    "reset",
    "resume",
    "sender_links",
    "set_up_child",
    "settings",
    "sigterm_blocked",
    "start_span",
    "unborrow",
    "w3c",
]
