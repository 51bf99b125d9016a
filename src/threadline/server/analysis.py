"""Analysis: pure functions over lists of spans: `threadline.server.model.Span`, or the testing
plugin's `threadline.testing.CapturedSpan` (each function that takes spans converts them with
`model.as_span`, so a test can run the server's analysis over `traces.one().spans`).

Nothing here does I/O or keeps state, so the query API, the CLI and the tests all read the same
answers. Every walk is iterative: a 50k-span chain must not hit Python's recursion limit.

- `assemble` builds the tree; a parent that never arrived becomes a placeholder node, never a
  dropped span.
- `breaks` names the service and span on each side of every broken boundary.
- `incomplete` lists spans announced as pending whose worker never finished them, and why.
- `dropped_contexts` finds receiving roots that should have had a caller (below).
- `critical_path`, `dependencies`, `completeness`, and the opt-in `adjust_clock_skew`.

A dropped context is a hop whose sender sent no context at all (a plain `pika` publish, an HTTP
call without the traceparent header): the receiver's span starts a trace of its own, one
connected tree, with nothing broken inside it. It is told from a legitimate entry point (a
public HTTP edge, a cron job, a queue only untraced programs feed) by evidence from the same
window: a CONSUMER root with no parent and no link is flagged when the same service also
processes messages from the same destination with context (a parent or a link); a SERVER root
when the same service also serves the same operation (span name, such as "GET /users/{id}")
with a parent. An operation never called with context is an edge (a page a browser loads, an
endpoint an untrusted caller reaches and is only linked to), and its roots are not flagged.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import signal
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from threadline.semconv import CLOCK_CORRECTION, WORKER_DIED
from threadline.server.model import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_NAMES,
    KIND_PRODUCER,
    KIND_SERVER,
    STATUS_ERROR,
    AnySpan,
    Span,
    as_span,
    as_spans,
)
from threadline.server.peers import Peer, span_peer
from threadline.server.storage.base import one_per_span

DESTINATION = "messaging.destination.name"  # OTel messaging semantic conventions
_ASYNC_KINDS = (KIND_PRODUCER, KIND_CONSUMER)
_SENDER_KINDS = (KIND_CLIENT, KIND_PRODUCER)


def dedupe(spans: Iterable[AnySpan]) -> list[Span]:
    """One span per (trace, span id): the completed version wins over its pending announcement
    (`storage.base.one_per_span`, the one statement of that rule), in first-seen order."""
    return one_per_span(as_spans(spans), lambda s: (s.trace_id, s.span_id), lambda s: s.pending)


# ---------------------------------------------------------------------------------------- tree


@dataclass(eq=False, slots=True)
class Node:
    """A span in the tree, or a placeholder (span is None) for a parent that never arrived."""

    span_id: str
    span: Span | None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0
    depth: int = 0

    @property
    def placeholder(self) -> bool:
        return self.span is None

    @property
    def service(self) -> str:
        return self.span.service if self.span else ""

    @property
    def name(self) -> str:
        return self.span.name if self.span else ""

    @property
    def note(self) -> str:
        """For a placeholder: which of its children say it exists."""
        if self.span is not None:
            return ""
        kids = ", ".join(c.span_id for c in self.children)
        noun = "span" if len(self.children) == 1 else "spans"
        return f"parent {self.span_id} of {noun} {kids} never arrived"


@dataclass(slots=True)
class Tree:
    trace_id: str
    roots: list[Node]
    nodes: dict[str, Node]  # by span id, placeholders included
    cycles: list[Node] = field(default_factory=list)  # spans cut loose from a parent loop

    def walk(self) -> Iterator[Node]:
        """Depth-first, children in start order: the waterfall's row order."""
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    @property
    def spans(self) -> list[Span]:
        return [n.span for n in self.nodes.values() if n.span is not None]

    @property
    def placeholders(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.span is None]

    @property
    def real_roots(self) -> list[Node]:
        return [n for n in self.roots if n.span is not None and not n.span.parent_span_id]

    @property
    def main_root(self) -> Node | None:
        real = self.real_roots
        return real[0] if real else (self.roots[0] if self.roots else None)


