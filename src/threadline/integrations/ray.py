"""Ray: remote functions, actor creation and actor method calls in the trace of the code that
submits them, and every span a worker ends exported before the worker's result is returned.

    import ray
    import threadline as tl
    from threadline.integrations import ray as tl_ray

    tl.configure("shop")
    tl_ray.instrument()             # before the first .remote() of the functions and actors
    ray.init()

Each ``.remote()`` makes a PRODUCER span ``submit <name>`` in the caller; the task runs in the
worker under a CONSUMER span ``run <name>``, a child of it (``relation="link"``: a new trace
linked to it; ``"none"``: a clean one). ``<name>`` is the function's qualified name, or
``Class.method`` for an actor method and ``Class.__init__`` for an actor's creation. The spans
carry Ray's own tracing attributes (``ray.remote``, ``ray.function``, ``ray.task_id``,
``ray.actor_id``, ``ray.job_id``).

Ray's own tracing (``ray.init(_tracing_startup_hook=...)``, ray.util.tracing) carries the context
the same way, in a keyword argument added to each task, but leaves the rest to the hook it calls
in every worker: it is not maintained any more, names spans ``... ray.remote_worker``, runs only
on a cluster started with the hook, and a worker's spans are lost unless the hook exports each one
synchronously, because Ray kills its workers at ``ray.shutdown()`` without running atexit. What
this integration does instead:

* The context travels in a keyword argument (``_threadline``) that instrument() adds to the
  signature of each remote function and actor method, when it is first submitted or created
  (one submitted or created before instrument() stays untraced). With it go the relation and the
  configure() arguments of the caller's children (threadline.seam.child_settings()), so
  every worker is configured like the driver, on any cluster, and reconfigured when they change.
* A worker exports every span it ended before the task returns (a flush of at most
  FLUSH_TIMEOUT; after one that failed or ran out of time, tasks stop waiting for FLUSH_PAUSE
  seconds and the batch processor carries on, counting what it cannot deliver). Each run span
  is announced as it starts, so a worker killed mid-task leaves an incomplete span.
* A task runs from the context it was sent plus nothing: a reused worker never carries a
  previous task's trace, and a call without the argument (an un-instrumented caller) runs as a
  root of its own.
* An exception in a task is recorded on its run span (status ERROR, an ``exception`` event) and
  raised on unchanged, so ``ray.get`` raises it as Ray does. ``exit_actor()`` is no error.

Generator tasks and methods, static and class methods, Ray's own functions and actors (module
``ray.*``) and cross-language calls are left as they are, untraced.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

try:
    import ray
    import ray._private.worker as ray_worker
    from ray.actor import ActorClass, ActorHandle, _ActorClassMethodMetadata
    from ray.exceptions import AsyncioActorExit
    from ray.remote_function import RemoteFunction
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "threadline.integrations.ray needs Ray: pip install 'threadline[ray]'"
    ) from exc

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from threadline import seam, semconv
from threadline.seam import RELATIONS, inject, resume, start_span

__all__ = ["FLUSH_PAUSE", "FLUSH_TIMEOUT", "KWARG", "RELATIONS", "instrument", "uninstrument"]

log = logging.getLogger("threadline")

BOUNDARY = "ray"
KWARG = "_threadline"  # the keyword argument the context travels in
FLUSH_TIMEOUT = 2.0  # seconds a task waits, as it ends, for its worker's spans to be exported
FLUSH_PAUSE = 30.0  # seconds tasks do not wait after a flush that failed or ran out of time

_lock = threading.Lock()
_wanted: dict[str, Any] | None = None  # instrument()'s arguments, once instrumented
_originals: dict[str, Any] = {}
_MARK = "__threadline_ray__"


def _ours(module: str | None) -> bool:
    """Not Ray's own libraries (modules ray.*), which stay as they are."""
    return not (module or "").startswith("ray.")


# -- the worker's side -------------------------------------------------------------------------

_applied: dict[str, Any] | None = None  # the settings this worker was last configured with
_paused_until = 0.0
_warned_flush = False
# Set while a task runs: an actor method calling another one of its own is a plain call.
_running: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "threadline_ray_running", default=False
)


