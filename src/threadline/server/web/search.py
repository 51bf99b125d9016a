"""threadline's own query endpoints (`/api/threadline/...`):

    GET search?service=&operation=&kind=&status=error&filter=...&minDuration=&maxDuration=
               &start=&end=&lookback=&limit=     trace summaries, most recent first
    GET traces/{id}                              the trace's spans, every field (JSON-safe)
    GET live                                     Server-Sent Events: summaries of traces as
                                                 their spans are stored
    GET stats                                    store and ingest counters

`filter` (repeatable, all must hold) is `key=value`, `key!=value`, `key<n`, `key>n`, `key<=n`,
`key>=n`, `key` (exists) or `!key` (missing), optionally `span:`/`resource:` prefixed, with
alternatives joined by ` OR `. One span must satisfy every condition (as in Jaeger).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from threadline.server.ingest.queue import Ingest
from threadline.server.model import KIND_NAMES, STATUS_ERROR, Span
from threadline.server.storage.base import Store
from threadline.server.storage.query import parse_filter
from threadline.server.web import jaeger
from threadline.server.web.params import kind_param, trace_id_param
from threadline.server.web.responses import error_response, json_safe


def span_json(s: Span) -> dict[str, Any]:
    """Every field of a span; nanosecond times as strings (they exceed JavaScript numbers)."""
    return {
        "trace_id": s.trace_id,
        "span_id": s.span_id,
        "parent_span_id": s.parent_span_id,
        "name": s.name,
        "kind": KIND_NAMES.get(s.kind, str(s.kind)),
        "service": s.service,
        "start_ns": str(s.start_ns),
        "end_ns": str(s.end_ns),
        "duration_ns": s.duration_ns,
        "status_code": s.status_code,
        "status_message": s.status_message,
        "pending": s.pending,
        "attributes": json_safe(s.attributes),
        "resource": json_safe(s.resource),
        "scope": {
            "name": s.scope_name,
            "version": s.scope_version,
            "attributes": json_safe(s.scope_attributes),
        },
        "events": [
            {"time_ns": str(e.time_ns), "name": e.name, "attributes": json_safe(e.attributes)}
            for e in s.events
        ],
        "links": [
            {
                "trace_id": lk.trace_id,
                "span_id": lk.span_id,
                "trace_state": lk.trace_state,
                "attributes": json_safe(lk.attributes),
            }
            for lk in s.links
        ],
        "trace_state": s.trace_state,
        "flags": s.flags,
    }


def routes(store: Store, ingest: Ingest | None) -> list[BaseRoute]:
    async def search(request: Request) -> Response:
        params = request.query_params
        try:
            query = jaeger.v1_query(params)
            for text in params.getlist("filter"):
                query.filters.append(parse_filter(text))
            if params.get("kind"):
                query.kind = kind_param(params["kind"], "kind")
            status = params.get("status", "")
            if status:
                if status not in ("error", "ok", "unset"):
                    raise ValueError(f"status must be error, ok or unset, got {status[:20]!r}")
                query.status_code = {"unset": 0, "ok": 1, "error": STATUS_ERROR}[status]
        except ValueError as exc:  # BadRequest and filter syntax errors
            return error_response(400, str(exc))
        found = await run_in_threadpool(store.search, query)
        return JSONResponse({"traces": [t.to_dict() for t in found], "limit": query.limit})

    async def trace(request: Request) -> Response:
        try:
            trace_id = trace_id_param(request.path_params["trace_id"])
        except ValueError as exc:
            return error_response(400, str(exc))
        spans = await run_in_threadpool(store.get_trace, trace_id)
        if not spans:
            return error_response(404, f"trace not found: {trace_id}")
        return JSONResponse({"trace_id": trace_id, "spans": [span_json(s) for s in spans]})

    async def stats(request: Request) -> Response:
        out = await run_in_threadpool(store.stats)
        if ingest is not None:
            out["ingest"] = {"committed": ingest.committed, "failed": ingest.failed}
        return JSONResponse(out)

    async def live(request: Request) -> Response:
        if ingest is None:
            return error_response(404, "no receiver in this app")
        feed = ingest
        loop = asyncio.get_running_loop()
        changed: asyncio.Queue[set[str]] = asyncio.Queue(maxsize=1000)

        def on_commit(ids: set[str]) -> None:
            loop.call_soon_threadsafe(lambda: changed.full() or changed.put_nowait(ids))

        async def events() -> AsyncIterator[str]:
            unsubscribe = feed.subscribe(on_commit)
            try:
                yield ": connected\n\n"
                while True:
                    try:
                        ids = await asyncio.wait_for(changed.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    await asyncio.sleep(0.2)  # coalesce a burst of commits into one message
                    while not changed.empty():
                        ids |= changed.get_nowait()
                    summaries = await run_in_threadpool(store.summaries, sorted(ids)[:500])
                    yield f"event: traces\ndata: {json.dumps([t.to_dict() for t in summaries])}\n\n"
            finally:
                unsubscribe()

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return [
        Route("/api/threadline/search", search),
        Route("/api/threadline/traces/{trace_id}", trace),
        Route("/api/threadline/stats", stats),
        Route("/api/threadline/live", live),
    ]
