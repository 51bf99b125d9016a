"""Jaeger's query API, so Grafana's Jaeger data source and the Jaeger UI can read threadline.

v1 (`/api/...`): Jaeger's JSON shapes — `{data, total, limit, offset, errors}`, traces as
`{traceID, spans, processes, warnings}`, microsecond times, typed tags, events as logs, the parent
as a CHILD_OF reference and links as FOLLOWS_FROM. OTLP details Jaeger has no field for become
tags the way Jaeger's own OTLP translator names them (span.kind, otel.status_code, error,
otel.scope.name, w3c.tracestate). api_v3 (`/api/v3/...`) answers in OTLP/JSON, losslessly.

A span whose completed copy never arrived (docs/internals.md) carries the tag
`threadline.incomplete=true` and a warning in v1.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from threadline.semconv import INCOMPLETE
from threadline.server.model import KIND_NAMES, STATUS_ERROR, STATUS_OK, Span
from threadline.server.otlp.json_format import encode_json
from threadline.server.storage.base import ResultTooLarge, Store
from threadline.server.storage.query import Filter, Query
from threadline.server.web.params import (
    MAX_LOOKBACK_NS,
    MAX_MICROS,
    MAX_RESULT_SPANS,
    MAX_TRACES,
    capped,
    duration_param,
    int_param,
    json_param,
    kind_param,
    lookback_param,
    micros_param,
    trace_id_param,
    traces_param,
)
from threadline.server.web.responses import BadRequest, json_safe

INCOMPLETE_WARNING = "incomplete: announced when it started but never completed (the worker died or is still running)"


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {
            "key": key,
            "type": "float64",
            "value": value if math.isfinite(value) else str(value),
        }
    if isinstance(value, bytes):
        return {"key": key, "type": "binary", "value": base64.b64encode(value).decode()}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(json_safe(value), ensure_ascii=False)}


def _tags(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [_tag(k, v) for k, v in attrs.items()]


def _us(ns: int) -> int:
    return ns // 1000


def jaeger_trace(trace_id: str, spans: list[Span]) -> dict[str, Any]:
    processes: dict[str, dict] = {}
    process_ids: dict[str, str] = {}
    out = []
    for s in spans:
        pkey = json.dumps([s.service, json_safe(s.resource)], sort_keys=True)
        pid = process_ids.get(pkey)
        if pid is None:
            pid = process_ids[pkey] = f"p{len(process_ids) + 1}"
            resource = {k: v for k, v in s.resource.items() if k != "service.name"}
            processes[pid] = {"serviceName": s.service, "tags": _tags(resource)}
        refs = []
        if s.parent_span_id:
            refs.append({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id})
        refs.extend(
            {"refType": "FOLLOWS_FROM", "traceID": lk.trace_id, "spanID": lk.span_id}
            for lk in s.links
        )
        tags = _tags(s.attributes)
        if s.kind:
            tags.append(_tag("span.kind", KIND_NAMES.get(s.kind, str(s.kind))))
        if s.status_code == STATUS_ERROR:
            tags += [_tag("otel.status_code", "ERROR"), _tag("error", True)]
        elif s.status_code == STATUS_OK:
            tags.append(_tag("otel.status_code", "OK"))
        if s.status_message:
            tags.append(_tag("otel.status_description", s.status_message))
        if s.scope_name:
            tags.append(_tag("otel.scope.name", s.scope_name))
        if s.scope_version:
            tags.append(_tag("otel.scope.version", s.scope_version))
        if s.trace_state:
            tags.append(_tag("w3c.tracestate", s.trace_state))
        warnings = None
        if s.pending:
            tags.append(_tag(INCOMPLETE, True))
            warnings = [INCOMPLETE_WARNING]
        out.append(
            {
                "traceID": s.trace_id,
                "spanID": s.span_id,
                "operationName": s.name,
                "references": refs,
                "startTime": _us(s.start_ns),
                "duration": _us(s.duration_ns),
                "tags": tags,
                "logs": [
                    {
                        "timestamp": _us(e.time_ns),
                        "fields": [_tag("event", e.name), *_tags(e.attributes)],
                    }
                    for e in s.events
                ],
                "processID": pid,
                "warnings": warnings,
                "flags": s.flags & 0xFF,
            }
        )
    return {"traceID": trace_id, "spans": out, "processes": processes, "warnings": None}


# ----------------------------------------------------------------------------- responses


def _data(data: Any, status: int = 200, errors: list | None = None) -> JSONResponse:
    total = len(data) if isinstance(data, list) else 0
    return JSONResponse(
        {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}, status
    )


def _v1_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "data": None,
            "total": 0,
            "limit": 0,
            "offset": 0,
            "errors": [{"code": status, "msg": message}],
        },
        status,
    )


def _tag_filters(params: Any) -> list[list[Filter]]:
    """Jaeger tag conditions (all must hold, exact match) as store filters. `error=true` and
    `span.kind=...` refer to fields Jaeger shows as tags."""
    pairs: list[tuple[str, str]] = []
    raw = params.get("tags")
    if raw:
        obj = json_param(raw, "tags")
        if not isinstance(obj, dict):
            raise BadRequest("tags must be a JSON object of strings")
        pairs += [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in obj.items()]
    for item in params.getlist("tag"):
        key, sep, value = item.partition(":")
        if not sep:
            raise BadRequest(f"tag must look like key:value, got {item[:60]!r}")
        pairs.append((key, value))
    return [[Filter(k, "=", v)] for k, v in pairs]


def v1_query(params: Any, now_ns: int | None = None) -> Query:
    """A store query from Jaeger's /api/traces parameters."""
    q = Query(service=params.get("service") or None, operation=params.get("operation") or None)
    filters = []
    for group in _tag_filters(params):
        f = group[0]
        if f.key == "error" and f.value in ("true", "false"):
            q.status_code = STATUS_ERROR if f.value == "true" else None
        elif f.key == "span.kind":
            q.kind = kind_param(str(f.value), "span.kind")
        else:
            filters.append(group)
    q.filters = filters
    end_ns, start_ns = micros_param(params, "end"), micros_param(params, "start")
    now_ns = time.time_ns() if now_ns is None else now_ns
    if start_ns is not None:
        q.start_ns = start_ns
    elif params.get("lookback") and params.get("lookback") != "custom":
        q.start_ns = (end_ns or now_ns) - lookback_param(params["lookback"])
    q.end_ns = end_ns + 1 if end_ns is not None else None
    if params.get("minDuration"):
        q.min_duration_ns = duration_param(params["minDuration"])
    if params.get("maxDuration"):
        q.max_duration_ns = duration_param(params["maxDuration"])
    q.limit = traces_param(params, "limit")
    return q


