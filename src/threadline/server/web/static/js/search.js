// Search: service, operation, attribute filters, duration bounds, time range, errors only.
// Results as a duration-over-time scatter and a table; new traces arrive live.
import { append, clear, fmtDuration, fmtTime, getJSON, h, message, parseDuration, serviceColour, svg } from "./dom.js";

const LOOKBACKS = [
  ["5m", "Last 5 minutes"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
];
const UNIT_NS = { m: 60e9, h: 3600e9, d: 86400e9 };

export function lookbackSelect(value, onChange, withCustom = false) {
  const options = withCustom ? [...LOOKBACKS, ["custom", "Custom range…"]] : LOOKBACKS;
  return h(
    "select",
    { name: "lookback", onchange: (e) => onChange && onChange(e.target.value) },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
}

// [start, end] of the search window in epoch nanoseconds (a datetime-local value is local time).
function windowOf(state) {
  if (state.lookback === "custom") return [Date.parse(state.from) * 1e6, Date.parse(state.to) * 1e6];
  const now = Date.now() * 1e6;
  return [now - lookbackNs(state.lookback), now];
}

function lookbackNs(value) {
  const m = /^(\d+)([mhd])$/.exec(value || "1h");
  return m ? Number(m[1]) * UNIT_NS[m[2]] : 3600e9;
}

// The backend's search parameters, from the form's state.
export function searchURL(state) {
  const q = new URLSearchParams();
  if (state.service) q.set("service", state.service);
  if (state.operation) q.set("operation", state.operation);
  for (const f of state.filters) if (f.trim()) q.append("filter", f.trim());
  const min = parseDuration(state.min);
  const max = parseDuration(state.max);
  if (min) q.set("minDuration", `${min}ns`);
  if (max) q.set("maxDuration", `${max}ns`);
  if (state.errors) q.set("status", "error");
  if (state.lookback === "custom") {
    const [start, end] = windowOf(state);
    q.set("start", String(Math.floor(start / 1e3)));
    q.set("end", String(Math.ceil(end / 1e3)));
  } else q.set("lookback", state.lookback || "1h");
  q.set("limit", state.limit || "50");
  return `/api/threadline/search?${q}`;
}

function stateFromParams(params) {
  return {
    service: params.get("service") || "",
    operation: params.get("operation") || "",
    filters: params.getAll("filter"),
    min: params.get("min") || "",
    max: params.get("max") || "",
    errors: params.get("errors") === "1",
    lookback: params.get("lookback") || "1h",
    from: params.get("from") || "",
    to: params.get("to") || "",
    limit: params.get("limit") || "50",
  };
}

function hashFromState(state) {
  const q = new URLSearchParams();
  for (const key of ["service", "operation", "min", "max", "lookback", "limit"]) if (state[key]) q.set(key, state[key]);
  if (state.lookback === "custom") for (const key of ["from", "to"]) q.set(key, state[key]);
  for (const f of state.filters) if (f.trim()) q.append("filter", f.trim());
  if (state.errors) q.set("errors", "1");
  return `#/?${q}`;
}

export async function render(container, params) {
  const state = stateFromParams(params);
  const services = await getJSON("/api/services").catch(() => ({ data: [] }));
  const serviceSel = h("select", { name: "service" }, h("option", { value: "" }, "All services"), (services.data || []).map((s) => h("option", { value: s, selected: s === state.service }, s)));
  const opSel = h("select", { name: "operation" }, h("option", { value: "" }, "All operations"));
  const loadOps = async () => {
    clear(opSel).appendChild(h("option", { value: "" }, "All operations"));
    if (!serviceSel.value) return;
    const ops = await getJSON(`/api/services/${encodeURIComponent(serviceSel.value)}/operations`).catch(() => ({ data: [] }));
    for (const op of ops.data || []) opSel.appendChild(h("option", { value: op, selected: op === state.operation }, op));
  };
  serviceSel.addEventListener("change", loadOps);
  await loadOps();

  const filterBox = h("div", { class: "filters" });
  const addFilter = (value = "") => {
    const input = h("input", { name: "filter", value, placeholder: "http.status_code>=500", spellcheck: "false", autocomplete: "off" });
    filterBox.appendChild(h("div", { class: "filter-row" }, input, h("button", { type: "button", class: "icon", title: "Remove", onclick: (e) => e.target.parentNode.remove() }, "×")));
  };
  for (const f of state.filters.length ? state.filters : [""]) addFilter(f);

  const range = h(
    "div",
    { class: "field-pair", hidden: state.lookback !== "custom" },
    field("From", h("input", { type: "datetime-local", name: "from", value: state.from, step: 1 })),
    field("To", h("input", { type: "datetime-local", name: "to", value: state.to, step: 1 })),
  );
  const form = h(
    "form",
    { class: "search-form", id: "search-form" },
    field("Service", serviceSel),
    field("Operation", opSel),
    field(
      "Attributes",
      filterBox,
      h("button", { type: "button", class: "link", onclick: () => addFilter() }, "+ add filter"),
      h("p", { class: "hint" }, "key=value, key!=value, key>n, key<=n, key (exists), !key (missing); span: or resource: prefix; alternatives with OR. All rows must match."),
    ),
    h("div", { class: "field-pair" }, field("Min duration", h("input", { name: "min", value: state.min, placeholder: "e.g. 10ms", size: 8 })), field("Max duration", h("input", { name: "max", value: state.max, placeholder: "e.g. 2s", size: 8 }))),
    field(
      "Time range",
      lookbackSelect(
        state.lookback,
        (value) => {
          range.hidden = value !== "custom";
        },
        true,
      ),
    ),
    range,
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "errors", checked: state.errors }), "Errors only"),
    field("Limit", h("input", { name: "limit", type: "number", min: 1, max: 1000, value: state.limit })),
    h("button", { type: "submit", class: "primary" }, "Find traces"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = form.elements;
    const next = {
      service: f.service.value,
      operation: f.operation.value,
      filters: [...form.querySelectorAll("input[name=filter]")].map((i) => i.value),
      min: f.min.value.trim(),
      max: f.max.value.trim(),
      errors: f.errors.checked,
      lookback: f.lookback.value,
      from: f.from.value,
      to: f.to.value,
      limit: f.limit.value,
    };
    if (next.lookback === "custom") {
      const [start, end] = windowOf(next);
      if (!(start < end)) {
        f.to.setCustomValidity("choose a start and an end after it");
        f.to.reportValidity();
        f.to.setCustomValidity("");
        return;
      }
    }
    for (const [name, value] of [
      ["min", next.min],
      ["max", next.max],
    ]) {
      if (Number.isNaN(parseDuration(value))) {
        f[name].setCustomValidity("a duration like 250us, 10ms or 1.5s");
        f[name].reportValidity();
        f[name].setCustomValidity("");
        return;
      }
    }
    const hash = hashFromState(next);
    if (location.hash === hash) refresh();
    else location.hash = hash;
  });

  const summaryLine = h("div", { class: "results-summary" });
  const scatter = h("div", { class: "scatter" });
  const results = h("div", { class: "results" });
  append(container, h("div", { class: "search-layout" }, h("aside", { class: "search-side" }, form), h("section", { class: "search-main" }, summaryLine, scatter, results)));

  const seen = new Set();
  let first = true;
  async function refresh() {
    let body;
    try {
      body = await getJSON(searchURL(state));
    } catch (err) {
      clear(results).appendChild(message(String(err.message || err), "error"));
      return;
    }
    const traces = body.traces || body.data || [];
    const fresh = first ? new Set() : new Set(traces.map((t) => t.trace_id).filter((id) => !seen.has(id)));
    for (const t of traces) seen.add(t.trace_id);
    first = false;
    summaryLine.textContent = `${traces.length} trace${traces.length === 1 ? "" : "s"}${traces.length >= Number(state.limit) ? " (limit reached)" : ""} · live`;
    drawScatter(scatter, traces, ...windowOf(state));
    clear(results).appendChild(traces.length ? resultsTable(traces, fresh) : message("No traces match. Widen the time range or remove a filter."));
    document.body.dataset.ready = "search";
  }
  await refresh();
  const stop = live(() => refresh());
  return () => {
    stop();
    delete document.body.dataset.ready;
  };
}

