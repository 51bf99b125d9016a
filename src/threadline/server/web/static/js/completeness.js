// Completeness: how whole the traces in a window are, over time, and the worst broken hops.
import { append, clear, getJSON, h, message, serviceColour, svg } from "./dom.js";
import { lookbackSelect, traceList } from "./search.js";

const SERIES = [
  ["one_root_share", "one root", "good"],
  ["orphan_share", "with orphans", "warn"],
  ["incomplete_share", "with incomplete spans", "bad"],
];

export async function render(container, params) {
  const lookback = params.get("lookback") || "1h";
  const select = lookbackSelect(lookback, (value) => {
    location.hash = `#/completeness?lookback=${value}`;
  });
  const body = h("div", { class: "completeness" }, message("Measuring…"));
  append(container, h("section", { class: "page-head" }, h("h1", {}, "Completeness"), h("div", { class: "controls" }, h("label", {}, "Window ", select)), h("p", { class: "hint" }, "A complete trace has one root, no span whose parent never arrived, no span left incomplete by a crashed worker, and a root that did not drop its caller's context.")), body);
  const data = await getJSON(`/api/threadline/analysis/completeness?lookback=${encodeURIComponent(lookback)}&buckets=24`);
  clear(body);
  if (!data.traces) {
    body.appendChild(message("No traces in this window yet."));
    return;
  }
  let overTime;
  const pct = (v) => `${(v * 100).toFixed(1)}%`;
  append(body, 
    h(
      "div",
      { class: "cards" },
      card("Traces", String(data.traces), ""),
      card("One root", pct(data.one_root_share), "good", `${data.one_root} of ${data.traces}`),
      card("With orphans", pct(data.orphan_share), data.with_orphans ? "warn" : "", `${data.with_orphans} traces`),
      card("With incomplete spans", pct(data.incomplete_share), data.with_incomplete ? "bad" : "", `${data.with_incomplete} traces`),
      card("Dropped context", pct(data.dropped_context_share || 0), data.with_dropped_context ? "bad" : "", `${data.with_dropped_context || 0} traces`),
    ),
    (overTime = h("section", { class: "panel" }, h("h2", {}, "Over time"))),
    h("section", { class: "panel" }, h("h2", {}, "Worst broken hops"), hops(data.broken_hops)),
    h("section", { class: "panel" }, h("h2", {}, "Dropped contexts"), h("p", { class: "hint" }, "Roots that should have had a caller: a consumer span that arrived with no context while the same service takes other messages from that destination with context, or a server span while the same operation of that service is called with context."), dropped(data.dropped_context || [])),
  );
  append(overTime, chart(data.buckets, overTime.clientWidth - 30), legend());
}

function card(label, value, cls, sub) {
  return h("div", { class: `card ${cls}` }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value), sub ? h("div", { class: "card-sub" }, sub) : null);
}

function legend() {
  return h(
    "div",
    { class: "legend" },
    SERIES.map(([, label, cls]) => h("span", { class: `legend-line ${cls}` }, label)),
    h("span", { class: "legend-bar" }, "traces per interval"),
  );
}