def _rfc3339_ns(raw: str, name: str) -> int:
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", raw.strip())
    if not m:
        raise BadRequest(
            f"{name} must be an RFC 3339 time such as 2024-05-01T12:00:00Z, got {raw[:40]!r}"
        )
    try:
        base = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None
    frac = (m[2] or "").ljust(9, "0")[:9]
    return int(base.timestamp()) * 10**9 + int(frac)


def v3_query(params: Any) -> Query:
    """A store query from api_v3 FindTraces parameters (`query.*`)."""
    q = Query(
        service=params.get("query.service_name") or None,
        operation=params.get("query.operation_name") or None,
    )
    if params.get("query.start_time_min"):
        q.start_ns = _rfc3339_ns(params["query.start_time_min"], "query.start_time_min")
    if params.get("query.start_time_max"):
        q.end_ns = _rfc3339_ns(params["query.start_time_max"], "query.start_time_max") + 1
    if params.get("query.duration_min"):
        q.min_duration_ns = duration_param(params["query.duration_min"])
    if params.get("query.duration_max"):
        q.max_duration_ns = duration_param(params["query.duration_max"])
    raw = params.get("query.attributes")
    if raw:
        attrs = json_param(raw, "query.attributes")
        if not isinstance(attrs, dict):
            raise BadRequest("query.attributes must be a JSON object")
        q.filters = [[Filter(str(k), "=", str(v))] for k, v in attrs.items()]
    name = "query.num_traces" if params.get("query.num_traces") else "query.search_depth"
    q.limit = traces_param(params, name)
    return q


