"""threadline: one connected trace across every boundary in Python, on top of OpenTelemetry.

import threadline as tl
tl.configure("checkout")
with tl.span("charge"):
    ...
"""

from __future__ import annotations

__version__ = "0.1.0"

from threadline._config import Settings, configure, flush, settings, shutdown
from threadline._export import stats as _stats
from threadline._handoff import Handoff, capture, extract, inject, resume, wrap
from threadline._spans import span, traced


def export_stats() -> dict:
    """Spans exported, failed and dropped by this process so far, with error counts by kind."""
    return _stats.snapshot()


__all__ = [
    "Handoff",
    "Settings",
    "capture",
    "configure",
    "export_stats",
    "extract",
    "flush",
    "inject",
    "resume",
    "settings",
    "shutdown",
    "span",
    "traced",
    "wrap",
]
