"""Terminal renderings (rich) of what the analysis API returns: a trace as a waterfall, the
service dependency map, the completeness report. Pure functions from payload to renderable."""

from __future__ import annotations

import zlib
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

STATUS_ERROR = 2
PALETTE = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_red",
    "bright_cyan",
    "bright_green",
)


def service_style(service: str) -> str:
    return PALETTE[zlib.crc32(service.encode()) % len(PALETTE)] if service else "dim"


def ms(ns: int | float) -> str:
    value = ns / 1e6
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _bar(start: int, end: int, total: int, columns: int, style: str) -> Text:
    total = max(total, 1)
    left = min(columns - 1, int(start / total * columns))
    width = min(max(1, round((end - start) / total * columns)), columns - left)
    return Text(" " * left + "█" * width, style=style)


def _event_line(event: dict[str, Any]) -> Text:
    """One line for a span event: exceptions, circuit breaker changes and log records in words,
    any other event as its name and attributes."""
    name, attrs = event.get("name", ""), event.get("attributes") or {}
    if name == "exception":
        kind = attrs.get("exception.type", "exception")
        return Text(f"✖ {kind}: {attrs.get('exception.message', '')}", style="red")
    if name == "circuit_breaker.state_change":
        return Text(
            f"⚡ circuit {attrs.get('circuit_breaker.name', '')}: "
            f"{attrs.get('circuit_breaker.from')} → {attrs.get('circuit_breaker.to')}"
            f" ({attrs.get('circuit_breaker.reason', '')})",
            style="bold yellow",
        )
    if name == "log" and "log.severity" in attrs:  # a logging record (integrations.logs)
        severity = str(attrs["log.severity"])
        logger = f" [{attrs['log.logger']}]" if attrs.get("log.logger") else ""
        style = "yellow" if severity == "WARNING" else "red"
        return Text(f"▲ {severity}{logger} {attrs.get('log.message', '')}", style=style)
    text = Text(f"• {name}", style="yellow" if name.startswith("threadline.") else "")
    if attrs:
        text.append(" " + " ".join(f"{k}={v}" for k, v in attrs.items()), style="dim")
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def waterfall(payload: dict[str, Any], *, events: bool = True) -> Waterfall:
    """A trace (the analysis API's trace payload) as a tree with a timeline per span."""
    return Waterfall(payload, events=events)


class Waterfall:
    """Renders to the console's width: names, services and durations first, the rest timeline."""

    def __init__(self, payload: dict[str, Any], *, events: bool = True) -> None:
        self.payload = payload
        self.events = events

    def _head(self, width: int) -> list[Text]:
        """One line, or two where the terminal is too narrow for one."""
        payload, summary = self.payload, self.payload.get("summary", {})
        spans, services = summary.get("span_count", 0), len(summary.get("services", []))
        what = Text.assemble(
            ("trace ", "bold"),
            (payload.get("trace_id", ""), "bold"),
            f"  {summary.get('root_service', '')}: {summary.get('root_name', '')}",
        )
        size = Text.assemble(
            (f"{ms(int(payload.get('duration_ns') or 0))} ms", "bold"),
            f"  {_count(spans, 'span')}, {_count(services, 'service')}",
        )
        if summary.get("errors"):
            size.append(f", {_count(summary['errors'], 'error')}", style="red")
        if summary.get("breaks"):
            size.append(f", {_count(summary['breaks'], 'broken hop')}", style="bold red")
        if len(what) + 2 + len(size) > width:
            return [what, Text("  ") + size]
        return [what + Text("  ") + size]

    def _name(self, row: dict[str, Any]) -> Text:
        indent = "  " * int(row.get("depth", 0))
        if row.get("placeholder"):
            return Text(f"{indent}? missing parent {row.get('id', '')}", style="bold red")
        error = row.get("status") == STATUS_ERROR
        name = Text(indent + row.get("name", ""), style="red" if error else "")
        kind = row.get("kind", "")
        if kind and kind not in ("internal", "unspecified"):
            name.append(f" {kind}", style="dim")
        if row.get("pending"):
            name.append(" (never ended)", style="bold yellow")
        return name

    def __rich_console__(self, console: Any, options: Any):
        rows = self.payload.get("rows", [])
        total = int(self.payload.get("duration_ns") or 1)
        names = [self._name(r) for r in rows]
        service_w = max([len(r.get("service", "")) for r in rows] + [7])
        name_w = min(max([len(n) for n in names] + [4]), 60)
        bar_w = options.max_width - name_w - service_w - 8 - 3
        if bar_w < 12:  # narrow terminal: names give way to the timeline
            name_w = max(16, name_w - (12 - bar_w))
            bar_w = max(12, options.max_width - name_w - service_w - 11)
        yield from self._head(options.max_width)
        for row, name in zip(rows, names, strict=True):
            name.truncate(name_w, overflow="ellipsis", pad=True)
            line = Text.assemble(name, " ")
            if row.get("placeholder"):
                line.append(row.get("note", ""), style="red")
                yield line
                continue
            service = row.get("service", "")
            style = service_style(service)
            start, end = int(row.get("start", 0)), int(row.get("end", 0))
            line.append(service.ljust(service_w), style=style)
            line.append(f" {ms(end - start):>7} ")
            line.append_text(
                _bar(
                    start, end, total, bar_w, "red" if row.get("status") == STATUS_ERROR else style
                )
            )
            yield line
            if self.events:
                for event in row.get("events", []):
                    yield Text("  " * (int(row.get("depth", 0)) + 2)) + _event_line(event)
        for b in self.payload.get("breaks", []):
            yield Text(f"broken: {b.get('message', '')}", style="bold red")