function chart(buckets, width) {
  const W = Math.max(480, width || 960);
  const H = 220;
  const pad = { l: 64, r: 64, t: 12, b: 28 };
  const n = buckets.length;
  const bw = (W - pad.l - pad.r) / n;
  const maxTraces = Math.max(...buckets.map((b) => b.traces), 1);
  const y = (share) => H - pad.b - share * (H - pad.t - pad.b);
  const root = svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "completeness over time" });
  for (const share of [0, 0.5, 1]) {
    append(root, svg("line", { x1: pad.l, x2: W - pad.r, y1: y(share), y2: y(share), class: "grid" }), svg("text", { x: pad.l - 6, y: y(share) + 4, "text-anchor": "end", class: "axis" }, `${share * 100}%`));
  }
  // right axis: the grey bars, traces per interval (the tallest bar is 60% of the plot)
  const barTop = H - pad.b - 0.6 * (H - pad.t - pad.b);
  append(root,
    svg("text", { x: W - pad.r + 6, y: barTop + 4, class: "axis" }, String(maxTraces)),
    svg("text", { x: W - pad.r + 6, y: H - pad.b + 4, class: "axis" }, "0"),
    axisTitle("share of traces", 14, (H - pad.b + pad.t) / 2, "left"),
    axisTitle("traces per interval", W - 12, (H - pad.b + pad.t) / 2, "right"),
  );
  buckets.forEach((b, i) => {
    const bh = (b.traces / maxTraces) * (H - pad.t - pad.b) * 0.6;
    root.appendChild(svg("rect", { x: pad.l + i * bw + 2, y: H - pad.b - bh, width: Math.max(1, bw - 4), height: bh, class: "count-bar" }, svg("title", {}, `${b.traces} traces`)));
  });
  for (const [key, , cls] of SERIES) {
    const pts = buckets.map((b, i) => (b.traces ? [pad.l + (i + 0.5) * bw, y(b[key])] : null)).filter(Boolean);
    if (!pts.length) continue;
    root.appendChild(svg("polyline", { points: pts.map((p) => p.join(",")).join(" "), class: `series ${cls}` }));
    for (const [px, py] of pts) root.appendChild(svg("circle", { cx: px, cy: py, r: 3, class: `series-dot ${cls}` }));
  }
  const first = new Date(Number(BigInt(buckets[0].start_ns) / 1000000n));
  const last = new Date(Number(BigInt(buckets[n - 1].end_ns) / 1000000n));
  append(root, 
    svg("text", { x: pad.l, y: H - 8, class: "axis" }, first.toLocaleTimeString(undefined, { hour12: false })),
    svg("text", { x: W - pad.r, y: H - 8, "text-anchor": "end", class: "axis" }, last.toLocaleTimeString(undefined, { hour12: false })),
  );
  return root;
}

function axisTitle(text, x, y, side) {
  return svg("text", { x, y, class: `axis axis-title ${side}`, "text-anchor": "middle", transform: `rotate(${side === "left" ? -90 : 90} ${x} ${y})` }, text);
}

function hops(list) {
  if (!list.length) return h("p", { class: "hint" }, "No broken hops: every parent arrived.");
  return h(
    "table",
    { class: "hops" },
    h("thead", {}, h("tr", {}, h("th", {}, "Sender"), h("th", {}, ""), h("th", {}, "Receiver"), h("th", { class: "num" }, "Breaks"), h("th", {}, "Example"), h("th", {}, "Traces"))),
    h(
      "tbody",
      {},
      list.map((hop) =>
        h(
          "tr",
          { dataset: { before: hop.before, after: hop.after } },
          h("td", {}, svcName(hop.before)),
          h("td", { class: "arrow" }, "⇢"),
          h("td", {}, svcName(hop.after)),
          h("td", { class: "num" }, String(hop.count)),
          h("td", { class: "example" }, hop.example),
          h("td", {}, traceList(hop.trace_ids)),
        ),
      ),
    ),
  );
}

function dropped(list) {
  if (!list.length) return h("p", { class: "hint" }, "No dropped contexts.");
  return h(
    "table",
    { class: "hops dropped" },
    h("thead", {}, h("tr", {}, h("th", {}, "Sender"), h("th", {}, ""), h("th", {}, "Receiver"), h("th", {}, "Destination"), h("th", { class: "num" }, "Roots"), h("th", {}, "Example"), h("th", {}, "Traces"))),
    h(
      "tbody",
      {},
      list.map((hop) =>
        h(
          "tr",
          { dataset: { sender: hop.sender, receiver: hop.receiver, destination: hop.destination } },
          h("td", {}, hop.sender === "?" ? h("span", { class: "dim" }, "untraced sender") : svcName(hop.sender)),
          h("td", { class: "arrow" }, "⇢"),
          h("td", {}, svcName(hop.receiver)),
          h("td", {}, hop.destination),
          h("td", { class: "num" }, String(hop.count)),
          h("td", { class: "example" }, hop.example),
          h("td", {}, traceList(hop.trace_ids)),
        ),
      ),
    ),
  );
}

function svcName(name) {
  if (name === "?") return h("span", { class: "dim" }, "unknown sender");
  return h("span", {}, h("span", { class: "svc-dot", style: { background: serviceColour(name) } }), name);
}
