"""How child processes are set up: like this process, unless told otherwise.

A child process (multiprocessing, a Ray worker, a Celery pool process, a node's server) cannot
share this process's exporter or provider. It receives plain values, child_settings(), and sets
itself up with them, set_up_child(), when it starts (the boundaries and integrations that start
it do this):

- threadline configured here: configure() arguments, and the child configures itself the same;
- threadline instrumented on another OpenTelemetry set-up (ThreadlineInstrumentor): the child
  keeps what it inherited (fork) or set up itself (opentelemetry-instrument's sitecustomize, the
  main module's import under spawn); failing both it runs the user's ``child_setup`` callable.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from opentelemetry import trace

from threadline import _runtime
from threadline._settings import Settings

log = logging.getLogger("threadline")

_CONFIGURE_ARGUMENTS = frozenset(f.name for f in fields(Settings))
CHILD_SETUP = "child_setup"  # the key that marks a child of another set-up's process

# What child processes are configured with instead of this process's own values.
_overrides: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None
_child_setup: str | None = None  # "package.module:function", run once in a child that needs it
_boundaries: tuple[str, ...] = ()  # what the instrumentor installed: children install them too
_set_up_pid = 0  # the process that ran its set-up (a forked child inherits the value, not the run)
_setup_lock = threading.Lock()
_setup_failed = 0  # children whose set-up raised (export_stats()["child_setup_failed"])
_warned_unset = False


def children(overrides: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None) -> None:
    """Configure child processes with these configure() arguments instead of this process's own.

    Args:
        overrides: a mapping of configure() arguments, or a callable returning one when a child
            starts (its values may change, a test collector's endpoint say); None restores the
            default, the parent's own settings. Unknown argument names raise ValueError.
    """
    global _overrides
    if overrides is not None and not callable(overrides):
        bad = set(overrides) - _CONFIGURE_ARGUMENTS
        if bad:
            raise ValueError(
                f"unknown configure() argument(s) for children: {', '.join(sorted(bad))}"
            )
        overrides = dict(overrides)
    _overrides = overrides


def child_settings() -> dict[str, Any] | None:
    """configure() arguments for a child process started now, or None when not configured.

    Same exporter, endpoint and service; the resource names this process as the parent. A custom
    SpanExporter instance cannot travel, so such children export OTLP to the configured endpoint.
    """
    rt = _runtime.current()
    if rt is None:
        if _runtime.enabled():  # instrumented on the user's own set-up
            return {
                CHILD_SETUP: _child_setup,
                "boundaries": list(_boundaries),
                "resource_attributes": {"process.parent_pid": os.getpid()},
            }
        return None
    if rt.child_base is None:
        rt.child_base = rt.settings.to_dict()
    out = dict(rt.child_base)
    if out["exporter"] == "custom":
        out["exporter"] = "otlp"
    overrides = _overrides() if callable(_overrides) else _overrides
    if overrides and "endpoint" in overrides and "traces_endpoint" not in overrides:
        out["traces_endpoint"] = None  # a new endpoint for the children replaces the traces URL
    out.update(overrides or {})
    out["resource_attributes"] = {**out["resource_attributes"], "process.parent_pid": os.getpid()}
    return out


# -- children of another set-up (ThreadlineInstrumentor) ---------------------------------------


def resolve_setup(spec: str | Callable[[], Any]) -> str:
    """The importable name of a child_setup callable, checked now: "package.module:function", or
    a module-level function (its module and name are what travels). Raises ValueError naming it."""
    if callable(spec):
        module, name = getattr(spec, "__module__", None), getattr(spec, "__qualname__", "")
        # A script's own function is found again in a spawn or forkserver child, which imports
        # the script as its __main__; an interactive session's is not.
        scripted = module != "__main__" or getattr(sys.modules["__main__"], "__file__", None)
        if not module or "<" in name or not scripted:
            raise ValueError(
                f"child_setup: {spec!r} cannot be imported by a child process; pass a module-level "
                "function of an importable module, or its name as 'package.module:function'"
            )
        spec = f"{module}:{name}"
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"child_setup must be 'package.module:function', not {spec!r}")
    load_setup(spec)
    return spec


def load_setup(spec: str) -> Callable[[], Any]:
    """Import the callable a child_setup names. Raises ValueError naming what is missing."""
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"child_setup {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"child_setup {spec!r}: {module_name!r} has no {attr!r}") from None
    if not callable(target):
        raise ValueError(f"child_setup {spec!r} is not callable")
    return target


def borrow(
    child_setup: str | Callable[[], Any] | None = None, boundaries: tuple[str, ...] = ()
) -> None:
    """Carry context through the global provider, whoever set it up. Children install the same
    boundaries, and those that start with no provider run child_setup (checked now: ValueError
    naming it when it cannot be imported)."""
    _lend(resolve_setup(child_setup) if child_setup is not None else None, boundaries)


def unborrow() -> None:
    """Undo borrow(): the boundaries carry context again only once configure() has run."""
    global _child_setup, _boundaries
    _runtime.borrow(False)
    _child_setup, _boundaries = None, ()


def _lend(spec: str | None, boundaries: tuple[str, ...]) -> None:
    """borrow() with a child_setup already checked (by the parent, for a child)."""
    global _child_setup, _boundaries
    _child_setup, _boundaries = spec, tuple(boundaries)
    _runtime.borrow(True)


def set_up_child(settings: Mapping[str, Any] | None) -> None:
    """In a child as it starts: set it up from child_settings() of its parent."""
    if settings is None:
        return
    if CHILD_SETUP not in settings:
        _runtime.configure(**settings)
        return
    spec = settings[CHILD_SETUP]
    # Checked by the parent: imported here only if it is to run (_run_setup counts a failure).
    _lend(spec, tuple(settings.get("boundaries", ())))  # its own children, if any, do the same
    _run_setup(spec)
    from threadline import boundaries  # the boundaries are threadline's outer layer

    for name in settings.get("boundaries", ()):
        boundaries.module(name).instrument()


def _unset() -> bool:
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _run_setup(spec: str | None) -> None:
    """Once per process: the user's set-up, unless one is in place (inherited across fork, or
    made at start by sitecustomize or the main module's import). A set-up that raises is logged
    and counted; the child runs its tasks untraced rather than die of tracing."""
    global _set_up_pid, _setup_failed, _warned_unset
    with _setup_lock:
        if _set_up_pid == os.getpid():
            return
        _set_up_pid = os.getpid()
        if spec is not None and _unset():
            try:
                load_setup(spec)()
            except Exception:
                _setup_failed += 1
                log.warning(
                    "threadline: child_setup %r failed in process %d; its tasks run untraced",
                    spec,
                    os.getpid(),
                    exc_info=True,
                )
                return
        if _unset() and not _warned_unset:
            _warned_unset = True
            log.warning(
                "threadline: process %d has no tracer provider, so its spans are not recorded: "
                "set OpenTelemetry up at import of the main module, or pass "
                "ThreadlineInstrumentor().instrument(child_setup='package.module:function')",
                os.getpid(),
            )


def setup_failures() -> int:
    """Children of this process's kind whose child_setup raised, in this process."""
    return _setup_failed
