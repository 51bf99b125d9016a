"""threadline as an OpenTelemetry instrumentation, on top of whatever set up the SDK.

``ThreadlineInstrumentor`` is a ``BaseInstrumentor`` like the contrib ones. It installs the
default boundaries (threads, asyncio, processes, nodes) so the trace follows work handed to them,
and the spans go to the global tracer provider, whoever set it up: ``opentelemetry-instrument``
(which finds it through the ``opentelemetry_instrumentor`` entry point, so nothing in the app
changes), Logfire, a vendor's distro, or the program itself::

    from threadline.instrumentation import ThreadlineInstrumentor

    ThreadlineInstrumentor().instrument(child_setup="myapp.telemetry:setup")

A child process needs a tracer provider of its own. Under fork it inherits the parent's; under
spawn and forkserver it has one when ``opentelemetry-instrument`` started the program (its
sitecustomize runs in every child) or when the main module sets the SDK up at import. Otherwise
``child_setup`` names an importable callable that each such child runs once, before its first
task. ``threadline.configure()`` is the other way in: threadline's own provider and exporter.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from threadline import boundaries, seam

__all__ = ["ThreadlineInstrumentor"]


class ThreadlineInstrumentor(BaseInstrumentor):
    """Carry the trace across threads, asyncio, processes and nodes with any OpenTelemetry set-up.

    ``instrument(child_setup=None, boundaries=None)``:

    - child_setup: ``"package.module:function"`` or a module-level function, run once in a
      spawn or forkserver child that starts with no tracer provider. Checked at once: one that
      cannot be imported raises ValueError naming it. One that raises in a child is logged,
      counted (``threadline.export_stats()["child_setup_failed"]``), and the child runs its tasks
      untraced.
    - boundaries: the names to install (default: threads, asyncio, processes, nodes), as
      ``threadline.boundaries.instrument()`` takes them; an unknown name raises ValueError.

    Instrumenting twice logs a warning and does nothing; ``uninstrument()`` restores every
    function the boundaries patched. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=threadline`` keeps
    ``opentelemetry-instrument`` from loading it.
    """

    _installed: tuple[str, ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # the standard library's hand-offs: nothing to require

    def _instrument(self, **kwargs: Any) -> None:
        names = tuple(kwargs.get("boundaries") or boundaries.DEFAULT)
        for name in names:
            boundaries.module(name)  # an unknown name raises before anything changes
        # A child_setup that cannot be imported raises; children install the same boundaries.
        seam.borrow(kwargs.get("child_setup"), names)
        fresh = tuple(name for name in names if not boundaries.module(name).instrumented())
        if fresh:
            boundaries.instrument(*fresh)
        self._installed = fresh

    def _uninstrument(self, **kwargs: Any) -> None:
        seam.unborrow()
        if self._installed:
            boundaries.uninstrument(*self._installed)
        self._installed = ()