# What an edge's error count counts (analysis.dependencies): the receiving span's status.
ERRORS_LEGEND = "errors: the callee's span ended in ERROR (HTTP 5xx, gRPC fault), not 4xx/timeout"  # fits 80 columns
# A database or external service has no span: its errors are its callers' CLIENT spans'.
PEER_ERRORS_LEGEND = "errors to a database or external service: the caller's span ended in ERROR"


def dependency_map(payload: dict[str, Any]) -> Group:
    """The service graph (the analysis API's dependencies payload) as a tree from its entry
    services, a service reached twice shown once in full; under it, when any call failed, what
    its error counts count."""
    edges = payload.get("edges", [])
    services = [s["service"] for s in payload.get("services", [])]
    peers = {
        s["service"]: s
        for s in payload.get("services", [])
        if s.get("kind", "service") != "service"
    }
    children: dict[str, list[dict]] = {}
    called = set()
    for e in edges:
        children.setdefault(e["parent"], []).append(e)
        if e["parent"] != e["child"]:
            called.add(e["child"])
    roots = [s for s in services if s not in called] or services[:1]
    tree = Tree(Text("service map", style="bold"), hide_root=True)
    shown: set[str] = set()

    def label(service: str, edge: dict | None) -> Text:
        text = Text(service, style=f"bold {service_style(service)}")
        if service in peers:
            text.append(f" ({_peer_kind(peers[service])})", style="italic")
        if edge is not None:
            arrow = {"messaging": " ⇢ ", "link": " ~ "}.get(edge.get("kind", "call"), "")
            noun = {"messaging": "message", "link": "link"}.get(edge.get("kind", "call"), "call")
            text.append(f"  {arrow}{_count(edge['calls'], noun)}", style="dim")
            if edge.get("errors"):
                text.append(f", {_count(edge['errors'], 'error')}", style="red")
        return text

    def grow(node: Tree, service: str, path: tuple[str, ...]) -> None:
        if service in shown:
            return
        shown.add(service)
        for e in sorted(children.get(service, []), key=lambda e: e["child"]):
            child = e["child"]
            branch = node.add(label(child, e))
            if child not in path:
                grow(branch, child, (*path, child))

    for root in roots:
        grow(tree.add(label(root, None)), root, (root,))
    if payload.get("unresolved_links"):
        tree.add(Text(f"{payload['unresolved_links']} links to traces not stored", style="dim"))
    legends = []
    if any(e.get("errors") for e in edges if e["child"] not in peers):
        legends.append(Text(ERRORS_LEGEND, style="dim"))
    if any(e.get("errors") for e in edges if e["child"] in peers):
        legends.append(Text(PEER_ERRORS_LEGEND, style="dim"))
    return Group(tree, *legends)


def _peer_kind(node: dict[str, Any]) -> str:
    return f"{node.get('system')} database" if node.get("kind") == "database" else "external"


