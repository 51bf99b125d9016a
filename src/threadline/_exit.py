"""Flush before the process goes away, whichever way it goes.

atexit covers a normal interpreter exit. A multiprocessing child leaves through `os._exit`
(fork and forkserver start methods), which skips atexit, and a pool's idle workers are ended
with SIGTERM. guard() covers both, in the process that calls it; spans still open at that
moment can be ended first by the callbacks registered with before_exit(). The final flush takes
at most FLUSH_TIMEOUT: whatever has not been exported by then is counted as dropped
("shutdown_timeout"), so the exit report is exact.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Status, StatusCode

from threadline import _runtime
from threadline._signals import sigterm_blocked

log = logging.getLogger("threadline")

FLUSH_TIMEOUT = 10.0  # seconds the final flush may take before the rest is counted dropped

_real_exit = os._exit
_guarded_pid = 0
_callbacks: list[Callable[[int | None, int | None], None]] = []
_flushing = False
_deferred: int | None = None  # a signal that arrived during the final flush, re-raised after it
_terminating = False  # the SIGTERM handler has run
_relay_fds: tuple[int, int] | None = None  # the wakeup pipe _relay reads


def before_exit(callback: Callable[[int | None, int | None], None]) -> None:
    """callback(exit_code, signal_number) runs just before the final flush."""
    if callback not in _callbacks:
        _callbacks.append(callback)


def mark_cut_short(span: Any, code: int | None, signum: int | None) -> None:
    """Say on a span the process's exit cut short how it ended: its exit code (ERROR unless 0)
    or the signal that stopped it (ERROR)."""
    if code is not None:
        span.set_attribute("process.exit_code", code)
        if code != 0:
            span.set_status(Status(StatusCode.ERROR, f"process exited with code {code}"))
    if signum is not None:
        name = signal.Signals(signum).name
        span.set_attribute("process.signal", name)
        span.set_status(Status(StatusCode.ERROR, f"process ended by {name}"))


def final_flush(code: int | None = None, signum: int | None = None) -> None:
    global _flushing
    _flushing = True
    try:
        _final_flush(code, signum)
    finally:
        _flushing = False
    if _deferred is not None:
        _die(_deferred)


def _final_flush(code: int | None, signum: int | None) -> None:
    for callback in list(_callbacks):
        try:
            callback(code, signum)
        except Exception:  # never stand between the program and its exit
            log.debug("threadline: exit callback failed", exc_info=True)
    # The flush runs beside us so that an endpoint that never answers cannot hold the exit: past
    # FLUSH_TIMEOUT what is still queued or in flight is counted as dropped and said.
    configured = _runtime.current() is not None  # else another set-up's provider is flushed
    flushing = threading.Thread(target=_shutdown, name="threadline-exit-flush", daemon=True)
    with sigterm_blocked():
        flushing.start()
    flushing.join(FLUSH_TIMEOUT)
    if flushing.is_alive():
        if configured:
            from threadline._export import stats  # the SDK's export path, imported by configure()

            stats.report("shutdown_timeout")
        else:
            log.warning(
                "threadline: the tracer provider did not flush within %.0f s at exit; "
                "spans it still held are lost",
                FLUSH_TIMEOUT,
            )
    # What shutdown reported (spans that failed or were dropped) must not die in a buffer.
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _shutdown() -> None:
    try:
        if _runtime.current() is not None:
            _runtime.shutdown()
        else:  # instrumented on another set-up: its provider flushes (it shuts itself down)
            _runtime.flush(FLUSH_TIMEOUT)
    except Exception:
        log.debug("threadline: flush at exit failed", exc_info=True)


def _exit(code: int = 0) -> None:
    if os.getpid() == _guarded_pid:
        final_flush(code, None)
    _real_exit(code)


def _on_sigterm(signum: int, frame) -> None:
    global _deferred, _terminating
    _terminating = True
    if _flushing:  # the flush we interrupted finishes first (a pool terminates its exiting workers)
        _deferred = signum
        return
    final_flush(None, signum)
    _die(signum)


def _die(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def guard() -> None:
    """Flush this process's spans before it exits through os._exit or SIGTERM (idempotent)."""
    global _guarded_pid
    _guarded_pid = os.getpid()
    os._exit = _exit
    # Only a default SIGTERM is ours to extend; a program's own handler stays in charge.
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                _start_relay()
        except (ValueError, OSError):
            pass


# A SIGTERM can trip Python's handler without waking the main thread, which alone runs it: when
# it arrives just before the main thread starts waiting in a lock (a fresh pool worker that its
# pool is already terminating), or when another thread takes it. The handler would then never
# run, and the worker never exit. Python's wakeup fd still hears of it: a relay thread sends
# the signal again, to the main thread itself, if the handler has not run soon after.


def _start_relay() -> None:
    global _relay_fds
    if _relay_fds is not None:
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    if old != -1:  # someone else (an event loop) listens to signals: theirs to keep
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)
        return
    _relay_fds = (r, w)
    relay = threading.Thread(
        target=_relay, args=(r, threading.get_ident()), name="threadline-sigterm", daemon=True
    )
    with sigterm_blocked():
        relay.start()


def _relay(r: int, main: int) -> None:
    while True:
        try:
            received = os.read(r, 64)
        except OSError:
            return
        if not received:
            return
        if signal.SIGTERM not in received or _terminating:
            continue
        for _ in range(20):  # the main thread handles it in no time when it was woken
            time.sleep(0.05)
            if _terminating:
                break
        else:
            signal.pthread_kill(main, signal.SIGTERM)


def _forget_relay() -> None:
    """In a forked child: the pipe and its reader are the parent's."""
    global _relay_fds, _terminating
    _terminating = False
    if _relay_fds is None:
        return
    r, w = _relay_fds
    _relay_fds = None
    try:
        current = signal.set_wakeup_fd(-1)
        if current != w:  # set since by someone else: theirs
            signal.set_wakeup_fd(current)
    except ValueError:
        pass
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


os.register_at_fork(after_in_child=_forget_relay)
