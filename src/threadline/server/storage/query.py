"""The query language of the store: which traces to find (`Query`), and the attribute filters
users write (`parse_filter`: `key=value`, `key>n`, `!key`, ... joined by ` OR `).

Engine-neutral: each engine turns a Query into its own SQL."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

OPS = ("=", "!=", "<", ">", "<=", ">=", "exists", "!exists")
SCOPES = ("any", "span", "resource")


@dataclass(frozen=True, slots=True)
class Filter:
    """One attribute condition. `scope` says where the key is looked up: span attributes,
    resource attributes, or either ("any"). `=`/`!=` compare the value's text form (so `200`
    matches the int 200 and the string "200"); `<`/`>`/`<=`/`>=` compare numeric (int, double)
    span attributes, and resource attributes whose text is a number. `!=` needs the attribute to
    exist (like TraceQL)."""

    key: str
    op: str = "exists"
    value: str | float | None = None
    scope: str = "any"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}; expected one of {', '.join(OPS)}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; expected one of {', '.join(SCOPES)}")
        if not self.key:
            raise ValueError("a filter needs an attribute key")
        if self.op in ("<", ">", "<=", ">="):
            try:
                number = float(self.value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.key} {self.op} needs a number, got {str(self.value)[:40]!r}"
                ) from None
            if not math.isfinite(number):  # nan, inf and 1e999 order nothing
                raise ValueError(
                    f"{self.key} {self.op} needs a finite number, got {str(self.value)[:40]!r}"
                )
            object.__setattr__(self, "value", number)

    @property
    def number(self) -> float:
        """The value of a numeric comparison (`<`, `>`, `<=`, `>=`): a float, made so at init."""
        if not isinstance(self.value, float):
            raise TypeError(f"{self.key} {self.op} compares no number")
        return self.value


_TERM = re.compile(
    r"^\s*(!?)\s*(?:(span|resource|any):)?([^\s=!<>]+)\s*(?:(!=|<=|>=|=|<|>)\s*(.*?))?\s*$"
)
# a quoted value (skipped whole, so it may hold " OR " or "|"), or a separator of alternatives
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ALTERNATIVES = re.compile(rf"{_QUOTED}|(\s+OR\s+|\s*\|\s*)")


def parse_filter(text: str) -> list[Filter]:
    """`key=value`, `key!=value`, `key<n`, `key>=n`, `key` (exists), `!key` (missing), optionally
    prefixed `span:` or `resource:`, alternatives joined by ` OR ` (or `|`). Values may be
    "double-quoted" (then they may hold spaces, ` OR ` and `|`; `\"` is a quote, `\\` a backslash).
    Returns the alternatives (OR) of one condition."""
    alternatives = []
    for part in _split_alternatives(text.strip()):
        m = _TERM.match(part)
        if not m or not part.strip():
            raise ValueError(
                f"cannot parse filter {part!r}: expected key=value, key>n, key or !key"
            )
        neg, scope, key, op, value = m.groups()
        if op is None:
            alternatives.append(Filter(key, "!exists" if neg else "exists", None, scope or "any"))
            continue
        if neg:
            raise ValueError(f"cannot parse filter {part!r}: '!' only negates existence (!key)")
        if value.startswith('"'):
            if not re.fullmatch(_QUOTED, value):
                raise ValueError(f"cannot parse filter {part!r}: unterminated quoted value")
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        alternatives.append(Filter(key, op, value, scope or "any"))
    return alternatives


def _split_alternatives(text: str) -> list[str]:
    parts, start = [], 0
    for m in _ALTERNATIVES.finditer(text):
        if m[1] is not None:
            parts.append(text[start : m.start()])
            start = m.end()
    return [*parts, text[start:]]


@dataclass(slots=True)
class Query:
    """Which traces to find. A trace matches when one of its spans matches every condition (the
    Jaeger rule); `filters` is a conjunction of disjunctions (AND of ORs)."""

    service: str | None = None
    operation: str | None = None
    kind: int | None = None
    start_ns: int | None = None  # span start window
    end_ns: int | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    status_code: int | None = None
    filters: list[list[Filter]] = field(default_factory=list)
    limit: int = 20
