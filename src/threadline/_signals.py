"""SIGTERM and threadline's own threads.

A process-directed signal goes to any thread that does not block it, but only the main thread runs
Python's handlers. Every thread threadline starts (exporters, the exit flush, the SIGTERM relay)
is started inside sigterm_blocked(), so the kernel hands SIGTERM to the main thread.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_blocked() -> Iterator[None]:
    """SIGTERM is blocked in this thread inside the block, and for good in every thread started
    there (a thread inherits its starter's mask). So threadline's own threads never take it: the
    kernel hands it to the main thread, where Python runs its handlers, and a main thread waiting
    in a lock (an idle pool worker) wakes for a signal delivered to it, not for one another thread
    took. Around work that must not be cut short, it also holds SIGTERM back until the end."""
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except (AttributeError, OSError, ValueError):
        held = None
    try:
        yield
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