def assemble(spans: Iterable[AnySpan]) -> Tree:
    """The trace's tree. Raises ValueError if the spans belong to more than one trace."""
    spans = dedupe(spans)
    trace_ids = {s.trace_id for s in spans}
    if len(trace_ids) > 1:
        raise ValueError(
            f"assemble() takes one trace's spans; got {len(trace_ids)} trace ids: {sorted(trace_ids)[:3]}"
        )
    nodes = {s.span_id: Node(s.span_id, s, start_ns=s.start_ns, end_ns=s.end_ns) for s in spans}
    for s in {s.span_id: s for s in spans}.values():  # the span each node was made from
        node, parent_id = nodes[s.span_id], s.parent_span_id
        if not parent_id:
            continue
        parent = nodes.get(parent_id)
        if parent is None:
            parent = nodes[parent_id] = Node(parent_id, None)
        node.parent = parent
        parent.children.append(node)
    roots = [n for n in nodes.values() if n.parent is None]
    cycles = _cut_cycles(nodes, roots)
    for node in nodes.values():
        node.children.sort(key=_order)
        if node.span is None:
            node.start_ns = min(c.start_ns for c in node.children)
            node.end_ns = max(c.end_ns for c in node.children)
    roots.sort(key=_order)
    tree = Tree(next(iter(trace_ids), ""), roots, nodes, cycles)
    for node in tree.walk():
        node.depth = node.parent.depth + 1 if node.parent else 0
    return tree


def _order(node: Node) -> tuple[int, bool, str]:
    return (node.start_ns, node.span is None, node.span_id)


def _cut_cycles(nodes: dict[str, Node], roots: list[Node]) -> list[Node]:
    """Spans whose parents form a loop are unreachable from any root: cut each loop at its
    earliest span, which becomes a root, so every span is still shown."""
    seen: set[str] = set()

    def mark(start: Node) -> None:
        stack = [start]
        while stack:
            n = stack.pop()
            if n.span_id not in seen:
                seen.add(n.span_id)
                stack.extend(n.children)

    for r in roots:
        mark(r)
    cut = []
    while len(seen) < len(nodes):
        node = min((n for n in nodes.values() if n.span_id not in seen), key=_order)
        if node.parent is not None:  # unreachable from a root: it has a parent, in the loop
            node.parent.children.remove(node)
        node.parent = None
        roots.append(node)
        cut.append(node)
        mark(node)
    return cut


def _subtree_ids(node: Node) -> set[str]:
    ids, stack = set(), [node]
    while stack:
        n = stack.pop()
        ids.add(n.span_id)
        stack.extend(n.children)
    return ids


# -------------------------------------------------------------------------------------- breaks


@dataclass(slots=True)
class Side:
    service: str
    span_id: str
    name: str
    kind: int

    @classmethod
    def of(cls, span: Span) -> Side:
        return cls(span.service, span.span_id, span.name, span.kind)

    def __str__(self) -> str:
        return (
            f"service {self.service!r} span {self.name!r} ({KIND_NAMES.get(self.kind, self.kind)})"
        )


@dataclass(slots=True)
class Break:
    """A boundary the trace did not cross intact.

    kind: "missing_parent" (the receiver's parent never arrived), "extra_root" (a second span
    without a parent in the same trace), "parent_cycle" (parent ids loop).
    before: the span that most likely sent the work (None when no span in the trace could have);
    after: the span whose parent is missing.
    """

    kind: str
    trace_id: str
    missing_span_id: str
    before: Side | None
    after: Side
    message: str

    @property
    def services(self) -> tuple[str, str]:
        return (self.before.service if self.before else "?", self.after.service)


def breaks(tree: Tree, *, search_budget: int = 2_000_000) -> list[Break]:
    """Every broken boundary. The likely sender is searched once per missing parent (all its
    orphans share it), scanning spans backwards in time from the break; `search_budget` bounds
    the spans looked at per trace, so a huge trace with thousands of breaks stays fast (past
    it, breaks say the sender was not searched)."""
    finder = _SenderFinder(tree, search_budget)  # indexes the spans on its first search
    out = []
    for ph in (n for n in tree.roots if n.span is None):
        sender = finder.find(ph, ph.children[0].service)
        what = f"parent {ph.span_id} never arrived"
        for orphan in ph.children:
            out.append(_break("missing_parent", tree, ph.span_id, sender, orphan, what, finder))
    for extra in tree.real_roots[1:]:
        sender = finder.find(extra, extra.service)
        what = f"a second root: the trace id crossed but the parent span id did not (first root {tree.real_roots[0].span_id})"
        out.append(_break("extra_root", tree, "", sender, extra, what, finder))
    for node in tree.cycles:
        what = f"parent ids loop back to span {node.span_id}; the loop was cut there"
        parent_id = (
            node.span.parent_span_id if node.span else ""
        )  # a cut span is never a placeholder
        out.append(_break("parent_cycle", tree, parent_id, None, node, what, None))
    return out


