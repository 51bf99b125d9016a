// Service map: services as nodes laid out in layers (callers left of callees), edges with call
// and error counts; messaging (producer -> consumer) edges dashed; databases and external services
// (called by CLIENT spans no span answered) in their own shapes. Click an edge for its traces.
import { append, clear, getJSON, h, message, serviceColour, svg } from "./dom.js";
import { lookbackSelect, traceList } from "./search.js";

const NODE_W = 168;
const NODE_H = 48;
const COL_GAP = 150;
const ROW_GAP = 36;

export async function render(container, params) {
  const lookback = params.get("lookback") || "1h";
  const select = lookbackSelect(lookback, (value) => {
    location.hash = `#/map?lookback=${value}`;
  });
  const panel = h("aside", { class: "edge-panel" }, h("p", { class: "hint" }, "Click an edge to list the traces that made those calls."));
  const canvas = h("div", { class: "map-canvas" }, message("Loading the service graph…"));
  append(container, 
    h(
      "section",
      { class: "page-head" },
      h("h1", {}, "Service map"),
      h("div", { class: "controls" }, h("label", {}, "Window ", select)),
      h("div", { class: "legend" }, h("span", { class: "legend-call" }, "call (parent → child)"), h("span", { class: "legend-msg" }, "messaging (producer → consumer)"), h("span", { class: "legend-db" }, "database"), h("span", { class: "legend-ext" }, "external service"), h("span", { class: "legend-err" }, "with errors")),
    ),
    h("div", { class: "map-body" }, canvas, panel),
  );
  const data = await getJSON(`/api/threadline/analysis/dependencies?lookback=${encodeURIComponent(lookback)}`);
  clear(canvas);
  if (!data.services.length) {
    canvas.appendChild(message("No spans in this window yet. Send some traces to the OTLP endpoint and they will show up here."));
    return;
  }
  canvas.appendChild(drawGraph(data, (edge, el) => showEdge(panel, edge, el)));
  if (data.unresolved_links) canvas.appendChild(h("p", { class: "hint" }, `${data.unresolved_links} link(s) point at spans outside this window and are not drawn.`));
}

function layers(services, edges) {
  const names = services.map((s) => s.service);
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) if (e.parent !== e.child) out.get(e.parent)?.push(e.child);
  // drop back edges (found by depth-first search) so the rest is a DAG, then longest path
  const state = new Map();
  const dag = new Map(names.map((n) => [n, []]));
  for (const start of names) {
    if (state.has(start)) continue;
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const kids = out.get(top[0]);
      if (top[1] >= kids.length) {
        state.set(top[0], 2);
        stack.pop();
        continue;
      }
      const next = kids[top[1]++];
      if (state.get(next) === 1) continue; // back edge
      dag.get(top[0]).push(next);
      if (!state.has(next)) {
        state.set(next, 1);
        stack.push([next, 0]);
      }
    }
  }
  const indegree = new Map(names.map((n) => [n, 0]));
  for (const kids of dag.values()) for (const k of kids) indegree.set(k, indegree.get(k) + 1);
  const rank = new Map(names.map((n) => [n, 0]));
  const queue = names.filter((n) => indegree.get(n) === 0);
  while (queue.length) {
    const n = queue.shift();
    for (const k of dag.get(n)) {
      rank.set(k, Math.max(rank.get(k), rank.get(n) + 1));
      indegree.set(k, indegree.get(k) - 1);
      if (indegree.get(k) === 0) queue.push(k);
    }
  }
  return rank;
}