// New traces: the server's live feed (server-sent events) triggers a debounced re-query, so the
// list keeps honouring every filter. Falls back to polling if the feed is unavailable.
function live(onNew) {
  let timer = 0;
  const poke = () => {
    if (!timer) timer = setTimeout(() => ((timer = 0), onNew()), 500);
  };
  let source = null;
  let poll = 0;
  try {
    source = new EventSource("/api/threadline/live");
    source.onmessage = poke;
    source.addEventListener("traces", poke);
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED && !poll) poll = setInterval(onNew, 5000);
    };
  } catch {
    poll = setInterval(onNew, 5000);
  }
  return () => {
    if (source) source.close();
    clearInterval(poll);
    clearTimeout(timer);
  };
}

function field(label, ...controls) {
  return h("div", { class: "field" }, h("span", { class: "field-label" }, label), controls);
}

function resultsTable(traces, fresh) {
  const maxDur = Math.max(...traces.map((t) => t.duration_ns), 1);
  return h(
    "table",
    { class: "traces" },
    h("thead", {}, h("tr", {}, h("th", {}, "Trace"), h("th", { class: "num" }, "Spans"), h("th", {}, "Services"), h("th", { class: "num" }, "Errors"), h("th", { class: "num" }, "Duration"), h("th", {}, "Started"))),
    h(
      "tbody",
      {},
      traces.map((t) =>
        h(
          "tr",
          { class: `${t.error_count ? "has-errors" : ""}${fresh.has(t.trace_id) ? " fresh" : ""}`, dataset: { traceId: t.trace_id } },
          h(
            "td",
            {},
            h(
              "a",
              { class: "trace-link", href: `#/trace/${t.trace_id}` },
              h("span", { class: "svc-dot", style: { background: serviceColour(t.root_service) } }),
              h("span", { class: "svc" }, t.root_service),
              " ",
              h("span", { class: "op" }, t.root_name),
            ),
            h("div", { class: "mono dim" }, t.trace_id),
          ),
          h("td", { class: "num" }, t.span_count, t.incomplete_count ? h("span", { class: "badge warn", title: "spans that never ended" }, `${t.incomplete_count} incomplete`) : null),
          h(
            "td",
            {},
            (t.services || []).map((s) => h("span", { class: "chip", style: { borderColor: serviceColour(s) } }, s)),
          ),
          h("td", { class: "num" }, t.error_count ? h("span", { class: "badge bad" }, t.error_count) : "0"),
          h("td", { class: "num" }, h("div", { class: "dur" }, h("div", { class: "dur-track" }, h("div", { class: "dur-bar", style: { width: `${Math.max(2, (t.duration_ns / maxDur) * 100)}%` } })), h("span", {}, fmtDuration(t.duration_ns)))),
          h("td", { class: "dim" }, fmtTime(t.start_ns)),
        ),
      ),
    ),
  );
}

