"""Celery: each task in the trace of the code that sent it, and every span a worker ends exported
before its pool process exits.

    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    tl.configure("shop")
    celery.instrument(app)          # or tl.instrument(app); in the module senders and workers import

The OpenTelemetry contrib instrumentation (opentelemetry-instrumentation-celery) makes the spans
and carries the context in the message headers: a PRODUCER span ``apply_async/<task>`` where a
task is sent, a CONSUMER span ``run/<task>`` around each run of it, a failure recorded on that
span (status ERROR and an ``exception`` event). What threadline adds:

* Workers configure themselves. ``celery -A proj worker`` is nobody's child: at ``worker_init``
  a worker whose app module configured nothing is configured from ``$OTEL_*``, its service named
  ``worker_service``, else ``$OTEL_SERVICE_NAME``, else after the app (a configured worker keeps
  its configuration, renamed to ``worker_service`` if given). Every pool process is configured
  like the worker as it starts (``worker_process_init``), with its own ``process.pid`` and the
  worker's as ``process.parent_pid``.
* Nothing is lost on the way out: a pool process exports every span it ended as it leaves
  (``worker_process_shutdown``: after ``max_tasks_per_child`` tasks, at shutdown, on SIGTERM),
  before it tells the worker, which then sends it SIGTERM; a task calling ``os._exit`` is
  covered too (threadline.seam.guard()). A task cut short says so on its span (``process.exit_code``
  or ``process.signal``, status ERROR). Each run span is announced as it starts, so a task
  killed by SIGKILL (a hard time limit) still shows, as incomplete.
* No leaks: a task runs from an empty context plus what its message carries, and its process is
  back to that context afterwards.
* The relation policy: ``"child"`` (default) continues the sender's trace, ``"link"`` starts a
  new trace linked to the sender's span, ``"none"`` starts clean.
* Retries: an attempt that ends in ``self.retry(exc=...)`` (or ``autoretry_for``) records the
  exception on its span, status ERROR; the next attempt is a child of that attempt's
  ``apply_async`` span, so all attempts are in one trace.

Eager tasks (``task.apply()``, ``task_always_eager``) run in the caller's context, as before.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextvars import Token
from typing import Any

try:
    from billiard.common import terminate_handler_fired
    from celery import Celery, signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "threadline.integrations.celery needs Celery and opentelemetry-instrumentation-celery: "
        "pip install 'threadline[celery]'"
    ) from exc

from opentelemetry import context, trace

from threadline import seam
from threadline.boundaries import processes
from threadline.seam import carrier_keys

__all__ = ["RELATIONS", "instrument", "uninstrument"]

log = logging.getLogger("threadline")

RELATIONS = ("child", "link", "none")

_lock = threading.Lock()
_wanted: dict[str, Any] | None = None  # instrument()'s arguments, once instrumented
# The run span and the empty-context token of each task running in this process, by (task id,
# thread): a retry can run under the same task id while its first attempt is finishing.
_running: dict[tuple[str | None, int], trace.Span] = {}
_slates: dict[tuple[str | None, int], Token[context.Context]] = {}


def _key(task_id: str | None) -> tuple[str | None, int]:
    return task_id, threading.get_ident()


def _eager(task: Any) -> bool:
    return bool(getattr(task.request, "is_eager", False))


# -- around each run ---------------------------------------------------------------------------
# Celery calls signal receivers in the order they were connected: the *_first receivers run
# before the contrib instrumentation's, the others after it.


def _prerun_first(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None or _eager(task):
        return
    _slates[_key(task_id)] = context.attach(context.Context())
    if _wanted and _wanted["relation"] == "none":
        for key in carrier_keys():  # what the contrib extracts the sender's context from
            setattr(task.request, key, None)


def _prerun_last(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    span = trace.get_current_span()  # the contrib's run span, made current
    if not span.is_recording():
        return
    _running[_key(task_id)] = span
    retries = getattr(task.request, "retries", 0) or 0
    if retries:
        span.set_attribute("celery.retries", retries)
    seam.announce(span)  # the process may be killed mid-task: make the task visible now


def _postrun_first(task_id: str | None = None, **_: Any) -> None:
    span = _running.pop(_key(task_id), None) if task_id is not None else None
    exc = sys.exc_info()[1]
    if span is not None and isinstance(exc, SystemExit):  # the process is leaving mid-task
        if terminate_handler_fired():
            seam.mark_cut_short(span, None, signal.SIGTERM)
        else:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            seam.mark_cut_short(span, code, None)


def _postrun_last(task_id: str | None = None, **_: Any) -> None:
    token = _slates.pop(_key(task_id), None) if task_id is not None else None
    if token is not None:
        context.detach(token)


def _end_running(code: int | None, signum: int | None) -> None:
    """At os._exit or SIGTERM with tasks still running: their spans end with the process."""
    for key, span in list(_running.items()):
        seam.mark_cut_short(span, code, signum)
        span.end()
        _running.pop(key, None)


seam.before_exit(_end_running)


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    span = _running.get(_key(getattr(request, "id", None)))
    exc = getattr(reason, "exc", None)
    if span is None or not isinstance(exc, BaseException):
        return  # a retry with no exception (polling) is no error; the contrib notes the reason
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, str(reason)))


# -- configuring workers -----------------------------------------------------------------------


def _service(app: Any) -> str | None:
    """The worker's service name when nothing configured one: worker_service, else the
    environment's (None lets configure() read it), else the app's name."""
    if _wanted and _wanted["worker_service"]:
        return _wanted["worker_service"]
    if seam.env("OTEL_SERVICE_NAME") or "service.name" in seam.env_resource():
        return None
    main = getattr(app, "main", None)
    return main if main and main != "__main__" else None


def _configure_worker(app: Any) -> None:
    if not seam.settings() and seam.enabled():
        return  # instrumented on the worker's own OpenTelemetry set-up: that one serves
    s = seam.settings()
    if s is None:
        seam.configure(_service(app))
    elif _wanted and _wanted["worker_service"] and s.service_name != _wanted["worker_service"]:
        processes.rename(_wanted["worker_service"])


def _worker_init(sender: Any = None, **_: Any) -> None:
    """In the worker's main process, before its pool starts."""
    try:
        _configure_worker(getattr(sender, "app", None))
    except Exception:  # tracing never keeps a worker from starting
        log.warning("threadline: could not configure the Celery worker", exc_info=True)


