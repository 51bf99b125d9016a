"""asyncio: hand-offs out of and into a running loop keep the trace.

- ``loop.run_in_executor`` (default and custom executors) and so ``asyncio.to_thread``: the
  function is captured when it is handed over and runs in that context in the executor, then the
  worker is back to none. When the executor has its own boundary installed (threads for a
  ThreadPoolExecutor, processes for a ProcessPoolExecutor) that boundary captures, at the same
  moment and by its own policy; this one covers every other executor, and those two when their
  boundary is not installed.
- ``call_soon`` / ``call_soon_threadsafe`` / ``call_later`` / ``call_at``, and so
  ``run_coroutine_threadsafe`` (another thread handing work into a running loop), and every Task:
  asyncio already copies the contextvars of the scheduling moment into each Handle and Task, which
  is exactly capture-at-schedule-time. They are patched only when the policy asks for more than
  that (a span per callback, or relation "link" / "none"); a callback given an explicit
  ``context=`` (as asyncio's own tasks and futures do) is always left alone.

Patches ``asyncio.BaseEventLoop`` (every stdlib loop); uvloop's loop is not a BaseEventLoop, but
its default executor is a ThreadPoolExecutor, which the threads boundary covers.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from threadline.boundaries import threads
from threadline.boundaries._patches import Patches
from threadline.boundaries._renamed import renamed
from threadline.boundaries._task import Policy, Task
from threadline.seam import Relation

__all__ = ["install", "installed", "policy", "uninstall"]

_Loop = asyncio.BaseEventLoop
_run_in_executor = _Loop.run_in_executor
_call_soon = _Loop.call_soon
_call_soon_threadsafe = _Loop.call_soon_threadsafe
_call_at = _Loop.call_at

_executor_patches = Patches()
_callback_patches = Patches()
_policy = Policy()


def _wrap(loop: asyncio.BaseEventLoop, fn: Any, method: str) -> Any:
    if loop._debug:  # noqa: SLF001 - the loop's own debug check, made before fn is wrapped  # pyright: ignore[reportAttributeAccessIssue] - asyncio internal
        loop._check_callback(fn, method)  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue] - asyncio internal
    if type(fn) is Task or _internal(fn):
        return fn
    return Task(fn, _policy)


def _internal(fn: Any) -> bool:
    """Whether fn is asyncio's own machinery (a sleep's wake-up, a chained future's copy, a
    future's set_result): not the user's work, so no span of its own. asyncio still runs it in
    the context of the moment it was scheduled."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    module = getattr(fn, "__module__", None)
    if module is None:  # a C method, such as Future.set_result: its class's module
        owner = getattr(fn, "__self__", None)
        module = type(owner).__module__ if owner is not None else ""
    return module in ("asyncio", "_asyncio") or module.startswith("asyncio.")


def _executor_boundary(loop: asyncio.BaseEventLoop, executor: Any) -> bool:
    """Whether the executor's own boundary (threads, processes) is installed to carry the context:
    then it captures, at the same moment and by its own policy, and asyncio stays out of the way."""
    ex = executor if executor is not None else loop._default_executor  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue] - asyncio internal
    if ex is None:  # asyncio will make a plain ThreadPoolExecutor
        return threads.instrumented()
    if isinstance(ex, ThreadPoolExecutor):
        # A subclass with its own submit may never reach the patched one: wrap it here (the
        # patched submit passes a Task through if it does).
        return threads.instrumented() and type(ex).submit is ThreadPoolExecutor.submit
    if isinstance(ex, ProcessPoolExecutor):
        processes = sys.modules.get("threadline.boundaries.processes")
        return processes is not None and processes.instrumented()
    return False


def _loop_run_in_executor(self, executor, func, /, *args):
    if not _executor_boundary(self, executor):
        func = _wrap(self, func, "run_in_executor")
    return _run_in_executor(self, executor, func, *args)


def _loop_call_soon(self, callback, *args, context=None):
    if context is None:
        callback = _wrap(self, callback, "call_soon")
    return _call_soon(self, callback, *args, context=context)


def _loop_call_soon_threadsafe(self, callback, *args, context=None):
    if context is None:
        callback = _wrap(self, callback, "call_soon_threadsafe")
    return _call_soon_threadsafe(self, callback, *args, context=context)


def _loop_call_at(self, when, callback, *args, context=None):  # call_later calls call_at
    if context is None:
        callback = _wrap(self, callback, "call_at")
    return _call_at(self, when, callback, *args, context=context)


def instrument(*, relation: Relation | None = None, span: bool | str | None = None) -> None:
    """Patch the loop's executor hand-off (once); set the policy when given, as threads.install
    does. The callback methods are patched while the policy is other than plain "child".

    relation: "child" (the default), "link" or "none": how scheduled work continues the
    scheduler's trace (see Policy). span: whether each callback or executor call gets a span of
    its own, and its name (see Policy). With neither, the current policy stays.
    """
    global _policy
    if relation is not None or span is not None:
        _policy = Policy(relation or "child", span)
    if not _executor_patches:
        _executor_patches.set(_Loop, "run_in_executor", _loop_run_in_executor)
    if _policy.plain:
        _callback_patches.restore()
    elif not _callback_patches:
        _callback_patches.set(_Loop, "call_soon", _loop_call_soon)
        _callback_patches.set(_Loop, "call_soon_threadsafe", _loop_call_soon_threadsafe)
        _callback_patches.set(_Loop, "call_at", _loop_call_at)


def uninstrument() -> None:
    """Put the loop's methods back and the policy to its default. Idempotent."""
    global _policy
    _callback_patches.restore()
    _executor_patches.restore()
    _policy = Policy()


def instrumented() -> bool:
    """Whether this boundary is installed."""
    return bool(_executor_patches)


def policy() -> Policy:
    """The policy scheduled work follows now."""
    return _policy


# The names of 0.1, kept for one minor release.
install = renamed(instrument, "threadline.boundaries.asyncio.install")
uninstall = renamed(uninstrument, "threadline.boundaries.asyncio.uninstall")
installed = renamed(instrumented, "threadline.boundaries.asyncio.installed")