function drawScatter(el, traces, x0, x1) {
  clear(el);
  const W = el.clientWidth || 900;
  const H = 190;
  const pad = { l: 64, r: 16, t: 12, b: 28 };
  const windowNs = Math.max(1, x1 - x0);
  const durs = traces.map((t) => Math.max(1, t.duration_ns));
  const longest = Math.max(...durs, 1e6);
  const logScale = longest / Math.min(...durs, longest / 10) > 50;
  // round ticks: decades on a log scale, 1/2/5 x 10^k steps on a linear one
  const ticks = logScale ? decades(Math.min(...durs), longest) : steps(longest);
  const minD = ticks[0] || 1;
  const maxD = ticks[ticks.length - 1];
  const y = (d) => {
    const f = logScale ? (Math.log10(Math.max(d, 1)) - Math.log10(minD)) / (Math.log10(maxD) - Math.log10(minD) || 1) : d / maxD;
    return H - pad.b - f * (H - pad.t - pad.b);
  };
  const x = (ns) => pad.l + ((ns - x0) / windowNs) * (W - pad.l - pad.r);
  const root = svg("svg", { class: "scatter-svg", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "trace duration over time" });
  root.appendChild(svg("rect", { x: pad.l, y: pad.t, width: W - pad.l - pad.r, height: H - pad.t - pad.b, class: "plot-bg" }));
  for (const d of ticks) {
    const yy = y(Math.max(d, 1));
    append(root, svg("line", { x1: pad.l, x2: W - pad.r, y1: yy, y2: yy, class: "grid" }), svg("text", { x: pad.l - 6, y: yy + 4, "text-anchor": "end", class: "axis" }, fmtDuration(d)));
  }
  for (let k = 0; k <= 4; k++) {
    const ns = x0 + (windowNs * k) / 4;
    root.appendChild(svg("text", { x: x(ns), y: H - 8, "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle", class: "axis" }, new Date(ns / 1e6).toLocaleTimeString(undefined, { hour12: false })));
  }
  for (const t of traces) {
    const start = Number(t.start_ns);
    const dot = svg(
      "circle",
      { cx: Math.max(pad.l, Math.min(W - pad.r, x(start))), cy: y(Math.max(1, t.duration_ns)), r: Math.min(9, 3 + Math.sqrt(t.span_count || 1) / 2), class: `dot${t.error_count ? " error" : ""}`, tabindex: 0, dataset: { traceId: t.trace_id } },
      svg("title", {}, `${t.root_service}: ${t.root_name} — ${fmtDuration(t.duration_ns)}, ${t.span_count} spans`),
    );
    dot.addEventListener("click", () => {
      location.hash = `#/trace/${t.trace_id}`;
    });
    root.appendChild(dot);
  }
  el.appendChild(root);
}