def _break(
    kind: str,
    tree: Tree,
    missing: str,
    sender: Span | None,
    node: Node,
    what: str,
    finder: _SenderFinder | None,
) -> Break:
    if node.span is None:
        raise ValueError(f"a break is on a span, not on the placeholder {node.span_id}")
    before = Side.of(sender) if sender else None
    after = Side.of(node.span)
    if before:
        where = f"{before} -> {after}"
    elif finder is not None and finder.exhausted:
        where = f"(sender not searched: too many breaks in this trace) -> {after}"
    else:
        where = f"(no span in this trace could have sent it) -> {after}"
    return Break(kind, tree.trace_id, missing, before, after, f"{where}: {what}")


class _SenderFinder:
    """The span that was running when a disconnected subtree started and is not part of it: a
    client or producer in another service if there is one, else the best of the rest, latest
    start first. Pending spans count as still running; producers may have ended already."""

    def __init__(self, tree: Tree, budget: int) -> None:
        self.tree = tree
        self.spans: list[Span] = []
        self.indexed = False
        self.budget = budget
        self.exhausted = False

    def _index(self) -> None:
        self.indexed = True
        self.spans = sorted(self.tree.spans, key=lambda s: s.start_ns)
        self.starts = [s.start_ns for s in self.spans]
        # to stop early: how many senders, and spans of each service, come before an index
        self.senders = list(
            itertools.accumulate((s.kind in _SENDER_KINDS for s in self.spans), initial=0)
        )
        self.by_service: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.spans):
            self.by_service[s.service].append(i)

    def find(self, node: Node, service: str) -> Span | None:
        if self.exhausted:
            return None
        if not self.indexed:
            self._index()
        excluded = _subtree_ids(node)
        t = node.start_ns
        same = self.by_service.get(service, [])
        best, best_key = None, None
        for i in range(bisect.bisect_right(self.starts, t) - 1, -1, -1):
            self.budget -= 1
            if self.budget < 0:
                self.exhausted = True
                return None
            s = self.spans[i]
            if s.span_id not in excluded and (
                s.end_ns >= t or s.pending or s.kind == KIND_PRODUCER
            ):
                key = (s.kind in _SENDER_KINDS, s.service != service)
                if best_key is None or key > best_key:
                    best, best_key = s, key
            # the best any span before i could still be; scanning goes latest start first
            if best_key is not None and best_key >= (
                self.senders[i] > 0,
                i - bisect.bisect_left(same, i) > 0,
            ):
                return best
        return best


# ---------------------------------------------------------------------------------- incomplete


@dataclass(slots=True)
class Incomplete:
    span_id: str
    service: str
    name: str
    start_ns: int
    pid: int | None
    reason: str
    reported_by: str = ""  # span id carrying the threadline.worker.died event, if any


def incomplete(tree: Tree) -> list[Incomplete]:
    """Pending spans with no completed twin, with the reason their worker gave none, if known."""
    if not any(s.pending for s in tree.spans):
        return []
    deaths: dict[int, tuple[Span, dict]] = {}
    for s in tree.spans:
        for e in s.events:
            pid = e.attributes.get("process.pid")
            if e.name == WORKER_DIED and isinstance(pid, int):
                deaths.setdefault(pid, (s, e.attributes))
    out = []
    for node in tree.walk():
        s = node.span
        if s is None or not s.pending:
            continue
        pid = s.resource.get("process.pid", s.attributes.get("process.pid"))
        pid = pid if isinstance(pid, int) else None
        death = deaths.get(pid) if pid is not None else None
        if death:
            reporter, attrs = death
            reason = f"worker pid {pid} {_how_died(attrs)}, seen by service {reporter.service!r} span {reporter.name!r}"
            out.append(
                Incomplete(s.span_id, s.service, s.name, s.start_ns, pid, reason, reporter.span_id)
            )
        else:
            reason = "never ended: still running, or its worker died unseen"
            out.append(Incomplete(s.span_id, s.service, s.name, s.start_ns, pid, reason))
    return out


def _how_died(attrs: dict) -> str:
    sig = attrs.get("process.signal")
    if sig is not None:
        try:  # the number or the name ("SIGKILL", as the processes boundary writes it)
            known = signal.Signals(sig) if isinstance(sig, int) else signal.Signals[str(sig)]
            sig = f"{known.value} ({known.name})"
        except (KeyError, ValueError):
            pass
        return f"was killed by signal {sig}"
    code = attrs.get("process.exit_code")
    if code is not None:
        return f"exited with code {code}"
    return "died"


