"""`threadline serve`: OTLP receiver -> store -> analysis -> query API -> web UI.

    from threadline import server
    with server.start() as srv:            # ephemeral ports, in-memory store, this process
        srv.urls.otlp_http, srv.urls.api
        server.Client(srv.urls.api).wait_for_trace(trace_id)

Layers, imports pointing down only:

    model.py, durations.py   the span model; the duration parser; tokens.py: bearer tokens
    otlp/                    OTLP wire formats <-> model (and the rows the decoder builds)
    storage/                 the Store interface, query language, table layout, one module per engine
    ingest/                  queue + writer, OTLP/HTTP and gRPC handlers, the decode-path choice
    analysis.py              pure functions over spans
    web/                     the Starlette app, routes, shared responses, the UI's static files
    serving.py, command.py   the server process and `threadline serve`; client.py reads a server

Never imports threadline.boundaries or threadline.integrations; submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline.server.client import Client
    from threadline.server.serving import PortInUse, Server, serve_argv, spawn, start

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


__all__ = ["Client", "PortInUse", "Server", "serve_argv", "spawn", "start"]