function steps(max) {
  const raw = max / 3;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].find((m) => m * p >= raw) * p;
  const out = [];
  for (let k = 0; k * step < max + step; k++) out.push(k * step);
  return out;
}

function decades(min, max) {
  const out = [10 ** Math.floor(Math.log10(min))];
  while (out[out.length - 1] < max) out.push(out[out.length - 1] * 10);
  return out;
}

// A list of traces by id (service map edges, completeness examples): links at once, summaries
// filled in when the search endpoint returns them.
export function traceList(ids) {
  const list = h("ul", { class: "trace-list" });
  const items = new Map();
  for (const id of ids) {
    const item = h("li", {}, h("a", { class: "trace-link", href: `#/trace/${id}` }, h("span", { class: "mono" }, id)));
    items.set(id, item);
    list.appendChild(item);
  }
  if (ids.length) {
    const q = new URLSearchParams();
    for (const id of ids) q.append("id", id);
    getJSON(`/api/threadline/analysis/summaries?${q}`)
      .then((body) => {
        for (const t of body.traces || []) {
          const item = items.get(t.trace_id);
          if (!item) continue;
          append(clear(item), 
            h("a", { class: "trace-link", href: `#/trace/${t.trace_id}` }, h("span", { class: "svc-dot", style: { background: serviceColour(t.root_service) } }), h("span", { class: "svc" }, t.root_service), " ", h("span", { class: "op" }, t.root_name)),
            h("div", { class: "dim" }, `${fmtDuration(t.duration_ns)} · ${t.span_count} spans${t.error_count ? ` · ${t.error_count} errors` : ""} · ${fmtTime(t.start_ns)}`),
          );
        }
      })
      .catch(() => {});
  }
  return list;
}