# ------------------------------------------------------------------------------- critical path


@dataclass(slots=True)
class Segment:
    span_id: str
    start_ns: int
    end_ns: int


def critical_path(tree: Tree) -> list[Segment]:
    """The chain of work that decided the main root's end time, as time-ordered segments.

    Walking back from the root's end, the child that finished last (clamped to the time still
    uncovered) is on the path; the parent's own time between its children's is too. Children
    that outlive their parent (async work) only count up to the parent's end."""
    root = tree.main_root
    if root is None:
        return []
    segments: list[Segment] = []
    # frame: [node, cursor, children sorted by end descending, index]
    stack = [[root, root.end_ns, _by_end(root), 0]]
    while stack:
        frame = stack[-1]
        node, cursor, kids, i = frame
        while i < len(kids) and kids[i].start_ns >= cursor:
            i += 1
        if i == len(kids) or cursor <= node.start_ns:
            if cursor > node.start_ns:
                segments.append(Segment(node.span_id, node.start_ns, cursor))
            stack.pop()
            continue
        child = kids[i]
        child_end = min(child.end_ns, cursor)
        if child_end < cursor:
            segments.append(Segment(node.span_id, child_end, cursor))
        frame[1], frame[3] = max(child.start_ns, node.start_ns), i + 1
        stack.append([child, child_end, _by_end(child), 0])
    segments.reverse()
    return segments


def _by_end(node: Node) -> list[Node]:
    return sorted(node.children, key=lambda c: c.end_ns, reverse=True)


# -------------------------------------------------------------------------------- dependencies


@dataclass(slots=True)
class Edge:
    """Calls from one service to another. kind: "call" (parent -> child), "messaging"
    (producer -> consumer, by parent or by link), "link" (any other cross-service link),
    "database" or "external" (a CLIENT span to a peer no span answered, `server.peers`)."""

    parent: str
    child: str
    kind: str
    calls: int = 0
    errors: int = 0
    trace_ids: list[str] = field(default_factory=list)  # a few examples, first seen first


@dataclass(slots=True)
class ServiceNode:
    """A service, or a database or external service (kind) that only its callers' CLIENT spans
    show: it has no spans of its own, and `calls` and `errors` count those CLIENT spans."""

    service: str
    spans: int = 0
    errors: int = 0
    kind: str = "service"  # "service" | "database" | "external"
    system: str = ""  # a database's db.system(.name)
    calls: int = 0


@dataclass(slots=True)
class Graph:
    services: list[ServiceNode]
    edges: list[Edge]
    unresolved_links: int = 0  # links whose target span is not among the spans given


def dependencies(spans: Iterable[AnySpan], *, examples: int = 10) -> Graph:
    """The service graph over any set of spans (many traces). An edge counts one call per
    receiving span; it is an error when the receiving span's status is ERROR. A CLIENT span
    that no span answered and that names its peer (`server.peers`) is an edge to that database
    or external service, counted on the CLIENT span (its status is the error)."""
    spans = dedupe(spans)
    index = {(s.trace_id, s.span_id): s for s in spans}
    parents = {(s.trace_id, s.parent_span_id) for s in spans if s.parent_span_id}
    services: dict[str, ServiceNode] = {}
    edges: dict[tuple[str, str, str], Edge] = {}
    unresolved = 0

    def add(src: Span, child: str, kind: str, failed: Span) -> None:
        edge = edges.get((src.service, child, kind))
        if edge is None:
            edge = edges[(src.service, child, kind)] = Edge(src.service, child, kind)
        edge.calls += 1
        edge.errors += failed.status_code == STATUS_ERROR
        if len(edge.trace_ids) < examples and failed.trace_id not in edge.trace_ids:
            edge.trace_ids.append(failed.trace_id)

    called: list[tuple[Span, Peer]] = []
    for s in spans:
        node = services.get(s.service) or services.setdefault(s.service, ServiceNode(s.service))
        node.spans += 1
        node.errors += s.status_code == STATUS_ERROR
        parent = index.get((s.trace_id, s.parent_span_id)) if s.parent_span_id else None
        if parent is not None and parent.service != s.service:
            messaging = parent.kind == KIND_PRODUCER and s.kind == KIND_CONSUMER
            add(parent, s.service, "messaging" if messaging else "call", s)
        for link in s.links:
            target = index.get((link.trace_id, link.span_id))
            if target is None:
                unresolved += 1
            elif target.service != s.service:
                # as the store counts it: a link to a producer, or from a consumer
                messaging = target.kind == KIND_PRODUCER or s.kind == KIND_CONSUMER
                add(target, s.service, "messaging" if messaging else "link", s)
        if s.kind == KIND_CLIENT and (s.trace_id, s.span_id) not in parents:
            peer = span_peer(s.kind, s.attributes)
            if peer is not None:
                called.append((s, peer))
    for s, peer in called:  # after every span: a peer that has spans of its own is a service
        add(s, peer.name, peer.kind, s)
        node = services.get(peer.name) or services.setdefault(
            peer.name, ServiceNode(peer.name, kind=peer.kind, system=peer.system)
        )
        if node.kind != "service":
            node.calls += 1
            node.errors += s.status_code == STATUS_ERROR
    return Graph(
        sorted(services.values(), key=lambda n: n.service),
        sorted(edges.values(), key=lambda e: (e.parent, e.child, e.kind)),
        unresolved,
    )