def _settle_worker(settings: dict[str, Any] | None, relation: str) -> None:
    """Configure this worker like the caller's children, when that changed, and trace what its
    tasks submit in turn."""
    global _applied, _paused_until
    if settings is not None and settings != _applied:
        with _lock:  # a threaded actor's first calls may arrive together
            if settings != _applied:
                _applied, _paused_until = settings, 0.0  # a new endpoint gets a fresh chance
                try:
                    seam.set_up_child(settings)
                except Exception:  # tracing never keeps a task from running
                    log.warning("threadline: could not set up a Ray worker", exc_info=True)
    if _wanted is None and relation in RELATIONS:
        instrument(relation=relation)


def _flush() -> None:
    """Export what this worker has ended: Ray kills its workers without running atexit. The
    flush runs beside the task, which waits for it at most FLUSH_TIMEOUT; an endpoint that fails
    or is slow makes tasks stop waiting for FLUSH_PAUSE seconds."""
    global _paused_until, _warned_flush
    if not seam.enabled() or (_paused_until and time.monotonic() < _paused_until):
        return
    failed = seam.exports_failed()
    flushing = threading.Thread(target=seam.flush, name="threadline-ray-flush", daemon=True)
    flushing.start()
    flushing.join(FLUSH_TIMEOUT)
    if not flushing.is_alive() and seam.exports_failed() == failed:
        return
    _paused_until = time.monotonic() + FLUSH_PAUSE
    if not _warned_flush:
        _warned_flush = True
        log.warning(
            "threadline: a Ray worker could not export its spans as a task ended; tasks stop "
            "waiting for that for %.0f s at a time (logged once; see threadline.export_stats())",
            FLUSH_PAUSE,
        )


class _Run:
    """The run span of one task, from what its caller sent (nothing, for an un-instrumented
    caller), announced as it starts."""

    __slots__ = ("_cm", "_token")

    def __init__(self, carried: Any, name: str, attributes: dict[str, Any]) -> None:
        carrier, settings, relation = (
            carried if isinstance(carried, tuple) else (None, None, "child")
        )
        _settle_worker(settings, relation)
        ctx = ray.get_runtime_context()
        attributes = {
            **attributes,
            "ray.task_id": ctx.get_task_id(),
            "ray.job_id": ctx.get_job_id(),
        }
        if attributes["ray.remote"] == "actor":
            attributes["ray.actor_id"] = ctx.get_actor_id()
        self._cm = resume(
            carrier,
            f"run {name}",
            relation=relation if relation in RELATIONS else "child",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )

    def __enter__(self) -> trace.Span:
        self._token = _running.set(True)
        span = self._cm.__enter__()
        seam.announce(span)  # a worker may be killed mid-task: make the task visible now
        return span

    def __exit__(self, exc_type, exc, tb) -> None:
        if isinstance(exc, AsyncioActorExit):  # exit_actor() in an async actor: no error
            exc_type = exc = tb = None
        try:
            self._cm.__exit__(exc_type, exc, tb)
        finally:
            _running.reset(self._token)


def _call(fn, name, attributes, carried, args, kwargs):
    if carried is None and _running.get():  # an actor calling a method of its own
        return fn(*args, **kwargs)
    try:
        with _Run(carried, name, attributes):
            return fn(*args, **kwargs)
    finally:
        _flush()


async def _call_async(fn, name, attributes, carried, args, kwargs):
    if carried is None and _running.get():
        return await fn(*args, **kwargs)
    try:
        with _Run(carried, name, attributes):
            return await fn(*args, **kwargs)
    finally:
        await asyncio.to_thread(_flush)  # the actor's other calls go on meanwhile


def _runner(fn: Callable[..., Any], name: str, attributes: dict[str, Any]):
    """fn, run under its task's span: the function Ray ships to the workers in fn's place. It
    is pickled by value, so all it refers to is fn and module-level functions."""
    run: Any
    if inspect.iscoroutinefunction(fn):

        async def run_async(*args: Any, _threadline: Any = None, **kwargs: Any) -> Any:
            return await _call_async(fn, name, attributes, _threadline, args, kwargs)

        run = run_async
    else:

        def run_sync(*args: Any, _threadline: Any = None, **kwargs: Any) -> Any:
            return _call(fn, name, attributes, _threadline, args, kwargs)

        run = run_sync

    functools.update_wrapper(run, fn)
    # Ray reads an actor method's signature through inspect.unwrap(): it must stop here.
    del run.__wrapped__
    run.__signature__ = _with_kwarg(inspect.signature(fn))
    setattr(run, _MARK, True)
    return run


