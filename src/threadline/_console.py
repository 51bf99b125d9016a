"""exporter="console": each trace printed as a tree once its local root ends."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from typing import TextIO, cast

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, StatusCode

PRINTED_KEPT = 10_000


def _context(span: ReadableSpan) -> SpanContext:
    # The SDK types it Optional, but every span it hands an exporter was started with one.
    return cast(SpanContext, span.context)


def _ms(span: ReadableSpan) -> float:
    return ((span.end_time or span.start_time or 0) - (span.start_time or 0)) / 1e6


def render(spans: Sequence[ReadableSpan], printed: Mapping[int, str] | None = None) -> str:
    """A tree of one trace's spans: nesting, duration, kind, status and errors. `printed` names
    spans shown in an earlier tree, for spans that continue from one of them."""
    printed = printed or {}
    by_id = {_context(s).span_id: s for s in spans}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        parent = s.parent.span_id if s.parent else None
        children[parent if parent in by_id else None].append(s)
    for group in children.values():
        group.sort(key=lambda s: s.start_time or 0)
    first = spans[0]
    service = first.resource.attributes.get("service.name", "?")
    lines = [f"trace {_context(first).trace_id:032x}  service={service}"]

    def walk(s: ReadableSpan, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        label = f"{prefix}{branch}{s.name}"
        extra = ""
        if s.kind.name != "INTERNAL":
            extra += f"  [{s.kind.name.lower()}]"
        if s.status.status_code is StatusCode.ERROR:
            extra += f"  ERROR {s.status.description or ''}".rstrip()
        if s.parent and s.parent.span_id not in by_id:
            if s.parent.span_id in printed:
                name = printed[s.parent.span_id]
                extra += f"  (child of {name!r} {s.parent.span_id:016x}, printed above)"
            elif s.parent.is_remote:
                extra += f"  (remote parent {s.parent.span_id:016x})"
        lines.append(f"{label:<60} {_ms(s):>9.2f} ms{extra}")
        kids = children.get(_context(s).span_id, [])
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for i, kid in enumerate(kids):
            walk(kid, inner, i == len(kids) - 1, False)

    for root in children[None]:
        walk(root, "  ", True, True)
    return "\n".join(lines)


class ConsoleTreeExporter(SpanExporter):
    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._pending: dict[int, list[ReadableSpan]] = defaultdict(list)
        # Names of spans printed already (bounded): work that outlives its parent's tree, such as
        # a queue's consumer, prints as soon as it ends, saying where it continues from.
        self._printed: OrderedDict[int, str] = OrderedDict()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # One lock around collecting and printing: a tree "printed above" really is above.
        with self._lock:
            for s in spans:
                self._pending[_context(s).trace_id].append(s)
                parent = s.parent
                if parent is None or parent.is_remote or parent.span_id in self._printed:
                    self._print(self._pending.pop(_context(s).trace_id))  # its local root ended
        return SpanExportResult.SUCCESS

    def _print(self, group: list[ReadableSpan]) -> None:
        try:
            print(render(group, self._printed), file=self._out or sys.stdout, flush=True)
        except (BrokenPipeError, ValueError):  # stdout closed (`| head`): tracing must not break
            pass
        for s in group:
            self._printed[_context(s).span_id] = s.name
        while len(self._printed) > PRINTED_KEPT:
            self._printed.popitem(last=False)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            groups, self._pending = list(self._pending.values()), defaultdict(list)
            for group in groups:  # traces whose root has not ended (yet): print what there is
                self._print(group)
        return True

    def shutdown(self) -> None:
        self.force_flush()
