"""`threadline serve`: OTLP receiver -> store -> analysis -> query API -> web UI.

    from threadline import server
    with server.start() as srv:            # ephemeral ports, in-memory store, this process
        srv.urls.otlp_http, srv.urls.api
        server.Client(srv.urls.api).wait_for_trace(trace_id)

Never imports threadline.boundaries or threadline.integrations; submodules load on first use."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Server": "serving",
    "start": "serving",
    "spawn": "serving",
    "serve_argv": "serving",
    "PortInUse": "serving",
    "Client": "client",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"threadline.server.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'threadline.server' has no attribute {name!r}")


__all__ = list(_EXPORTS)