def routes(store: Store) -> list[Route]:
    def call(fn: Any, *args: Any) -> Any:
        return run_in_threadpool(fn, *args)

    async def services(request: Request) -> Response:
        return _data(await call(store.services))

    async def service_operations(request: Request) -> Response:
        ops = await call(store.operations, request.path_params["service"])
        return _data(sorted({name for name, _ in ops}))

    async def operations(request: Request) -> Response:
        try:
            kind = kind_param(request.query_params.get("spanKind"), "spanKind")
        except BadRequest as exc:
            return _v1_error(400, str(exc))
        ops = await call(store.operations, request.query_params.get("service") or None, kind)
        return _data([{"name": n, "spanKind": KIND_NAMES.get(k, "") if k else ""} for n, k in ops])

    async def traces(request: Request) -> Response:
        params = request.query_params
        try:
            ids = [trace_id_param(t) for t in params.getlist("traceID") if t]
            if len(ids) > MAX_TRACES:
                raise BadRequest(f"traceID: at most {MAX_TRACES} trace ids, got {len(ids)}")
            if ids:
                found = await call(store.get_traces, ids)
                return _data([jaeger_trace(t, found[t]) for t in ids if t in found])
            query = v1_query(params)
            found = await call(store.find_traces, query, MAX_RESULT_SPANS)
        except (BadRequest, ResultTooLarge) as exc:
            return _v1_error(400, str(exc))
        return _data([jaeger_trace(spans[0].trace_id, spans) for spans in found])

    async def trace(request: Request) -> Response:
        try:
            trace_id = trace_id_param(request.path_params["trace_id"])
        except BadRequest as exc:
            return _v1_error(400, str(exc))
        spans = await call(store.get_trace, trace_id)
        if not spans:
            return _v1_error(404, f"trace not found: {trace_id}")
        return _data([jaeger_trace(trace_id, spans)])

    async def dependencies(request: Request) -> Response:
        try:
            end_ms = int_param(request.query_params, "endTs", time.time_ns() // 10**6)
            capped(end_ms, "endTs", MAX_MICROS // 1000, 0)
            lookback_ms = int_param(request.query_params, "lookback", 24 * 3600 * 1000)
            capped(lookback_ms, "lookback", MAX_LOOKBACK_NS // 10**6)
        except BadRequest as exc:
            return _v1_error(400, str(exc))
        deps = await call(store.dependencies, (end_ms - lookback_ms) * 10**6, end_ms * 10**6 + 1)
        # Jaeger's edges are calls: no plain links; a leaf CLIENT span's database or external
        # peer is one, as Jaeger makes one of a leaf span's peer.service
        calls: dict[tuple[str, str], int] = {}
        for d in deps:
            if d.kind != "link":
                calls[d.parent, d.child] = calls.get((d.parent, d.child), 0) + d.call_count
        return _data([{"parent": p, "child": c, "callCount": n} for (p, c), n in calls.items()])

    # api_v3

    def v3_error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"httpCode": status, "message": message}}, status)

    async def v3_services(request: Request) -> Response:
        return JSONResponse({"services": await call(store.services)})

    async def v3_operations(request: Request) -> Response:
        try:
            kind = kind_param(request.query_params.get("span_kind"), "span_kind")
        except BadRequest as exc:
            return v3_error(400, str(exc))
        ops = await call(store.operations, request.query_params.get("service") or None, kind)
        return JSONResponse(
            {
                "operations": [
                    {"name": n, "spanKind": KIND_NAMES.get(k, "") if k else ""} for n, k in ops
                ]
            }
        )

    async def v3_traces(request: Request) -> Response:
        try:
            query = v3_query(request.query_params)
            found = await call(store.find_traces, query, MAX_RESULT_SPANS)
        except (BadRequest, ResultTooLarge) as exc:
            return v3_error(400, str(exc))
        if not found:
            return v3_error(404, "no traces found")
        return JSONResponse({"result": encode_json(s for spans in found for s in spans)})

    async def v3_trace(request: Request) -> Response:
        try:
            trace_id = trace_id_param(request.path_params["trace_id"])
        except BadRequest as exc:
            return v3_error(400, str(exc))
        spans = await call(store.get_trace, trace_id)
        if not spans:
            return v3_error(404, f"trace not found: {trace_id}")
        return JSONResponse({"result": encode_json(spans)})

    return [
        Route("/api/services", services),
        Route("/api/services/{service:path}/operations", service_operations),
        Route("/api/operations", operations),
        Route("/api/traces", traces),
        Route("/api/traces/{trace_id}", trace),
        Route("/api/dependencies", dependencies),
        Route("/api/v3/services", v3_services),
        Route("/api/v3/operations", v3_operations),
        Route("/api/v3/traces", v3_traces),
        Route("/api/v3/traces/{trace_id}", v3_trace),
    ]