def _process_init(**_: Any) -> None:
    """In each pool process as it starts: configured like the worker, and flushed at exit."""
    try:
        settings = seam.child_settings()  # the worker's, inherited across the fork
        if settings is None:  # a fresh interpreter (a spawn start method): as the worker did
            from celery import current_app

            _configure_worker(current_app)
        else:
            settings["resource_attributes"]["process.parent_pid"] = os.getppid()
            seam.set_up_child(settings)
        seam.guard()
    except Exception:
        log.warning("threadline: could not configure a Celery pool process", exc_info=True)


def _process_shutdown(exitcode: int | None = None, **_: Any) -> None:
    """A pool process is leaving (max_tasks_per_child, shutdown, SIGTERM): export everything now.
    Next it tells the worker, which answers with SIGTERM; once billiard's handler has run, SIGTERM
    kills at once, so it is blocked until the spans are out (and handled after)."""
    with seam.sigterm_blocked():
        if terminate_handler_fired():
            seam.final_flush(None, signal.SIGTERM)
        else:
            seam.final_flush(exitcode if isinstance(exitcode, int) else None)


# -- wiring ------------------------------------------------------------------------------------

_FIRST = ((signals.task_prerun, _prerun_first), (signals.task_postrun, _postrun_first))
_LAST = (
    (signals.task_prerun, _prerun_last),
    (signals.task_postrun, _postrun_last),
    (signals.task_retry, _retry),
    (signals.worker_init, _worker_init),
    (signals.worker_process_init, _process_init),
    (signals.worker_process_shutdown, _process_shutdown),
)


def instrument(
    app: Celery | None = None, *, relation: str = "child", worker_service: str | None = None
) -> Celery | None:
    """Trace Celery tasks in this process, sending and running alike; returns ``app``.

    Call it where senders and workers both run it (the app's module). relation: "child"
    (default) runs each task in its sender's trace, "link" in a new trace linked to the sender's
    span, "none" in a new trace. worker_service: the service name of the worker processes
    (default: the worker's configuration; when the app module configures nothing,
    $OTEL_SERVICE_NAME, else the app's name). Instrumentation is per process, for every app:
    calling it again with the same arguments does nothing, with other ones raises ValueError.
    """
    global _wanted
    if app is not None and not isinstance(app, Celery):
        raise TypeError(f"app must be a celery.Celery application, not {type(app).__name__}")
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
    if worker_service is not None and (not isinstance(worker_service, str) or not worker_service):
        raise ValueError(f"worker_service must be a non-empty string, not {worker_service!r}")
    wanted = {"relation": relation, "worker_service": worker_service}
    with _lock:
        if _wanted is not None:
            changed = [
                f"{k}={wanted[k]!r} (was {_wanted[k]!r})" for k in wanted if wanted[k] != _wanted[k]
            ]
            if changed:
                raise ValueError(
                    f"Celery is instrumented already; {', '.join(changed)} would change how. "
                    "Instrument once per process, with the arguments it needs."
                )
            return app
        contrib = CeleryInstrumentor()
        if contrib.is_instrumented_by_opentelemetry:  # instrumented directly: ours go around it
            contrib.uninstrument()
        for sig, receiver in _FIRST:
            sig.connect(receiver, weak=False)
        contrib.instrument(use_span_links=relation == "link")
        for sig, receiver in _LAST:
            sig.connect(receiver, weak=False)
        _wanted = wanted
    return app


def uninstrument() -> None:
    """Undo instrument(): the contrib instrumentation and threadline's receivers."""
    global _wanted
    with _lock:
        for sig, receiver in _FIRST + _LAST:
            sig.disconnect(receiver)
        contrib = CeleryInstrumentor()
        if contrib.is_instrumented_by_opentelemetry:
            contrib.uninstrument()
        _wanted = None
