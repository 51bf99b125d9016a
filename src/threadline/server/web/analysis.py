"""HTTP endpoints for analysis, under /api/threadline/analysis/ (used by the web UI and the CLI).

    GET trace/{trace_id}[?skew=1]    the trace as waterfall rows (tree order, placeholders for
                                     parents that never arrived), breaks, incomplete spans,
                                     critical path, and the clock-skew shifts when asked for;
                                     &client_clock=raw undoes corrections made at source
    GET dependencies                 service graph; nodes carry kind ("service" | "database" |
                                     "external"), edges calls, errors, kind ("call" |
                                     "messaging" | "link" | "database" | "external") and
                                     example trace ids
    GET completeness[?buckets=12]    completeness metrics over time, worst broken hops first,
                                     and the dropped contexts (receiving roots that should
                                     have had a caller) per hop
    GET summaries?id=..&id=..        trace summaries for the example trace ids above (max 100)

Windows: `start` / `end` in microseconds since the epoch (as Jaeger's API), or `lookback` ("15m",
"1h", "2d"; default 1h) ending at `end` or now. Times inside a trace payload are nanoseconds
relative to `t0_ns` (a string: epoch nanoseconds do not fit a JavaScript number).

`routes(store)` reads through the store interface (`threadline.server.storage.Store`):
`get_trace`, and `spans_between` + `get_traces` for a window, so a trace that started in the
window is analysed whole even where some of its spans fall outside it.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from threadline.server import analysis as an
from threadline.server.model import KIND_CONSUMER, KIND_NAMES, KIND_SERVER, Span
from threadline.server.storage.base import Store
from threadline.server.web.params import (
    MAX_ANALYSIS_SPANS,
    MAX_LOOKBACK_NS,
    duration_param,
    micros_param,
    trace_id_param,
)
from threadline.server.web.responses import BadRequest, CompactJSON, error_response

PREFIX = "/api/threadline/analysis"
_TRACE_ID = re.compile(r"^[0-9a-f]{1,32}$")


class WindowTooLarge(BadRequest):
    """The window holds more spans than an analysis reads (MAX_ANALYSIS_SPANS)."""


def traces_started_in(store: Store, start_ns: int, end_ns: int) -> list[Span]:
    """Every span of the traces whose first span starts in [start_ns, end_ns). WindowTooLarge
    when the window holds more than MAX_ANALYSIS_SPANS spans: never read whole."""
    if store.count_between(start_ns, end_ns, MAX_ANALYSIS_SPANS) > MAX_ANALYSIS_SPANS:
        raise WindowTooLarge(
            f"the window holds more than {MAX_ANALYSIS_SPANS} spans: narrow lookback "
            "(or start and end)"
        )
    ids = sorted({s.trace_id for s in store.spans_between(start_ns, end_ns)})
    traces = store.get_traces(ids) if ids else {}
    return [
        s
        for spans in traces.values()
        if spans and start_ns <= min(x.start_ns for x in spans) < end_ns
        for s in spans
    ]


EVIDENCE_WINDOW_NS = 3600 * 10**9  # each side of a root: where to look for its service's calls
EVIDENCE_SPANS = 20_000  # at most this many of that service's spans are read


def context_around(store: Store, spans: list[Span]) -> set[tuple[str, int, str]]:
    """For a trace whose root receives (a SERVER or CONSUMER span with no parent and no link):
    the entries its service received with context within an hour either side, from which
    `analysis.analyse` says whether the root dropped its context. Empty for any other trace."""
    roots = [
        s
        for s in spans
        if not s.parent_span_id and not s.links and s.kind in (KIND_SERVER, KIND_CONSUMER)
    ]
    if not roots:
        return set()
    root = min(roots, key=lambda s: s.start_ns)
    around = store.spans_between(
        root.start_ns - EVIDENCE_WINDOW_NS,
        root.start_ns + EVIDENCE_WINDOW_NS,
        service=root.service,
        limit=EVIDENCE_SPANS,
    )
    return an.received_with_context(around)


def routes(store: Store) -> list[Route]:
    """The analysis routes over a store (reads run in the thread pool: the store is sync)."""

    async def trace_view(request: Request) -> JSONResponse:
        try:
            trace_id = trace_id_param(request.path_params["trace_id"])
        except ValueError as e:
            return error_response(400, str(e))
        spans = await run_in_threadpool(store.get_trace, trace_id)
        if not spans:
            return error_response(404, f"trace {trace_id} not found")
        skew = request.query_params.get("skew", "") in ("1", "true", "yes", "on")
        raw = request.query_params.get("client_clock", "") == "raw"
        seen = await run_in_threadpool(context_around, store, spans)
        result = await run_in_threadpool(
            an.analyse, spans, adjust_skew=skew, raw_client_clock=raw, context_seen=seen
        )
        return CompactJSON(trace_payload(result))

    async def dependencies_view(request: Request) -> JSONResponse:
        try:
            start_ns, end_ns = window_of(request.query_params)
        except BadRequest as e:
            return error_response(400, str(e))
        try:
            spans = await run_in_threadpool(traces_started_in, store, start_ns, end_ns)
        except WindowTooLarge as e:
            return error_response(400, str(e))
        graph = await run_in_threadpool(an.dependencies, spans, examples=20)
        return CompactJSON(
            {
                "start_ns": str(start_ns),
                "end_ns": str(end_ns),
                "services": [
                    {
                        "service": n.service,
                        "kind": n.kind,
                        "spans": n.spans,
                        "errors": n.errors,
                        **({"system": n.system, "calls": n.calls} if n.kind != "service" else {}),
                    }
                    for n in graph.services
                ],
                "edges": [
                    {
                        "parent": e.parent,
                        "child": e.child,
                        "kind": e.kind,
                        "messaging": e.kind in ("messaging", "link"),
                        "calls": e.calls,
                        "errors": e.errors,
                        "trace_ids": e.trace_ids,
                    }
                    for e in graph.edges
                ],
                "unresolved_links": graph.unresolved_links,
            }
        )

    async def completeness_view(request: Request) -> JSONResponse:
        try:
            start_ns, end_ns = window_of(request.query_params)
            buckets = int(request.query_params.get("buckets", "12"))
            if not 1 <= buckets <= 500:
                raise ValueError
        except BadRequest as e:
            return error_response(400, str(e))
        except ValueError:
            return error_response(400, "buckets must be an integer from 1 to 500")
        try:
            spans = await run_in_threadpool(traces_started_in, store, start_ns, end_ns)
        except WindowTooLarge as e:
            return error_response(400, str(e))
        groups = an.group_by_trace(spans).values()
        c = await run_in_threadpool(
            an.completeness, groups, start_ns=start_ns, end_ns=end_ns, buckets=buckets
        )
        return CompactJSON(completeness_payload(c, start_ns, end_ns))

    async def summaries_view(request: Request) -> JSONResponse:
        ids = [i.lower().rjust(32, "0") for i in request.query_params.getlist("id")]
        bad = [i for i in ids if not _TRACE_ID.match(i)]
        if bad or len(ids) > 100:
            return error_response(
                400, f"id must be up to 100 trace ids of 32 hex digits; bad: {bad[:3]}"
            )
        found = await run_in_threadpool(store.summaries, ids)
        return CompactJSON({"traces": [t.to_dict() for t in found]})

    return [
        Route(PREFIX + "/summaries", summaries_view, methods=["GET"]),
        Route(PREFIX + "/trace/{trace_id}", trace_view, methods=["GET"]),
        Route(PREFIX + "/dependencies", dependencies_view, methods=["GET"]),
        Route(PREFIX + "/completeness", completeness_view, methods=["GET"]),
    ]


def window_of(params: Any, now_ns: int | None = None) -> tuple[int, int]:
    """[start_ns, end_ns) from `start`/`end` (µs) or `lookback` ending at `end` or now."""

    def micros(name: str) -> int | None:
        try:
            return micros_param(params, name)
        except BadRequest as exc:
            raise BadRequest(f"{exc} (microseconds since the epoch)") from None

    end = micros("end")
    end = end if end is not None else (now_ns if now_ns is not None else time.time_ns())
    start = micros("start")
    if start is None:
        raw = params.get("lookback") or "1h"
        try:
            start = end - duration_param(raw, days=True)
        except BadRequest:
            raise BadRequest(
                f"lookback must look like 30s, 15m, 1h or 2d, got {raw[:40]!r}"
            ) from None
    if start >= end:
        raise BadRequest(f"start ({start // 1000}) must be before end ({end // 1000})")
    if end - start > MAX_LOOKBACK_NS:
        days = MAX_LOOKBACK_NS // (86400 * 10**9)
        raise BadRequest(f"the window (lookback, or start to end) must be at most {days}d long")
    return start, end


def trace_payload(result: an.TraceAnalysis) -> dict[str, Any]:
    tree = result.tree
    rows = list(tree.walk())
    t0 = min((n.start_ns for n in tree.roots), default=0)
    index = {n.span_id: i for i, n in enumerate(rows)}
    on_path = {seg.span_id for seg in result.critical_path}
    why = {i.span_id: i.reason for i in result.incomplete}
    resources: list[dict] = []
    by_object: dict[int, int] = {}
    by_value: dict[str, int] = {}

    def resource_of(span: Span) -> int:
        # each export batch (or store row) has its own resource dict; equal ones share an entry
        key = id(span.resource)
        if key not in by_object:
            value = repr(span.resource)
            if value not in by_value:
                by_value[value] = len(resources)
                resources.append(span.resource)
            by_object[key] = by_value[value]
        return by_object[key]

    out_rows = []
    for n in rows:
        row: dict[str, Any] = {
            "id": n.span_id,
            "parent": index[n.parent.span_id] if n.parent else -1,
            "depth": n.depth,
            "children": len(n.children),
            "start": n.start_ns - t0,
            "end": n.end_ns - t0,
            "critical": n.span_id in on_path,
        }
        s = n.span
        if s is None:
            row.update(placeholder=True, name="(missing parent)", service="", note=n.note)
        else:
            row.update(
                name=s.name,
                service=s.service,
                kind=KIND_NAMES.get(s.kind, str(s.kind)),
                status=s.status_code,
                status_message=s.status_message,
                attributes=s.attributes,
                resource=resource_of(s),
                scope=s.scope_name,
                events=[
                    {"t": e.time_ns - t0, "name": e.name, "attributes": e.attributes}
                    for e in s.events
                ],
                links=[
                    {"trace_id": lk.trace_id, "span_id": lk.span_id, "attributes": lk.attributes}
                    for lk in s.links
                ],
            )
            if s.pending:
                row.update(pending=True, note=why.get(s.span_id, ""))
        out_rows.append(row)
    return {**trace_facts(result, t0), "resources": resources, "rows": out_rows}


def trace_facts(result: an.TraceAnalysis, t0: int) -> dict[str, Any]:
    """What the trace view says about a trace besides its rows (times in ns after t0)."""
    tree = result.tree
    t1 = max((n.end_ns for n in tree.nodes.values()), default=0)
    root = tree.main_root
    return {
        "trace_id": tree.trace_id,
        "t0_ns": str(t0),
        "duration_ns": t1 - t0,
        "summary": {
            "root_service": root.service if root else "",
            "root_name": root.name if root else "",
            "span_count": len(tree.spans),
            "services": result.services,
            "errors": result.error_count,
            "incomplete": len(result.incomplete),
            "placeholders": len(tree.placeholders),
            "breaks": len(result.breaks),
            "dropped_context": result.dropped is not None,
        },
        "breaks": [_break(b) for b in result.breaks],
        "dropped_context": _dropped(result.dropped) if result.dropped else None,
        "incomplete": [
            {
                "span_id": i.span_id,
                "service": i.service,
                "name": i.name,
                "pid": i.pid,
                "reason": i.reason,
                "reported_by": i.reported_by,
            }
            for i in result.incomplete
        ],
        "critical_path": [
            {"span_id": s.span_id, "start": s.start_ns - t0, "end": s.end_ns - t0}
            for s in result.critical_path
        ],
        "skew": {
            "adjusted": result.skew_adjusted,
            "client_corrected": result.client_corrected,
            "client_clock": "raw" if result.client_clock_raw else "corrected",
            "shifts": [
                {
                    "span_id": s.span_id,
                    "service": s.service,
                    "name": s.name,
                    "delta_ns": s.delta_ns,
                    "spans_moved": s.spans_moved,
                    "reason": s.reason,
                }
                for s in result.shifts
            ],
        },
    }


def _dropped(d: an.DroppedContext) -> dict[str, Any]:
    return {
        "span_id": d.span_id,
        "service": d.service,
        "name": d.name,
        "kind": KIND_NAMES.get(d.kind, str(d.kind)),
        "destination": d.destination,
        "message": d.message,
    }


def _break(b: an.Break) -> dict[str, Any]:
    def side(s: an.Side | None) -> dict | None:
        return s and {
            "service": s.service,
            "span_id": s.span_id,
            "name": s.name,
            "kind": KIND_NAMES.get(s.kind, str(s.kind)),
        }

    return {
        "kind": b.kind,
        "missing_span_id": b.missing_span_id,
        "before": side(b.before),
        "after": side(b.after),
        "message": b.message,
    }


def completeness_payload(c: an.Completeness, start_ns: int, end_ns: int) -> dict[str, Any]:
    def shares(
        n: int, one: int, orphans: int, pending: int, dropped: int, connected: int
    ) -> dict[str, Any]:
        def share(k: int) -> float:
            return round(k / n, 4) if n else 0.0

        return {
            "traces": n,
            "one_root": one,
            "with_orphans": orphans,
            "with_incomplete": pending,
            "with_dropped_context": dropped,
            "connected": connected,
            "one_root_share": share(one),
            "orphan_share": share(orphans),
            "incomplete_share": share(pending),
            "dropped_context_share": share(dropped),
            "connected_share": share(connected),
        }

    return {
        "start_ns": str(start_ns),
        "end_ns": str(end_ns),
        **shares(
            c.traces,
            c.one_root,
            c.with_orphans,
            c.with_incomplete,
            c.with_dropped_context,
            c.connected,
        ),
        "buckets": [
            {
                "start_ns": str(b.start_ns),
                "end_ns": str(b.end_ns),
                **shares(
                    b.traces,
                    b.one_root,
                    b.with_orphans,
                    b.with_incomplete,
                    b.with_dropped_context,
                    b.connected,
                ),
            }
            for b in c.buckets
        ],
        "broken_hops": [
            {
                "before": h.before,
                "after": h.after,
                "count": h.count,
                "trace_ids": h.trace_ids,
                "example": h.example,
            }
            for h in c.broken_hops
        ],
        "dropped_context": [
            {
                "sender": h.sender,
                "receiver": h.receiver,
                "destination": h.destination,
                "kind": h.kind,
                "count": h.count,
                "trace_ids": h.trace_ids,
                "example": h.example,
            }
            for h in c.dropped_context
        ],
    }