# ---------------------------------------------------------------------------- dropped contexts

_RECEIVER_KINDS = (KIND_SERVER, KIND_CONSUMER)


def _entry(span: Span) -> tuple[str, int, str] | None:
    """Where a receiving span came in: (service, kind, destination); the destination is the
    message's for a consumer, the operation (span name) for a server."""
    if span.kind == KIND_CONSUMER:
        return (span.service, KIND_CONSUMER, str(span.attributes.get(DESTINATION) or span.name))
    if span.kind == KIND_SERVER:
        return (span.service, KIND_SERVER, span.name)
    return None


def received_with_context(spans: Iterable[AnySpan]) -> set[tuple[str, int, str]]:
    """Every entry (see `_entry`) that some span entered with context: a consumer with a parent
    or a link, a server with a parent (a link is how an untrusted edge keeps a caller apart)."""
    out = set()
    for s in as_spans(spans):
        entry = _entry(s)
        if entry is not None and (s.parent_span_id or (s.links and s.kind == KIND_CONSUMER)):
            out.add(entry)
    return out


@dataclass(slots=True)
class DroppedContext:
    """A receiving root that should have had a caller: its entry also receives with context."""

    trace_id: str
    span_id: str
    service: str
    name: str
    kind: int
    destination: str  # the message destination for a consumer, the operation for a server
    sender: Span | None = None  # the traced span that most likely sent it without context

    @property
    def message(self) -> str:
        kind = KIND_NAMES.get(self.kind, str(self.kind))
        if self.kind == KIND_CONSUMER:
            evidence = (
                f"other messages from destination {self.destination!r} reach "
                f"{self.service!r} with context"
            )
        else:
            evidence = f"other {self.destination!r} requests reach {self.service!r} with context"
        sender = (
            f"likely sender service {self.sender.service!r} span {self.sender.name!r}"
            if self.sender
            else "the sender is not traced"
        )
        return (
            f"service {self.service!r} span {self.name!r} ({kind}) is a root: it arrived with "
            f"no context ({sender}), while {evidence}"
        )


def dropped_context(
    root: AnySpan, context_seen: set[tuple[str, int, str]]
) -> DroppedContext | None:
    """The root as a dropped context, if it is one: a SERVER or CONSUMER span with no parent and
    no link whose entry (`received_with_context`) is known to receive with context."""
    span = as_span(root)
    entry = _entry(span)
    if entry is None or span.parent_span_id or span.links or entry not in context_seen:
        return None
    return DroppedContext(span.trace_id, span.span_id, span.service, span.name, span.kind, entry[2])