def _with_kwarg(sig: inspect.Signature) -> inspect.Signature:
    params = [p for p in sig.parameters.values() if p.name != KWARG]
    extra = inspect.Parameter(KWARG, inspect.Parameter.KEYWORD_ONLY, default=None)
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    return sig.replace(parameters=[*params[:at], extra, *params[at:]])


def _traceable(fn: Any) -> bool:
    return (
        callable(fn)
        and not getattr(fn, _MARK, False)
        and not inspect.isgeneratorfunction(fn)
        and not inspect.isasyncgenfunction(fn)
    )


# -- the caller's side -------------------------------------------------------------------------


def _carried() -> tuple[dict[str, str], dict[str, Any] | None, str]:
    """What a task takes along: the context of now, how workers are configured, the relation."""
    settings = seam.child_settings()
    if settings is not None:  # a raylet starts the workers, not this process
        settings["resource_attributes"].pop("process.parent_pid", None)
    return inject({}), settings, _wanted["relation"] if _wanted else "child"


def _submit(name: str, attributes: dict[str, Any], kwargs: dict[str, Any] | None, send):
    """send(kwargs) inside the caller's PRODUCER span, the context added to kwargs."""
    kwargs = dict(kwargs or {})
    with start_span(f"submit {name}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        kwargs[KWARG] = _carried()
        sent = send(kwargs)
        if span.is_recording():
            _note_ids(span, sent)
        return sent


def _note_ids(span: trace.Span, sent: Any) -> None:
    try:
        if isinstance(sent, ray.ObjectRef):
            span.set_attribute("ray.task_id", sent.task_id().hex())
        elif isinstance(getattr(sent, "_ray_actor_id", None), ray.ActorID):  # a new actor's handle
            span.set_attribute("ray.actor_id", sent._ray_actor_id.hex())  # noqa: SLF001
    except Exception:  # ids are a nicety
        log.debug("threadline: could not read the ids of a Ray submission", exc_info=True)


def _local_code() -> bool:
    """Workers that load code from their own modules would not run our wrappers."""
    return bool(getattr(ray_worker.global_worker, "load_code_from_local", False))


def _function_remote(self: RemoteFunction, args=None, kwargs=None, **options: Any):
    original = _originals["function"]
    fn = self._function
    if getattr(self, "_is_cross_language", False) or not _ours(getattr(fn, "__module__", None)):
        return original(self, args, kwargs, **options)
    with self._inject_lock:  # Ray's own, held while it prepares the function
        if self._function_signature is None and _traceable(fn) and not _local_code():
            # Never submitted: Ray has not exported it yet, so the workers will get ours.
            try:
                self._function = _runner(fn, fn.__qualname__, _function_attributes(fn))
            except Exception:  # an odd callable stays untraced
                log.debug("threadline: could not trace Ray function %r", fn, exc_info=True)
    fn = self._function
    if not getattr(fn, _MARK, False):
        return original(self, args, kwargs, **options)
    return _submit(
        fn.__qualname__,
        _function_attributes(fn),
        kwargs,
        lambda kw: original(self, args, kw, **options),
    )


def _function_attributes(fn: Any) -> dict[str, Any]:
    return {
        "ray.remote": "function",
        "ray.function": f"{fn.__module__}.{fn.__qualname__}",
        semconv.BOUNDARY: BOUNDARY,
    }


def _actor_attributes(class_name: str, method: str) -> dict[str, Any]:
    return {
        "ray.remote": "actor",
        "ray.function": f"{class_name}.{method}",
        "ray.actor_class": class_name,
        "ray.actor_method": method,
        semconv.BOUNDARY: BOUNDARY,
    }


def _prepare_actor_class(actor_class: ActorClass) -> bool:
    """Trace the methods of an actor class before it is first exported; False if too late."""
    meta = actor_class.__ray_metadata__  # pyright: ignore[reportAttributeAccessIssue] - set by Ray, undeclared
    ready = getattr(meta, "_threadline_traced", None)
    if ready is not None:
        return ready
    with _lock:
        ready = getattr(meta, "_threadline_traced", None)
        if ready is not None:
            return ready
        cls = meta.modified_class
        ready = (
            not meta.is_cross_language
            and meta.last_export_cluster_and_job is None
            and cls is not None
            and _ours(cls.__module__)
            and not _local_code()
        )
        if ready:
            try:
                _trace_methods(cast(type, cls), meta)  # ready: not None
            except Exception:  # an odd class stays untraced
                log.debug("threadline: could not trace Ray actor %r", cls, exc_info=True)
                ready = False
        meta._threadline_traced = ready  # noqa: SLF001
        return ready


def _trace_methods(cls: type, meta: Any) -> None:
    """Every method a caller may call remotely (not __del__, dunders, Ray's own __ray_*__),
    replaced with its runner; then Ray's record of their signatures, which calls are checked
    against, is made again."""
    runners = {
        name: _runner(method, f"{meta.class_name}.{name}", _actor_attributes(meta.class_name, name))
        for name, method in inspect.getmembers(cls, inspect.isfunction)
        if (name in ("__init__", "__call__") or not name.startswith("__"))
        and not isinstance(inspect.getattr_static(cls, name), staticmethod | classmethod)
        and _traceable(method)
    }
    descriptor = meta.actor_creation_function_descriptor
    for name, run in runners.items():
        setattr(cls, name, run)
    _ActorClassMethodMetadata._cache.pop(descriptor, None)  # noqa: SLF001
    meta.method_meta = _ActorClassMethodMetadata.create(cls, descriptor)


def _actor_remote(self: ActorClass, args=None, kwargs=None, **options: Any):
    original = _originals["actor"]
    if not _prepare_actor_class(self):
        return original(self, args, kwargs, **options)
    class_name = self.__ray_metadata__.class_name  # pyright: ignore[reportAttributeAccessIssue]
    return _submit(
        f"{class_name}.__init__",
        _actor_attributes(class_name, "__init__"),
        kwargs,
        lambda kw: original(self, args, kw, **options),
    )


def _method_call(self: ActorHandle, method_name: str, args=None, kwargs=None, *rest, **options):
    original = _originals["method"]
    signature = self._ray_method_signatures.get(method_name) or ()
    if getattr(self, "_ray_is_cross_language", False) or not any(
        p.name == KWARG for p in signature
    ):
        return original(self, method_name, args, kwargs, *rest, **options)
    class_name = self._ray_actor_creation_function_descriptor.class_name
    attributes = _actor_attributes(class_name, method_name)
    attributes["ray.actor_id"] = self._ray_actor_id.hex()
    return _submit(
        f"{class_name}.{method_name}",
        attributes,
        kwargs,
        lambda kw: original(self, method_name, args, kw, *rest, **options),
    )


_PATCHES = (
    ("function", RemoteFunction, "_remote", _function_remote),
    ("actor", ActorClass, "_remote", _actor_remote),
    ("method", ActorHandle, "_actor_method_call", _method_call),
)


def instrument(*, relation: str = "child") -> None:
    """Trace Ray tasks and actors submitted from this process, and in the workers they reach.

    Call it before the first ``.remote()`` of the functions and actor classes to trace (before
    or after ``ray.init()``). relation: "child" (default) runs each task in its caller's trace,
    "link" in a new trace whose run span links to the caller's submit span, "none" in a new
    trace. Calling it again with the same arguments does nothing, with other ones raises
    ValueError.
    """
    global _wanted
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
    wanted = {"relation": relation}
    with _lock:
        if _wanted is not None:
            if _wanted != wanted:
                raise ValueError(
                    f"Ray is instrumented already with relation={_wanted['relation']!r}; "
                    f"relation={relation!r} would change how. Call uninstrument() first."
                )
            return
        for key, owner, attr, patched in _PATCHES:
            _originals[key] = owner.__dict__[attr]
            setattr(owner, attr, patched)
        _wanted = wanted


def uninstrument() -> None:
    """Undo instrument(): calls from this process go out without a context again. Functions
    and actors already traced keep accepting calls with or without one."""
    global _wanted
    with _lock:
        for key, owner, attr, _ in _PATCHES:
            if key in _originals:
                setattr(owner, attr, _originals.pop(key))
        _wanted = None
