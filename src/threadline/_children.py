"""How child processes are configured: like this process, unless told otherwise.

A child process (multiprocessing, a Ray worker, a Celery pool process, a node's server) cannot
share this process's exporter or provider; it receives plain configure() arguments and configures
itself with them when it starts (the boundaries and integrations that start it do this).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from threadline import _runtime
from threadline._settings import Settings

_CONFIGURE_ARGUMENTS = frozenset(f.name for f in fields(Settings))

# What child processes are configured with instead of this process's own values.
_overrides: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None


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
