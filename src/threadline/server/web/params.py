"""Request parameters the routes share, checked: each raises `BadRequest` saying what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any, overload

from threadline.server.durations import parse_duration
from threadline.server.model import KIND_NAMES
from threadline.server.web.responses import BadRequest

# The caps every query is held to (docs/serve.md, "Query bounds"); a request beyond one is a 400.
MAX_TRACES = 1500  # limit / query.num_traces: as many traces as Jaeger's UI lets one ask for
MAX_LOOKBACK_NS = 366 * 86400 * 10**9  # the longest window a search or an analysis reads
MAX_ANALYSIS_SPANS = 50_000  # spans an analysis window may hold: it reads them all in memory
MAX_RESULT_SPANS = 100_000  # spans the traces of one search answer may hold

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


def capped(value: int, name: str, cap: int, low: int = 1) -> int:
    """`value` of parameter `name` when within [low, cap]; BadRequest naming the cap otherwise."""
    if not low <= value <= cap:
        raise BadRequest(f"{name} must be between {low} and {cap}, got {value}")
    return value


# times in microseconds since the epoch that nanoseconds in a signed 64-bit integer can hold
MAX_MICROS = ((1 << 63) - 1) // 1000


def micros_param(params: Any, name: str) -> int | None:
    """Parameter `name`, microseconds since the epoch, in nanoseconds; None when absent."""
    value = int_param(params, name)
    if value is None:
        return None
    return capped(value, name, MAX_MICROS, 0) * 1000


def json_param(raw: str, name: str) -> Any:
    """Parameter `name` parsed as JSON; BadRequest for malformed JSON, nesting too deep for
    Python's parser, or text that is not valid Unicode (a lone surrogate escape)."""
    try:
        obj = json.loads(raw)
        json.dumps(obj, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{name} is not valid Unicode (a lone surrogate escape)") from None
    except ValueError:
        raise BadRequest(f"{name} must be JSON, got {raw[:60]!r}") from None
    except RecursionError:
        raise BadRequest(f"{name} nests too deep") from None
    return obj


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


def lookback_param(raw: str, name: str = "lookback", *, days: bool = False) -> int:
    """A look-back window in nanoseconds, at most MAX_LOOKBACK_NS."""
    ns = duration_param(raw, days=days)
    if ns > MAX_LOOKBACK_NS:
        raise BadRequest(
            f"{name} must be at most {MAX_LOOKBACK_NS // (86400 * 10**9)}d, got {raw[:40]!r}"
        )
    return ns


def traces_param(params: Any, name: str, default: int = 20) -> int:
    """How many traces parameter `name` asks for: 1 to MAX_TRACES, `default` when absent or 0
    (as Jaeger reads it)."""
    return capped(int_param(params, name, default) or default, name, MAX_TRACES)