function drawGraph(data, onEdge) {
  const rank = layers(data.services, data.edges);
  const columns = [];
  for (const s of data.services) {
    const r = rank.get(s.service);
    (columns[r] ||= []).push(s);
  }
  const tallest = Math.max(...columns.map((c) => (c ? c.length : 0)));
  const height = tallest * (NODE_H + ROW_GAP) + ROW_GAP + 20;
  const width = columns.length * (NODE_W + COL_GAP) - COL_GAP + 80;
  const pos = new Map();
  columns.forEach((col, r) => {
    if (!col) return;
    const top = (height - col.length * (NODE_H + ROW_GAP) + ROW_GAP) / 2;
    col.forEach((s, i) => pos.set(s.service, { x: 40 + r * (NODE_W + COL_GAP), y: top + i * (NODE_H + ROW_GAP), s }));
  });

  const root = svg("svg", { class: "map", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "service dependency graph" });
  root.appendChild(
    svg(
      "defs",
      {},
      ["call", "messaging", "error"].map((kind) =>
        svg("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 11, markerHeight: 11, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: `arrowhead ${kind}` })),
      ),
    ),
  );
  const pairCount = new Map();
  const edgeLayer = svg("g", { class: "edges" });
  const labelLayer = svg("g", { class: "edge-labels" });
  for (const e of data.edges) {
    const a = pos.get(e.parent);
    const b = pos.get(e.child);
    if (!a || !b) continue;
    const key = [e.parent, e.child].sort().join("\u0000");
    const nth = pairCount.get(key) || 0;
    pairCount.set(key, nth + 1);
    const bend = nth * 28;
    let d;
    let mid;
    if (e.parent === e.child) {
      const x = a.x + NODE_W / 2;
      d = `M ${x - 20} ${a.y} C ${x - 50} ${a.y - 60}, ${x + 50} ${a.y - 60}, ${x + 20} ${a.y}`;
      mid = { x, y: a.y - 48 };
    } else {
      const forward = b.x > a.x;
      const x1 = forward ? a.x + NODE_W : a.x + NODE_W / 2;
      const y1 = forward ? a.y + NODE_H / 2 : a.y + NODE_H;
      const x2 = forward ? b.x : b.x + NODE_W / 2;
      const y2 = forward ? b.y + NODE_H / 2 : b.y + NODE_H;
      const dx = forward ? Math.max(40, (x2 - x1) / 2) : 0;
      const dy = forward ? bend : 70 + bend;
      d = `M ${x1} ${y1} C ${x1 + dx} ${y1 + dy}, ${x2 - dx} ${y2 + dy}, ${x2} ${y2}`;
      mid = { x: (x1 + x2) / 2, y: (y1 + y2) / 2 + dy * 0.75 };
    }
    const style = e.kind === "messaging" || e.kind === "link" ? "messaging" : "call";
    const cls = `edge ${style}${e.errors ? " has-errors" : ""}`;
    const marker = e.errors ? "error" : style;
    const group = svg(
      "g",
      { class: cls, tabindex: 0, role: "button", dataset: { parent: e.parent, child: e.child, kind: e.kind } },
      svg("title", {}, `${e.parent} → ${e.child} (${e.kind}): ${e.calls} calls, ${e.errors} errors`),
      svg("path", { d, class: "edge-hit" }),
      svg("path", { d, class: "edge-line", "marker-end": `url(#arrow-${marker})` }),
    );
    const label = svg(
      "g",
      { class: `edge-label${e.errors ? " has-errors" : ""}`, dataset: { parent: e.parent, child: e.child, kind: e.kind } },
      svg("rect", { x: mid.x - 52, y: mid.y - 11, width: 104, height: 22, rx: 11 }),
      svg("text", { x: mid.x, y: mid.y + 4, "text-anchor": "middle" }, `${e.calls} ${style === "call" ? "call" : "msg"}${e.calls === 1 ? "" : "s"}${e.errors ? ` · ${e.errors} err` : ""}`),
    );
    const activate = () => onEdge(e, group);
    group.addEventListener("click", activate);
    label.addEventListener("click", activate);
    group.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") activate();
    });
    edgeLayer.appendChild(group);
    labelLayer.appendChild(label);
  }
  root.appendChild(edgeLayer);
  const nodeLayer = svg("g", { class: "nodes" });
  for (const { x, y, s } of pos.values()) {
    const kind = s.kind || "service";
    nodeLayer.appendChild(
      svg(
        "g",
        { class: `node ${kind}${s.errors ? " has-errors" : ""}`, dataset: { service: s.service, kind }, transform: `translate(${x} ${y})` },
        ...(kind === "service" ? serviceNode(s) : peerNode(s, kind)),
      ),
    );
  }
  root.appendChild(nodeLayer);
  root.appendChild(labelLayer);
  return root;
}

function serviceNode(s) {
  return [
    svg("title", {}, `${s.service}: ${s.spans} spans, ${s.errors} errors`),
    svg("rect", { width: NODE_W, height: NODE_H, rx: 8, class: "node-shape" }),
    svg("rect", { width: 6, height: NODE_H, rx: 3, fill: serviceColour(s.service), class: "node-stripe" }),
    svg("text", { x: 16, y: 20, class: "node-name" }, truncate(s.service, 20)),
    svg("text", { x: 16, y: 37, class: "node-stats" }, `${s.spans} spans${s.errors ? ` · ${s.errors} errors` : ""}`),
  ];
}

// A database is a cylinder, an external service (no spans of its own) a dashed hexagon; their
// figures are the calls their callers made to them.
function peerNode(s, kind) {
  const what = kind === "database" ? `${s.system} database` : "external service";
  const calls = `${s.calls} call${s.calls === 1 ? "" : "s"}${s.errors ? ` · ${s.errors} err` : ""}`;
  const r = 7; // the cylinder's lids
  const shape =
    kind === "database"
      ? [
          svg("path", { class: "node-shape", d: `M 0 ${r} A ${NODE_W / 2} ${r} 0 0 1 ${NODE_W} ${r} V ${NODE_H - r} A ${NODE_W / 2} ${r} 0 0 1 0 ${NODE_H - r} Z` }),
          svg("path", { class: "node-lid", d: `M 0 ${r} A ${NODE_W / 2} ${r} 0 0 0 ${NODE_W} ${r}` }),
        ]
      : [svg("polygon", { class: "node-shape", points: `14,0 ${NODE_W - 14},0 ${NODE_W},${NODE_H / 2} ${NODE_W - 14},${NODE_H} 14,${NODE_H} 0,${NODE_H / 2}` })];
  return [
    svg("title", {}, `${s.service} (${what}): ${calls}`),
    ...shape,
    svg("text", { x: 14, y: kind === "database" ? 25 : 21, class: "node-name" }, truncate(s.service, 20)),
    svg("text", { x: 14, y: kind === "database" ? 39 : 35, class: "node-stats" }, `${kind === "database" ? truncate(s.system, 11) : "external"} · ${calls}`),
  ];
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function showEdge(panel, edge, el) {
  for (const g of document.querySelectorAll(".edge.selected")) g.classList.remove("selected");
  el.classList.add("selected");
  append(clear(panel), 
    h("h2", {}, edge.parent, " → ", edge.child),
    h("p", { class: "edge-facts" }, `${edge.kind === "messaging" ? "Messages" : edge.kind === "link" ? "Links" : "Calls"}: ${edge.calls}`, edge.errors ? h("span", { class: "bad" }, ` · errors: ${edge.errors}`) : null),
    h("h3", {}, `Traces (${edge.trace_ids.length}${edge.trace_ids.length < edge.calls ? ` of ${edge.calls} calls` : ""})`),
    traceList(edge.trace_ids),
  );
}
