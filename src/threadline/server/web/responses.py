"""The responses and errors every route shares: one `BadRequest`, one error response, and the
JSON form of attribute values that plain JSON cannot hold."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from starlette.responses import JSONResponse

from threadline.server.ingest.queue import RETRY_AFTER_S


class BadRequest(ValueError):
    """A request parameter is malformed; the message says which and how (answered with 400)."""


def error_response(status: int, message: str) -> JSONResponse:
    """threadline's own error body, `{"error": message}` (Jaeger's routes answer in Jaeger's
    shapes instead)."""
    return JSONResponse({"error": message}, status_code=status)


def store_unavailable(request: Any, exc: Exception) -> JSONResponse:
    """A read the store could not answer for now (a ClickHouse server down or too slow): 503 with
    Retry-After, as ingest answers a write, rather than a 500."""
    response = error_response(503, f"store unavailable: {exc}")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def json_safe(v: Any) -> Any:
    """An attribute value as plain JSON: bytes as base64 text, non-finite floats as text."""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [json_safe(x) for x in v]
    return v


class CompactJSON(JSONResponse):
    """Compact JSON; attribute values JSON cannot hold (bytes, NaN) as `json_safe` writes them."""

    def render(self, content: Any) -> bytes:
        try:
            return _compact(content)
        except (TypeError, ValueError):
            return _compact(json_safe(content))


def _compact(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