class _UnansweredSenders:
    """Producers and clients no span received (no child, no link): where a dropped context most
    likely came from. A consumer's sender is the latest such producer on its destination that
    started before it; a server's, the client call (of another service) around it, when there
    is exactly one service such a call could come from."""

    def __init__(self, spans: list[Span]) -> None:
        answered = {(s.trace_id, s.parent_span_id) for s in spans if s.parent_span_id}
        answered |= {(lk.trace_id, lk.span_id) for s in spans for lk in s.links}
        self.producers: dict[str, list[Span]] = defaultdict(list)
        self.clients: list[Span] = []
        for s in spans:
            if (s.trace_id, s.span_id) in answered:
                continue
            if s.kind == KIND_PRODUCER:
                self.producers[str(s.attributes.get(DESTINATION) or "")].append(s)
            elif s.kind == KIND_CLIENT:
                self.clients.append(s)
        for group in self.producers.values():
            group.sort(key=lambda s: s.start_ns)
        self.producer_starts = {d: [s.start_ns for s in g] for d, g in self.producers.items()}
        self.clients.sort(key=lambda s: s.start_ns)
        self.client_starts = [s.start_ns for s in self.clients]

    def find(self, d: DroppedContext, root: Span) -> Span | None:
        if d.kind == KIND_CONSUMER:
            group = self.producers.get(d.destination, [])
            i = bisect.bisect_right(self.producer_starts.get(d.destination, []), root.start_ns)
            return group[i - 1] if i else None
        around = [
            c
            for c in self.clients[: bisect.bisect_right(self.client_starts, root.start_ns)]
            if c.end_ns >= root.end_ns and c.service != root.service
        ]
        return around[-1] if len({c.service for c in around}) == 1 else None


@dataclass(slots=True)
class DroppedHop:
    """Dropped contexts per (sender service, receiving service, destination): the sender is "?"
    when it is not traced; the destination is the operation for a server."""

    sender: str
    receiver: str
    destination: str
    kind: str  # "server" | "consumer"
    count: int = 0
    trace_ids: list[str] = field(default_factory=list)
    example: str = ""


def dropped_contexts(
    traces: Iterable[Sequence[AnySpan]], *, examples: int = 5
) -> tuple[list[DroppedContext], list[DroppedHop]]:
    """Every receiving root in these traces that should have had a caller, and the same grouped
    per hop, most first. The evidence is these traces' own spans (see the module docstring)."""
    spans = [s for t in traces for s in dedupe(t)]
    seen = received_with_context(spans)
    found = []
    roots: dict[str, Span] = {}
    for s in spans:
        if not s.parent_span_id and (d := dropped_context(s, seen)) is not None:
            found.append(d)
            roots[s.span_id] = s
    if not found:
        return [], []
    senders = _UnansweredSenders(spans)
    hops: dict[tuple[str, str, str], DroppedHop] = {}
    for d in found:
        d.sender = senders.find(d, roots[d.span_id])
        key = (d.sender.service if d.sender else "?", d.service, d.destination)
        hop = hops.get(key) or hops.setdefault(
            key, DroppedHop(*key, KIND_NAMES.get(d.kind, ""), example=d.message)
        )
        hop.count += 1
        if len(hop.trace_ids) < examples and d.trace_id not in hop.trace_ids:
            hop.trace_ids.append(d.trace_id)
    return found, sorted(hops.values(), key=lambda h: (-h.count, h.sender, h.receiver))


# -------------------------------------------------------------------------------- completeness


@dataclass(slots=True)
class BrokenHop:
    before: str  # service on the sending side ("?" when unknown)
    after: str
    count: int = 0
    trace_ids: list[str] = field(default_factory=list)
    example: str = ""  # one break message


@dataclass(slots=True)
class Bucket:
    start_ns: int
    end_ns: int
    traces: int = 0
    one_root: int = 0
    with_orphans: int = 0
    with_incomplete: int = 0
    with_dropped_context: int = 0
    connected: int = 0


@dataclass(slots=True)
class Completeness:
    traces: int
    one_root: int
    with_orphans: int
    with_incomplete: int
    broken_hops: list[BrokenHop]  # worst first
    buckets: list[Bucket]
    with_dropped_context: int = 0  # traces whose root should have had a caller
    dropped_context: list[DroppedHop] = field(default_factory=list)  # most first
    connected: int = 0  # one root, no orphans, and not a dropped context

    def share(self, count: int) -> float:
        return count / self.traces if self.traces else 0.0


