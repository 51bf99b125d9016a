"""The trace as the web UI's waterfall draws it: parallel columns over one string table, built in
one pass, so a 50k-span trace is a few megabytes of JSON; a span's details come when it is
selected.

    GET /api/threadline/analysis/waterfall/{trace_id}[?skew=1][&client_clock=raw]
        the trace endpoint's findings (summary, breaks, incomplete spans, critical path,
        clock-skew shifts) and, for its rows in tree order, `columns`: `id`, `parent` (row index,
        -1 for none), `depth`, `children`, `start`, `end` (ns after `t0_ns`), `service`, `name`
        and `kind` (indexes into `strings`), `status`, `flags` (1 placeholder, 2 incomplete);
        `notes` (row -> why it is a placeholder or incomplete) and `links` ([row, trace id,
        span id] for every link, so the page knows what links to what)
    GET /api/threadline/analysis/waterfall/{trace_id}/span/{span_id}[same options]
        that span's attributes, resource, scope, status message, events (ns after the same
        t0) and links, each with its target's service and name when the target is known

The last few traces shown are kept, as analysed, so selecting a span does not read and analyse
a 50k-span trace again; a trace not kept any more is read again.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from threadline.server import analysis as an
from threadline.server.model import KIND_NAMES, Span
from threadline.server.storage.base import Store
from threadline.server.web.analysis import PREFIX, context_around, trace_facts
from threadline.server.web.params import trace_id_param
from threadline.server.web.responses import CompactJSON, error_response

PLACEHOLDER, PENDING = 1, 2
_SPAN_ID = re.compile(r"^[0-9a-f]{1,16}$")
MAX_LINKED_TRACES = 10  # traces read to name the targets of one span's links


class Shown:
    """One analysed trace as the page shows it: its spans by id and the origin of its times."""

    def __init__(self, result: an.TraceAnalysis) -> None:
        self.result = result
        tree = result.tree
        self.t0 = min((n.start_ns for n in tree.roots), default=0)
        self.spans: dict[str, Span] = {n.span_id: n.span for n in tree.nodes.values() if n.span}


class Recent:
    """The traces shown last, newest kept, up to `max_spans` spans in all (at least one)."""

    def __init__(self, max_spans: int = 250_000) -> None:
        self.max_spans = max_spans
        self._kept: OrderedDict[tuple, Shown] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple, shown: Shown) -> None:
        with self._lock:
            self._kept[key] = shown
            self._kept.move_to_end(key)
            while len(self._kept) > 1 and self._size() > self.max_spans:
                self._kept.popitem(last=False)

    def get(self, key: tuple) -> Shown | None:
        with self._lock:
            return self._kept.get(key)

    def _size(self) -> int:
        return sum(len(s.spans) for s in self._kept.values())


def columns_payload(shown: Shown) -> dict[str, Any]:
    result, t0 = shown.result, shown.t0
    rows = list(result.tree.walk())
    spans = [n.span for n in rows]
    index = {n.span_id: i for i, n in enumerate(rows)}
    # one pass per column: comprehensions are several times cheaper than appends in one loop
    services = [s.service if s else "" for s in spans]
    names = [s.name if s else "" for s in spans]
    kinds = [KIND_NAMES.get(s.kind, str(s.kind)) if s else "" for s in spans]
    table = {v: i for i, v in enumerate(dict.fromkeys(itertools.chain(services, names, kinds)))}
    why = {i.span_id: i.reason for i in result.incomplete}
    flags = [PLACEHOLDER if s is None else PENDING if s.pending else 0 for s in spans]
    notes = {
        str(i): rows[i].note if f == PLACEHOLDER else why.get(rows[i].span_id, "")
        for i, f in enumerate(flags)
        if f
    }
    return {
        **trace_facts(result, t0),
        "strings": list(table),
        "columns": {
            "id": [n.span_id for n in rows],
            "parent": [index[n.parent.span_id] if n.parent else -1 for n in rows],
            "depth": [n.depth for n in rows],
            "children": [len(n.children) for n in rows],
            "start": [n.start_ns - t0 for n in rows],
            "end": [n.end_ns - t0 for n in rows],
            "service": [table[v] for v in services],
            "name": [table[v] for v in names],
            "kind": [table[v] for v in kinds],
            "status": [s.status_code if s else 0 for s in spans],
            "flags": flags,
        },
        "notes": notes,
        "links": [[i, lk.trace_id, lk.span_id] for i, s in enumerate(spans) if s for lk in s.links],
    }


def span_payload(shown: Shown, span: Span, linked: dict[tuple[str, str], Span]) -> dict[str, Any]:
    def target(trace_id: str, span_id: str) -> dict[str, Any]:
        found = linked.get((trace_id, span_id))
        return {"service": found.service, "name": found.name} if found else {}

    return {
        "span_id": span.span_id,
        "attributes": span.attributes,
        "resource": span.resource,
        "scope": span.scope_name,
        "status_message": span.status_message,
        "events": [
            {"t": e.time_ns - shown.t0, "name": e.name, "attributes": e.attributes}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": lk.trace_id,
                "span_id": lk.span_id,
                "attributes": lk.attributes,
                **target(lk.trace_id, lk.span_id),
            }
            for lk in span.links
        ],
    }


def routes(store: Store, recent: Recent | None = None) -> list[Route]:
    recent = recent or Recent()

    async def shown_trace(request: Request) -> Shown | Response:
        try:
            trace_id = trace_id_param(request.path_params["trace_id"])
        except ValueError as e:
            return error_response(400, str(e))
        skew = request.query_params.get("skew", "") in ("1", "true", "yes", "on")
        raw = request.query_params.get("client_clock", "") == "raw"
        key = (trace_id, skew, raw)
        if "span_id" in request.path_params and (kept := recent.get(key)) is not None:
            return kept  # details of what is on screen: the trace as it was shown
        spans = await run_in_threadpool(store.get_trace, trace_id)
        if not spans:
            return error_response(404, f"trace {trace_id} not found")
        seen = await run_in_threadpool(context_around, store, spans)
        result = await run_in_threadpool(
            an.analyse, spans, adjust_skew=skew, raw_client_clock=raw, context_seen=seen
        )
        shown = Shown(result)
        recent.put(key, shown)
        return shown

    async def waterfall(request: Request) -> Response:
        shown = await shown_trace(request)
        if isinstance(shown, Response):
            return shown
        # built and encoded in the thread pool: a big trace's JSON would stall the event loop
        return await run_in_threadpool(lambda: CompactJSON(columns_payload(shown)))

    async def span_detail(request: Request) -> Response:
        span_id = request.path_params["span_id"].lower()
        if not _SPAN_ID.match(span_id):
            return error_response(400, f"span id must be up to 16 hex digits, got {span_id[:64]!r}")
        shown = await shown_trace(request)
        if isinstance(shown, Response):
            return shown
        span = shown.spans.get(span_id.rjust(16, "0"))
        if span is None:
            return error_response(
                404, f"span {span_id} is not in trace {shown.result.tree.trace_id}"
            )
        linked = await run_in_threadpool(_link_targets, store, shown, span)
        return CompactJSON(span_payload(shown, span, linked))

    return [
        Route(PREFIX + "/waterfall/{trace_id}", waterfall, methods=["GET"]),
        Route(PREFIX + "/waterfall/{trace_id}/span/{span_id}", span_detail, methods=["GET"]),
    ]


def _link_targets(store: Store, shown: Shown, span: Span) -> dict[tuple[str, str], Span]:
    """The spans the links point at, where known: in the trace shown, or in up to
    MAX_LINKED_TRACES other traces read from the store."""
    own = shown.result.tree.trace_id
    found = {(own, lk.span_id): shown.spans[lk.span_id] for lk in span.links
             if lk.trace_id == own and lk.span_id in shown.spans}  # fmt: skip
    others = list(dict.fromkeys(lk.trace_id for lk in span.links if lk.trace_id != own))
    if others:
        wanted = {(lk.trace_id, lk.span_id) for lk in span.links}
        for spans in store.get_traces(others[:MAX_LINKED_TRACES]).values():
            found.update(
                {(s.trace_id, s.span_id): s for s in spans if (s.trace_id, s.span_id) in wanted}
            )
    return found
