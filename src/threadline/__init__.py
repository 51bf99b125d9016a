"""threadline: one connected trace across every boundary in Python, on top of OpenTelemetry.

import threadline as tl
tl.configure("checkout")
with tl.span("charge"):
    ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline import _handoff
from threadline._handoff import Handoff, capture, extract, inject, resume, wrap
from threadline._runtime import configure, flush, settings, shutdown
from threadline._settings import Settings
from threadline._spans import span, traced
from threadline._version import __version__ as __version__

if TYPE_CHECKING:
    # Resolved lazily at runtime by __getattr__ below; imported here so editors and type checkers
    # see it.
    from threadline.integrations.http import instrument, uninstrument


def __getattr__(name: str):
    # Lazy: `import threadline` must not pull in the contrib instrumentations or web frameworks.
    if name in ("instrument", "uninstrument"):
        from threadline.integrations import http

        return getattr(http, name)
    raise AttributeError(f"module 'threadline' has no attribute {name!r}")


def export_stats() -> dict:
    """Spans exported, failed and dropped by this process so far, with error counts by kind, the
    handoffs it could not read ("garbled_handoffs": each started a new trace), and the children's
    set-ups that raised in it ("child_setup_failed": those ran their tasks untraced)."""
    from threadline._children import setup_failures
    from threadline._export import stats  # the SDK's export path, imported when first asked

    return {
        **stats.snapshot(),
        "garbled_handoffs": _handoff.garbled_handoffs(),
        "child_setup_failed": setup_failures(),
    }


__all__ = [
    "Handoff",
    "Settings",
    "capture",
    "configure",
    "export_stats",
    "extract",
    "flush",
    "inject",
    "instrument",
    "resume",
    "settings",
    "shutdown",
    "span",
    "traced",
    "uninstrument",
    "wrap",
]