def completeness(
    traces: Iterable[Sequence[AnySpan]],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    buckets: int = 12,
    examples: int = 5,
) -> Completeness:
    """How whole the traces are: share with exactly one root, share with orphans (a parent never
    arrived), share with incomplete spans, share whose root dropped its context (see
    `dropped_contexts`), broken hops per service pair and dropped contexts per hop. A trace is
    connected when it has one root, no orphans, and its root is not a dropped context. Each
    trace is counted in the time bucket of its first span."""
    traces = [t for t in traces if t]
    _, dropped_hops = found = dropped_contexts(traces, examples=examples)
    dropped = {d.trace_id for d in found[0]}
    rows = []  # (first start, one root, orphans, incomplete, dropped context)
    hops: dict[tuple[str, str], BrokenHop] = {}
    for spans in traces:
        tree = assemble(spans)
        first = min(n.start_ns for n in tree.roots)
        has_pending = any(s.pending for s in tree.spans)
        rows.append(
            (
                first,
                len(tree.real_roots) == 1,
                bool(tree.placeholders),
                has_pending,
                tree.trace_id in dropped,
            )
        )
        for b in breaks(tree):
            hop = hops.get(b.services) or hops.setdefault(
                b.services, BrokenHop(*b.services, example=b.message)
            )
            hop.count += 1
            if len(hop.trace_ids) < examples and b.trace_id not in hop.trace_ids:
                hop.trace_ids.append(b.trace_id)
    lo = start_ns if start_ns is not None else min((r[0] for r in rows), default=0)
    hi = end_ns if end_ns is not None else max((r[0] for r in rows), default=0) + 1
    n = max(1, buckets)
    step = max(1, -(-(hi - lo) // n))
    series = [Bucket(lo + i * step, min(hi, lo + (i + 1) * step)) for i in range(n)]
    for first, one, orphans, pending, lost in rows:
        b = series[min(n - 1, max(0, (first - lo) // step))]
        b.traces += 1
        b.one_root += one
        b.with_orphans += orphans
        b.with_incomplete += pending
        b.with_dropped_context += lost
        b.connected += one and not orphans and not lost
    return Completeness(
        traces=len(rows),
        one_root=sum(r[1] for r in rows),
        with_orphans=sum(r[2] for r in rows),
        with_incomplete=sum(r[3] for r in rows),
        broken_hops=sorted(hops.values(), key=lambda h: (-h.count, h.before, h.after)),
        buckets=series,
        with_dropped_context=sum(r[4] for r in rows),
        dropped_context=dropped_hops,
        connected=sum(r[1] and not r[2] and not r[4] for r in rows),
    )


# ---------------------------------------------------------------------------------- clock skew


@dataclass(slots=True)
class Shift:
    """One subtree moved in time: the span at its top, by how much, and why."""

    span_id: str
    service: str
    name: str
    delta_ns: int
    spans_moved: int
    reason: str


def adjust_clock_skew(spans: Iterable[AnySpan]) -> tuple[list[Span], list[Shift]]:
    """Opt-in: move spans whose clock disagrees with their parent's across a host boundary.

    A hop crosses clocks when parent and child differ in `host.name` (or, without it, service).
    A synchronous child that does not fit inside its parent is centred in it (or aligned to its
    start when longer); an asynchronous one (producer/consumer, or a hop between a browser and
    a server) is moved only if it starts before its parent. Spans their producer already placed
    on the server's clock (`threadline.clock.correction_ns`) are left where they are, and so is
    the hop between such a span and its neighbour: the correction was made against that
    neighbour's clock, and a page load legitimately starts before its render and outlives it.
    Each shift moves the child's whole subtree, events included, and is reported. Returns new
    spans."""
    tree = assemble(spans)
    offsets: dict[str, int] = {}
    shifts: list[Shift] = []
    for node in tree.walk():
        s, parent = node.span, node.parent
        inherited = offsets.get(parent.span_id, 0) if parent else 0
        delta = 0
        if (
            s is not None
            and parent is not None
            and parent.span is not None
            and _clock(s) != _clock(parent.span)
            and not (_placed_at_source(s) or _placed_at_source(parent.span))
        ):
            p_start, p_end = parent.start_ns + inherited, parent.end_ns + inherited
            c_start, c_end = s.start_ns + inherited, s.end_ns + inherited
            if _asynchronous(parent.span, s):
                if c_start < p_start:
                    delta = p_start - c_start
            elif c_start < p_start or c_end > p_end:
                slack = (p_end - p_start) - (c_end - c_start)
                delta = p_start + max(0, slack // 2) - c_start
            if delta:
                early = c_start < p_start
                gap = abs(p_start - c_start) if early else c_end - p_end
                where = "before its parent started" if early else "after its parent ended"
                reason = (
                    f"{'started' if early else 'ended'} {gap / 1e6:.3f} ms {where} in service "
                    f"{parent.span.service!r}; moved {'later' if delta > 0 else 'earlier'} by {abs(delta) / 1e6:.3f} ms"
                )
                shifts.append(
                    Shift(s.span_id, s.service, s.name, delta, len(_subtree_ids(node)), reason)
                )
        offsets[node.span_id] = inherited + delta
    moved = [_shifted(s, offsets.get(s.span_id, 0)) for s in tree.spans]
    return moved, shifts


def clock_correction(span: Span) -> int:
    """Nanoseconds the span's producer added to its times to place them on another clock (the
    browser module does, against the server's clock); 0 when none."""
    return _correction(span) or 0


def _correction(span: Span) -> int | None:
    d = span.attributes.get(CLOCK_CORRECTION)
    return d if isinstance(d, int) and not isinstance(d, bool) else None


def undo_clock_corrections(spans: Iterable[AnySpan]) -> tuple[list[Span], list[Shift]]:
    """Spans corrected at source, put back at the times their own clock recorded (start, end and
    events), each reported as a Shift. Returns new spans."""
    out: list[Span] = []
    shifts: list[Shift] = []
    for s in as_spans(spans):
        if d := clock_correction(s):
            s = _shifted(s, -d)
            reason = f"shown as its own clock recorded it: the {d / 1e6:.3f} ms correction made at source undone"
            shifts.append(Shift(s.span_id, s.service, s.name, -d, 1, reason))
        out.append(s)
    return out, shifts


def _shifted(span: Span, delta: int) -> Span:
    """The span moved `delta` ns in time: start, end and every event."""
    if not delta:
        return span
    events = [dataclasses.replace(e, time_ns=e.time_ns + delta) for e in span.events]
    return dataclasses.replace(
        span, start_ns=span.start_ns + delta, end_ns=span.end_ns + delta, events=events
    )


def _placed_at_source(span: Span) -> bool:
    """Its producer measured its clock against the server's and corrected it (by 0 ns, maybe)."""
    return _correction(span) is not None


def _browser(span: Span) -> bool:
    return span.resource.get("telemetry.sdk.language") == "webjs"


def _asynchronous(parent: Span, child: Span) -> bool:
    """The child need not fit inside its parent: messaging, or a browser talking to a server
    (a page outlives its render; a socket connects after it)."""
    return (
        child.kind in _ASYNC_KINDS
        or parent.kind in _ASYNC_KINDS
        or _browser(parent) != _browser(child)
    )


def _clock(span: Span) -> str:
    host = span.resource.get("host.name")
    return f"host:{host}" if host else f"service:{span.service}"


# ------------------------------------------------------------------------------ whole trace


@dataclass(slots=True)
class TraceAnalysis:
    tree: Tree
    breaks: list[Break]
    incomplete: list[Incomplete]
    critical_path: list[Segment]
    shifts: list[Shift]
    skew_adjusted: bool
    client_corrected: int = 0  # spans whose producer corrected their clock (see clock_correction)
    client_clock_raw: bool = False  # those corrections undone
    dropped: DroppedContext | None = None  # the root should have had a caller

    @property
    def error_count(self) -> int:
        return sum(s.status_code == STATUS_ERROR for s in self.tree.spans)

    @property
    def services(self) -> list[str]:
        return sorted(Counter(s.service for s in self.tree.spans))


def analyse(
    spans: Iterable[AnySpan],
    *,
    adjust_skew: bool = False,
    raw_client_clock: bool = False,
    context_seen: set[tuple[str, int, str]] | None = None,
) -> TraceAnalysis:
    """Everything the trace view shows about one trace. Clock-skew adjustment is off unless
    asked for, and then says what it moved. raw_client_clock undoes the corrections clients
    made at source (reported as shifts too). context_seen (`received_with_context` over the
    spans around this trace) lets it say whether its root dropped its context."""
    spans = dedupe(spans)
    shifts: list[Shift] = []
    corrected = sum(1 for s in spans if clock_correction(s))
    if raw_client_clock:
        spans, shifts = undo_clock_corrections(spans)
    if adjust_skew:
        spans, moved = adjust_clock_skew(spans)
        shifts += moved
    tree = assemble(spans)
    root = tree.main_root
    dropped = (
        dropped_context(root.span, context_seen)
        if context_seen and root is not None and root.span is not None
        else None
    )
    return TraceAnalysis(
        tree, breaks(tree), incomplete(tree), critical_path(tree), shifts, adjust_skew,
        corrected, raw_client_clock, dropped,
    )  # fmt: skip


def group_by_trace(spans: Iterable[AnySpan]) -> dict[str, list[Span]]:
    groups: dict[str, list[Span]] = defaultdict(list)
    for s in as_spans(spans):
        groups[s.trace_id].append(s)
    return dict(groups)
