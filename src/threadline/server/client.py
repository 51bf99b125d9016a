"""A small client for a running `threadline serve` (standard library only).

    from threadline.server.client import Client
    c = Client("http://127.0.0.1:16686")
    spans = c.wait_for_trace(trace_id, min_spans=3)     # list[model.Span], every field
    c.search(service="api", filters=["http.status_code>=500"])   # trace summaries
    traces.add(c.captured(trace_id, min_spans=3))       # into the pytest `traces` fixture

Traces travel as OTLP/JSON (api_v3), so every attribute type and field arrives intact.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from threadline.server.model import Span, to_captured
from threadline.server.otlp.json_format import decode_json


class ClientError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Client:
    """`token`: sent as `Authorization: Bearer`, for a server started with --token; default
    $THREADLINE_TOKEN (the token or a file holding it), as `threadline serve` reads it."""

    def __init__(self, url: str, timeout: float = 30, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        if token is None:
            from threadline.server.tokens import token_value

            token = token_value(os.environ.get("THREADLINE_TOKEN"), "THREADLINE_TOKEN")
        self.token = token

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON endpoint; list values repeat the parameter."""
        query = urllib.parse.urlencode(
            {k: v for k, v in params.items() if v is not None}, doseq=True
        )
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise ClientError(exc.code, body[:2000]) from None

    def trace(self, trace_id: str) -> list[Span]:
        """The trace's spans in start order; [] when the server does not know it."""
        try:
            doc = self.get(f"/api/v3/traces/{trace_id}")
        except ClientError as exc:
            if exc.status == 404:
                return []
            raise
        return sorted(decode_json(doc["result"]).spans, key=lambda s: (s.start_ns, s.end_ns))

    def wait_for_trace(
        self,
        trace_id: str,
        min_spans: int = 1,
        timeout: float = 10,
        *,
        services: Iterable[str] = (),
        connected: bool = False,
    ) -> list[Span]:
        """Poll until the trace has at least `min_spans` spans, a span from each of `services`
        and, with `connected`, no span whose parent has not arrived (services export on their
        own time: a parent may come in a later batch than its child). Raises TimeoutError saying
        what was missing otherwise."""
        from threadline.server.analysis import assemble

        wanted = set(services)
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            spans = self.trace(trace_id)
            missing = []
            if len(spans) < min_spans:
                missing.append(f"{len(spans)} of {min_spans} spans")
            absent = wanted - {s.service for s in spans}
            if absent:
                missing.append("no spans yet from " + ", ".join(sorted(absent)))
            if connected and not missing:
                waiting = assemble(spans).placeholders
                if waiting:
                    missing.append(f"{len(waiting)} parent(s) not arrived")
            if not missing:
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"trace {trace_id} after {timeout}s: " + "; ".join(missing))
            time.sleep(delay)  # polling a remote server: there is no event to wait on
            delay = min(delay * 2, 0.5)

    def captured(self, trace_id: str, min_spans: int = 1, timeout: float = 10) -> list:
        """The trace as `threadline.testing.CapturedSpan`s, for the `traces` fixture:
        `traces.add(client.captured(trace_id, 3))` then `traces.trace(trace_id)...`."""
        return [to_captured(s) for s in self.wait_for_trace(trace_id, min_spans, timeout)]

    def search(
        self,
        service: str | None = None,
        operation: str | None = None,
        filters: list[str] | None = None,
        limit: int = 20,
        **params: Any,
    ) -> list[dict[str, Any]]:
        """Trace summaries (see /api/threadline/search), most recent first."""
        doc = self.get(
            "/api/threadline/search",
            service=service,
            operation=operation,
            filter=filters or [],
            limit=limit,
            **params,
        )
        return doc["traces"]

    def services(self) -> list[str]:
        return self.get("/api/services")["data"]
