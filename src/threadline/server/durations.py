"""The one duration parser of the server, its CLI and the terminal reports: Go's syntax, as
Jaeger's query API takes it ("250ms", "1.5s", "1h30m", "ns", "us"/"µs", "ms", "s", "m", "h"),
plus days ("2d") where the caller allows them (Go has no days; retention and look-back windows
are often days long). Dependency-free, so anything may import it."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
}
# Go's limit (a time.Duration is a signed 64-bit count of nanoseconds), and the store's
MAX_DURATION_NS = (1 << 63) - 1
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_GO_PART = re.compile(_NUMBER + r"(ns|us|µs|ms|s|m|h)")
_DAYS_PART = re.compile(_NUMBER + r"(ns|us|µs|ms|s|m|h|d)")


def parse_duration(text: str, *, days: bool = False) -> int:
    """`text` in nanoseconds: a sequence of decimal numbers each with a unit ("1h30m"), or "0".
    `days`: also accept "d". Raises ValueError naming the syntax for anything else."""
    text = text.strip()
    if text in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in (_DAYS_PART if days else _GO_PART).finditer(text):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if pos != len(text) or not pos:
        example = "250ms, 1.5s, 1h30m or 2d" if days else "250ms, 1.5s or 1h30m"
        raise ValueError(f"invalid duration {text[:40]!r}: use Go syntax such as {example}")
    if not total < 2.0**63:  # past MAX_DURATION_NS; also inf, from a number of 400 digits
        raise ValueError(f"duration {text[:40]!r} is longer than the longest, 292 years")
    return int(total)
