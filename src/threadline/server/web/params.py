"""Request parameters the routes share, checked: each raises `BadRequest` saying what is wrong."""

from __future__ import annotations

import re
from typing import Any, overload

from threadline.server.durations import parse_duration
from threadline.server.model import KIND_NAMES
from threadline.server.web.responses import BadRequest

_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")
_KIND_BY_NAME = {v: k for k, v in KIND_NAMES.items()}


def trace_id_param(raw: str) -> str:
    """A trace id from a URL, as Jaeger reads it: 1 to 32 hex digits (left-padded to 32)."""
    if not _TRACE_ID.fullmatch(raw):
        raise BadRequest(f"trace id must be up to 32 hex digits, got {raw[:64]!r}")
    return raw.lower().rjust(32, "0")


@overload
def int_param(params: Any, name: str, default: int) -> int: ...
@overload
def int_param(params: Any, name: str, default: None = None) -> int | None: ...
def int_param(params: Any, name: str, default: int | None = None) -> int | None:
    """Parameter `name` as an integer; `default` when absent or empty."""
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}") from None


def kind_param(raw: str | None, name: str) -> int | None:
    """A span kind by name ("server", "SPAN_KIND_SERVER"), as parameter `name`; None if empty."""
    if not raw:
        return None
    raw = raw.lower().removeprefix("span_kind_")
    if raw not in _KIND_BY_NAME:
        raise BadRequest(
            f"{name} must be one of {', '.join(KIND_NAMES.values())}, got {raw[:40]!r}"
        )
    return _KIND_BY_NAME[raw]


def duration_param(raw: str, *, days: bool = False) -> int:
    """A duration parameter in nanoseconds (`durations.parse_duration`)."""
    try:
        return parse_duration(raw, days=days)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