def peer_list(payload: dict[str, Any]) -> Group | None:
    """The databases and external services the dependencies payload names (called by CLIENT
    spans no span answered), with who called them; None when there are none."""
    peers = [s for s in payload.get("services", []) if s.get("kind", "service") != "service"]
    if not peers:
        return None
    t = Table(title="databases and external services", box=None, header_style="dim")
    t.add_column("name")
    t.add_column("kind")
    t.add_column("called by")
    t.add_column("calls", justify="right")
    t.add_column("errors", justify="right")
    for p in peers:
        callers = sorted(
            {e["parent"] for e in payload.get("edges", []) if e["child"] == p["service"]}
        )
        errors = p.get("errors", 0)
        t.add_row(
            p["service"],
            _peer_kind(p),
            ", ".join(callers),
            str(p.get("calls", 0)),
            Text(str(errors), style="red") if errors else "0",
        )
    return Group(t)


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def connected_share(payload: dict[str, Any]) -> float:
    """The completeness figure `threadline check` gates on: the share of traces that are one
    connected tree (one root, no span whose parent never arrived) whose root did not drop its
    context. A server that does not report it gives the bound from its other shares."""
    if not payload.get("traces"):
        return 0.0
    if "connected_share" in payload:
        return payload["connected_share"]
    return min(payload["one_root_share"], 1.0 - payload["orphan_share"])


def completeness_report(payload: dict[str, Any], *, title: bool = True) -> Group:
    """Completeness metrics and the broken hops (the analysis API's completeness payload), under
    a "completeness" heading unless title=False."""
    n = payload.get("traces", 0)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="dim")
    table.add_column(justify="right")
    share = connected_share(payload)
    table.add_row("traces", str(n))
    table.add_row(
        "connected (one tree)", Text(_pct(share), style="green" if share >= 1 else "yellow")
    )
    table.add_row("with one root", _pct(payload.get("one_root_share", 0)))
    table.add_row("with missing parents", _pct(payload.get("orphan_share", 0)))
    table.add_row("with spans that never ended", _pct(payload.get("incomplete_share", 0)))
    table.add_row("with a dropped context", _pct(payload.get("dropped_context_share", 0)))
    parts: list[Any] = [Text("completeness", style="bold")] if title else []
    parts.append(table)
    hops = payload.get("broken_hops", [])
    if hops:
        t = Table(title="broken hops (worst first)", box=None, header_style="dim")
        t.add_column("from")
        t.add_column("to")
        t.add_column("traces", justify="right")
        t.add_column("example")
        for h in hops:
            t.add_row(h["before"], h["after"], str(h["count"]), ", ".join(h["trace_ids"][:2]))
        parts.append(t)
    elif n:
        parts.append(Text("no broken hops", style="green"))
    dropped = payload.get("dropped_context", [])
    if dropped:
        t = Table(
            title="dropped contexts: roots that should have had a caller (most first)",
            box=None,
            header_style="dim",
        )
        t.add_column("from")
        t.add_column("to")
        t.add_column("destination")
        t.add_column("traces", justify="right")
        t.add_column("example")
        for d in dropped:
            sender = "untraced sender" if d["sender"] == "?" else d["sender"]
            t.add_row(
                sender,
                d["receiver"],
                d["destination"] or "-",
                str(d["count"]),
                ", ".join(d["trace_ids"][:2]),
            )
        parts.append(t)
    elif n:
        parts.append(Text("no dropped contexts", style="green"))
    return Group(*parts)


def trace_list(traces: list[dict[str, Any]]) -> Table:
    """Trace summaries (the search endpoint's) as a table, most recent first."""
    import datetime as dt

    t = Table(box=None, header_style="dim", pad_edge=False)
    for col, justify in (
        ("trace id", "left"),
        ("started", "left"),
        ("root", "left"),
        ("ms", "right"),
        ("spans", "right"),
        ("services", "left"),
        ("errors", "right"),
    ):
        t.add_column(col, justify=justify, no_wrap=col != "services")  # type: ignore[arg-type]
    for tr in traces:
        started = dt.datetime.fromtimestamp(tr["start_ns"] / 1e9).strftime("%H:%M:%S.%f")[:-3]
        errors = tr.get("error_count", 0)
        t.add_row(
            tr["trace_id"],
            started,
            Text(
                f"{tr['root_service']}: {tr['root_name']}", style=service_style(tr["root_service"])
            ),
            ms(tr["duration_ns"]),
            str(tr["span_count"]),
            ", ".join(tr.get("services", [])),
            Text(str(errors), style="red") if errors else "0",
        )
    return t
