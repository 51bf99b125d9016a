"""Threads: the context is captured when work is handed to a thread, and restored around exactly
that work in the thread that runs it.

- ``threading.Thread`` (and ``Timer``): captured at ``start()``, current for the thread's life.
- ``concurrent.futures.ThreadPoolExecutor``: captured at ``submit()`` (``map`` submits).
- ``multiprocessing.pool.ThreadPool``: captured at ``apply``/``apply_async``/``map``/
  ``map_async``/``imap``/``imap_unordered``/``starmap``/``starmap_async``; callbacks run in the
  submitter's context too.

Pool workers themselves start clean, whoever created them: they serve many senders, and after
each task the worker is back to no context at all. ``instrument(relation=..., span=...)`` chooses
the policy (see ``Policy``); without installing anything, ``tl.wrap(fn)`` does the same by hand.

Shared with the process boundaries: ``ThreadPool`` is patched here, on the ``ThreadPool`` class
only; the process ``Pool`` patches (processes.py) live on ``Pool`` and leave ThreadPool instances
alone, so a ThreadPool call is wrapped once, here.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import process as _futures_process
from concurrent.futures import thread as _futures_thread
from multiprocessing import pool as _mp_pool
from multiprocessing import queues as _mp_queues
from typing import Any

from threadline.boundaries._patches import Patches
from threadline.boundaries._renamed import renamed
from threadline.boundaries._task import Policy, Task
from threadline.seam import Relation

__all__ = ["CLEAN_TARGETS", "install", "installed", "policy", "uninstall"]

# Threads that serve many senders start without the starter's context (a pool's workers and
# handler threads, a multiprocessing queue's feeder): capturing there would bind every later task
# or callback to whoever happened to create the pool. Other boundary modules may add to it.
CLEAN_TARGETS: set[Any] = {
    _futures_thread._worker,  # noqa: SLF001 - the stdlib's own worker and handler loops
    # multiprocessing's internals, which typeshed does not declare
    _mp_pool.worker,  # pyright: ignore[reportAttributeAccessIssue]
    _mp_pool.Pool._handle_workers,  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
    _mp_pool.Pool._handle_tasks,  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
    _mp_pool.Pool._handle_results,  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
    _mp_queues.Queue._feed,  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
}
CLEAN_CLASSES: tuple[type, ...] = (_futures_process._ExecutorManagerThread,)  # noqa: SLF001

_patches = Patches()
_policy = Policy()
_Thread = threading.Thread
_bootstrap_inner = _Thread._bootstrap_inner  # type: ignore[attr-defined]  # noqa: SLF001
_start = _Thread.start
_submit = ThreadPoolExecutor.submit
_Pool = _mp_pool.Pool


def _bind(fn: Any) -> Any:
    return fn if type(fn) is Task else Task(fn, _policy)


def _bind_callback(fn: Any) -> Any:
    return None if fn is None else _bind(fn)


# -- threading.Thread / Timer ------------------------------------------------------------------


def _thread_start(self: threading.Thread) -> None:
    target = self._target  # type: ignore[attr-defined]
    if target not in CLEAN_TARGETS and not isinstance(self, CLEAN_CLASSES):
        name = getattr(target, "__qualname__", None) or f"{type(self).__qualname__}.run"
        # Runs the thread's bootstrap (and so its run()) under the context of now.
        self.__dict__["_threadline_task"] = Task(_bootstrap_inner, _policy, name=name)
    _start(self)


def _thread_bootstrap_inner(self: threading.Thread) -> None:
    task = self.__dict__.pop("_threadline_task", None)
    if task is None:
        _bootstrap_inner(self)
    else:
        task(self)


# -- concurrent.futures.ThreadPoolExecutor -----------------------------------------------------


def _executor_submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any):
    return _submit(self, fn if type(fn) is Task else Task(fn, _policy), *args, **kwargs)


# -- multiprocessing.pool.ThreadPool -----------------------------------------------------------


def _pool_method(name: str, callbacks: bool):
    # Calls Pool's method as it is at call time: the process-Pool patch there lets ThreadPool by.
    def method(self, func, *args, **kwargs):
        if callbacks:  # (args|iterable, kwds|chunksize, callback, error_callback)
            args = args[:2] + tuple(_bind_callback(cb) for cb in args[2:])
            for key in ("callback", "error_callback"):
                if key in kwargs:
                    kwargs[key] = _bind_callback(kwargs[key])
        return getattr(_Pool, name)(self, _bind(func), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(_Pool, name).__doc__
    return method


_POOL_METHODS = {
    "apply_async": True,  # apply() calls apply_async()
    "map": False,
    "map_async": True,
    "starmap": False,
    "starmap_async": True,
    "imap": False,
    "imap_unordered": False,
}


# -- install -----------------------------------------------------------------------------------


def instrument(*, relation: Relation | None = None, span: bool | str | None = None) -> None:
    """Patch threads, ThreadPoolExecutor and ThreadPool (once). Given a relation ("child" by
    default | "link" | "none") or span (see Policy), set the policy; with neither, keep it (so
    configure() installing the defaults again leaves a chosen policy alone).

    relation: how the work continues the sender's trace: "child", "link" or "none".
    span: False for no span per task, True for one named after the function, or its name.
    """
    global _policy
    if relation is not None or span is not None:
        _policy = Policy(relation or "child", span)
    if _patches:
        return
    _patches.set(_Thread, "start", _thread_start)
    _patches.set(_Thread, "_bootstrap_inner", _thread_bootstrap_inner)
    _patches.set(ThreadPoolExecutor, "submit", _executor_submit)
    for name, callbacks in _POOL_METHODS.items():
        _patches.set(_mp_pool.ThreadPool, name, _pool_method(name, callbacks))


def uninstrument() -> None:
    """Put every original back. Idempotent. Work already handed off still runs in its context."""
    global _policy
    _patches.restore()
    _policy = Policy()


def instrumented() -> bool:
    """Whether this boundary is installed."""
    return bool(_patches)


def policy() -> Policy:
    """The policy handed-off work follows now."""
    return _policy


# The names of 0.1, kept for one minor release.
install = renamed(instrument, "threadline.boundaries.threads.install")
uninstall = renamed(uninstrument, "threadline.boundaries.threads.uninstall")
installed = renamed(instrumented, "threadline.boundaries.threads.installed")
