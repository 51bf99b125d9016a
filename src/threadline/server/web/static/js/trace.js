// Trace view: virtualised waterfall (only the rows in view exist in the DOM), collapsible tree,
// minimap (overview, click to jump, drag to zoom time), span details, links, critical path.
// The trace arrives as columns (one array per field, names in a shared string table); a span's
// attributes, events, resource and links are fetched when it is selected.
import { append, clear, fmtDuration, fmtTime, getJSON, h, message, serviceColour, valueText } from "./dom.js";

const ROW_H = 24;
const OVERSCAN = 12;
const MAX_INDENT = 16;
const PLACEHOLDER = 1; // flags, as the waterfall endpoint sets them
const PENDING = 2;
const KIND_LABEL = { server: "server", client: "client", producer: "producer", consumer: "consumer", internal: "internal", unspecified: "" };
const API = "/api/threadline/analysis/waterfall";

let view = null; // the trace on screen

export function isShowing(traceId) {
  // Same trace with the same clock options: only the focus moves. Another option re-renders.
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const query = viewQuery(params.get("skew") === "1", params.get("client_clock") === "raw");
  return view !== null && view.data.trace_id === traceId && view.query === query;
}

export function focus(spanId) {
  if (view && spanId) view.focusSpan(spanId);
}

// The view's options as a query string: ?skew=1 and/or client_clock=raw.
function viewQuery(skew, rawClock) {
  const q = [skew ? "skew=1" : "", rawClock ? "client_clock=raw" : ""].filter(Boolean).join("&");
  return q ? `?${q}` : "";
}

export async function render(container, params) {
  const id = params.get("id");
  const skew = params.get("skew") === "1";
  const rawClock = params.get("client_clock") === "raw";
  container.appendChild(message(`Loading trace ${id}…`));
  performance.mark("trace-fetch-start");
  const data = await getJSON(`${API}/${encodeURIComponent(id)}${viewQuery(skew, rawClock)}`);
  performance.mark("trace-fetched");
  clear(container);
  view = new TraceView(container, data, skew, viewQuery(skew, rawClock));
  view.focusSpan(params.get("span"));
  performance.mark("trace-interactive");
  document.body.dataset.ready = "trace";
  return () => {
    view.destroy();
    view = null;
    delete document.body.dataset.ready;
  };
}

// One waterfall row, as the drawing code reads it, made from the columns on demand.
function rowOf(data, i) {
  const c = data.columns;
  const str = data.strings;
  return {
    id: c.id[i],
    parent: c.parent[i],
    depth: c.depth[i],
    children: c.children[i],
    start: c.start[i],
    end: c.end[i],
    service: str[c.service[i]],
    name: str[c.name[i]],
    kind: str[c.kind[i]],
    status: c.status[i],
    placeholder: (c.flags[i] & PLACEHOLDER) !== 0,
    pending: (c.flags[i] & PENDING) !== 0,
    note: data.notes[i] || "",
  };
}

class TraceView {
  constructor(container, data, skew, query) {
    this.data = data;
    this.skew = skew;
    this.query = query; // the clock options it was rendered with, kept by links inside it
    const c = data.columns;
    const n = c.id.length;
    this.n = n;
    this.duration = Math.max(1, data.duration_ns);
    this.range = [0, this.duration];
    this.collapsed = new Uint8Array(n);
    this.selected = -1;
    this.details = new Map(); // row -> its fetched details
    this.showCritical = true;
    this.byId = new Map();
    this.subtreeEnd = new Int32Array(n);
    const stack = [];
    for (let i = 0; i < n; i++) {
      if (!(c.flags[i] & PLACEHOLDER) || !this.byId.has(c.id[i])) this.byId.set(c.id[i], i);
      while (stack.length && c.depth[stack[stack.length - 1]] >= c.depth[i]) this.subtreeEnd[stack.pop()] = i;
      stack.push(i);
    }
    while (stack.length) this.subtreeEnd[stack.pop()] = n;
    this.linkedFrom = new Map(); // span id in this trace -> rows whose links point at it
    for (const [row, traceId, spanId] of data.links) {
      if (traceId !== data.trace_id) continue;
      if (!this.linkedFrom.has(spanId)) this.linkedFrom.set(spanId, []);
      this.linkedFrom.get(spanId).push(row);
    }
    this.critical = new Map();
    for (const seg of data.critical_path) {
      const i = this.byId.get(seg.span_id);
      if (i === undefined) continue;
      if (!this.critical.has(i)) this.critical.set(i, []);
      this.critical.get(i).push([seg.start, seg.end]);
    }
    this.build(container, skew);
    this.computeVisible();
    this.onResize = () => {
      this.drawMinimap();
      this.renderRows();
    };
    window.addEventListener("resize", this.onResize);
    this.drawMinimap();
    this.renderRows();
    this.renderDetail();
  }

  row(i) {
    return rowOf(this.data, i);
  }

  // A span's address: in the trace on screen it keeps the view's options (so only focus moves).
  spanHref(traceId, spanId) {
    const query = traceId === this.data.trace_id && this.query ? `${this.query}&` : "?";
    return `#/trace/${traceId}${query}span=${spanId}`;
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
  }

  // ------------------------------------------------------------------------------- layout

  build(container, skew) {
    const d = this.data;
    const s = d.summary;
    const rawHref = `/api/threadline/traces/${d.trace_id}`;
    const title = h(
      "section",
      { class: "trace-head" },
      h(
        "div",
        { class: "trace-title" },
        h("span", { class: "svc-dot", style: { background: serviceColour(s.root_service) } }),
        h("h1", {}, h("span", { class: "svc" }, s.root_service || "(no root)"), " ", h("span", { class: "op" }, s.root_name)),
      ),
      h(
        "div",
        { class: "trace-stats" },
        stat("Trace", d.trace_id, "mono"),
        stat("Started", fmtTime(d.t0_ns)),
        stat("Duration", fmtDuration(d.duration_ns)),
        stat("Spans", s.span_count),
        stat("Services", s.services.length),
        s.errors ? stat("Errors", s.errors, "bad") : null,
        s.incomplete ? stat("Incomplete", s.incomplete, "warn") : null,
        s.placeholders ? stat("Missing parents", s.placeholders, "warn") : null,
      ),
      h(
        "div",
        { class: "trace-actions" },
        h("label", { class: "check" }, (this.criticalBox = h("input", { type: "checkbox", checked: true, onchange: () => this.toggleCritical() })), "Critical path"),
        h(
          "label",
          { class: "check", title: "Move spans whose host clock disagrees with their parent's; the shifts are listed above" },
          h("input", {
            type: "checkbox",
            checked: skew,
            onchange: (e) => {
              location.hash = `#/trace/${d.trace_id}${viewQuery(e.target.checked, d.skew.client_clock === "raw")}`;
            },
          }),
          "Adjust clock skew",
        ),
        d.skew.client_corrected
          ? h(
              "label",
              { class: "check", title: "Browser spans were placed on the server's clock when recorded; show them at their own clock's times instead" },
              h("input", {
                type: "checkbox",
                checked: d.skew.client_clock === "raw",
                onchange: (e) => {
                  location.hash = `#/trace/${d.trace_id}${viewQuery(skew, e.target.checked)}`;
                },
              }),
              "Browser clock as recorded",
            )
          : null,
        h("button", { type: "button", onclick: () => this.setAll(0) }, "Expand all"),
        h("button", { type: "button", onclick: () => this.setAll(1) }, "Collapse all"),
        (this.resetZoom = h("button", { type: "button", hidden: true, onclick: () => this.zoom(0, this.duration) }, "Reset zoom")),
        h("a", { class: "button", href: rawHref, download: `trace-${d.trace_id}.json` }, "Download JSON"),
      ),
    );
    container.appendChild(title);
    const problems = this.problems();
    if (problems) container.appendChild(problems);

    this.minimap = h("canvas", { class: "minimap-canvas", height: 60 });
    this.minimapView = h("div", { class: "minimap-view" });
    this.minimapZoom = h("div", { class: "minimap-zoom", hidden: true });
    const minimap = h(
      "div",
      { class: "minimap", title: "Click to jump, drag across to zoom in time" },
      h("div", { class: "minimap-label" }, h("strong", {}, "Overview"), h("br"), "click to jump · drag to zoom"),
      this.minimap,
      this.minimapView,
      this.minimapZoom,
    );
    this.wireMinimap(minimap);

    this.ruler = h("div", { class: "ruler" });
    this.sizer = h("div", { class: "sizer" });
    this.layer = h("div", { class: "rows" });
    this.viewport = h("div", { class: "viewport", tabindex: 0 }, this.sizer, this.layer);
    this.viewport.addEventListener("scroll", () => this.schedule());
    this.viewport.addEventListener("click", (e) => this.onRowClick(e));
    this.viewport.addEventListener("keydown", (e) => this.onKey(e));
    this.status = h("div", { class: "waterfall-status" });
    this.detail = h("aside", { class: "detail" });
    const waterfall = h(
      "section",
      { class: "waterfall" },
      h("div", { class: "waterfall-head" }, h("div", { class: "col-name" }, "Service · operation"), this.ruler),
      this.viewport,
      this.status,
    );
    container.appendChild(h("div", { class: "trace-body" }, h("div", { class: "trace-main" }, minimap, waterfall), this.detail));
  }

  problems() {
    const d = this.data;
    const items = [];
    for (const b of d.breaks) {
      items.push(
        h(
          "li",
          { class: "problem break" },
          h("span", { class: "tag warn" }, b.kind.replace("_", " ")),
          side(this, b.before),
          h("span", { class: "arrow" }, " ⇢ "),
          side(this, b.after),
          h("div", { class: "problem-msg" }, b.message),
        ),
      );
    }
    if (d.dropped_context) {
      const dc = d.dropped_context;
      items.push(h("li", { class: "problem dropped-context" }, h("span", { class: "tag warn" }, "dropped context"), spanLink(this, dc.span_id, `${dc.service}: ${dc.name}`), h("div", { class: "problem-msg" }, dc.message)));
    }
    for (const inc of d.incomplete) {
      items.push(h("li", { class: "problem" }, h("span", { class: "tag warn" }, "incomplete"), spanLink(this, inc.span_id, `${inc.service}: ${inc.name}`), h("div", { class: "problem-msg" }, inc.reason)));
    }
    for (const sh of d.skew.shifts) {
      items.push(h("li", { class: "problem" }, h("span", { class: "tag info" }, "clock skew"), spanLink(this, sh.span_id, `${sh.service}: ${sh.name}`), h("div", { class: "problem-msg" }, `${sh.reason} (${sh.spans_moved} spans)`)));
    }
    if (d.skew.adjusted && !d.skew.shifts.length) items.push(h("li", { class: "problem" }, h("span", { class: "tag info" }, "clock skew"), "No span needed moving."));
    if (!items.length) return null;
    return h("details", { class: "problems", open: true }, h("summary", {}, `${items.length} finding${items.length > 1 ? "s" : ""} in this trace`), h("ul", {}, items));
  }

  // --------------------------------------------------------------------------- tree state

  computeVisible() {
    const out = new Int32Array(this.n);
    let k = 0;
    for (let i = 0; i < this.n; ) {
      out[k++] = i;
      i = this.collapsed[i] ? this.subtreeEnd[i] : i + 1;
    }
    this.visible = out.subarray(0, k);
    this.position = null;
    this.sizer.style.height = `${k * ROW_H}px`;
    this.status.textContent = `${this.n} rows · ${k} shown`;
    this.status.dataset.rows = String(this.n);
    this.status.dataset.shown = String(k);
  }

  positionOf(i) {
    if (!this.position) {
      this.position = new Int32Array(this.n).fill(-1);
      this.visible.forEach((row, pos) => {
        this.position[row] = pos;
      });
    }
    return this.position[i];
  }

  toggle(i) {
    this.collapsed[i] = this.collapsed[i] ? 0 : 1;
    this.computeVisible();
    this.drawMinimap();
    this.renderRows();
  }

  setAll(value) {
    const children = this.data.columns.children;
    for (let i = 0; i < this.n; i++) this.collapsed[i] = value && children[i] ? 1 : 0;
    this.computeVisible();
    this.drawMinimap();
    this.renderRows();
  }

  focusSpan(spanId) {
    if (!spanId) return;
    const i = this.byId.get(spanId);
    if (i === undefined) {
      this.flash(`Span ${spanId} is not in this trace.`);
      return;
    }
    let changed = false;
    const parent = this.data.columns.parent;
    for (let p = parent[i]; p >= 0; p = parent[p]) {
      if (this.collapsed[p]) {
        this.collapsed[p] = 0;
        changed = true;
      }
    }
    if (changed) {
      this.computeVisible();
      this.drawMinimap();
    }
    this.select(i);
    const pos = this.positionOf(i);
    const top = pos * ROW_H;
    const vh = this.viewport.clientHeight || 400;
    if (top < this.viewport.scrollTop || top + ROW_H > this.viewport.scrollTop + vh) this.viewport.scrollTop = Math.max(0, top - vh / 2);
    this.renderRows();
  }

  select(i) {
    this.selected = i;
    // the address names the selected span (a reload or a shared link shows it), and a link to
    // any other span changes the address, so it is always followed
    const here = this.spanHref(this.data.trace_id, this.data.columns.id[i]);
    if (location.hash !== here) history.replaceState(null, "", here);
    this.renderDetail();
    this.renderRows();
    if (!this.details.has(i) && !(this.data.columns.flags[i] & PLACEHOLDER)) this.fetchDetails(i);
  }

  async fetchDetails(i) {
    const spanId = this.data.columns.id[i];
    let details;
    try {
      details = await getJSON(`${API}/${this.data.trace_id}/span/${spanId}${this.query}`);
    } catch (err) {
      details = { error: String(err.message || err) };
    }
    this.details.set(i, details);
    if (this.selected === i) this.renderDetail();
  }

  flash(text) {
    this.status.textContent = text;
  }

  toggleCritical() {
    this.showCritical = this.criticalBox.checked;
    this.renderRows();
  }

  zoom(a, b) {
    this.range = [Math.max(0, a), Math.min(this.duration, Math.max(b, a + 1))];
    const full = this.range[0] === 0 && this.range[1] === this.duration;
    this.resetZoom.hidden = full;
    this.minimapZoom.hidden = full;
    if (!full) {
      const w = this.minimap.clientWidth;
      this.minimapZoom.style.left = `${(this.range[0] / this.duration) * w}px`;
      this.minimapZoom.style.width = `${((this.range[1] - this.range[0]) / this.duration) * w}px`;
    }
    this.renderRows();
  }

  // ------------------------------------------------------------------------------ drawing

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.renderRows();
    });
  }

  renderRows() {
    const vp = this.viewport;
    const height = vp.clientHeight || 600;
    const first = Math.max(0, Math.floor(vp.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((vp.scrollTop + height) / ROW_H) + OVERSCAN);
    const [r0, r1] = this.range;
    const span = r1 - r0;
    const frag = document.createDocumentFragment();
    for (let pos = first; pos < last; pos++) frag.appendChild(this.rowElement(this.visible[pos], r0, span));
    this.layer.style.transform = `translateY(${first * ROW_H}px)`;
    clear(this.layer).appendChild(frag);
    this.drawRuler(r0, span);
    this.moveMinimapView(vp.scrollTop / ROW_H, height);
  }

  rowElement(i, r0, span) {
    const row = this.row(i);
    const classes = ["row"];
    if (row.status === 2) classes.push("error");
    if (row.pending) classes.push("pending");
    if (row.placeholder) classes.push("placeholder");
    if (i === this.selected) classes.push("selected");
    const onPath = this.showCritical && this.critical.has(i);
    if (onPath) classes.push("critical");
    const indent = Math.min(row.depth, MAX_INDENT) * 12;
    const colour = row.placeholder ? "#9ca3af" : serviceColour(row.service);
    const toggle = row.children
      ? h("button", { type: "button", class: "toggle", "aria-label": this.collapsed[i] ? "expand" : "collapse", "aria-expanded": this.collapsed[i] ? "false" : "true" }, this.collapsed[i] ? "▸" : "▾")
      : h("span", { class: "toggle-space" });
    const badges = [];
    if (row.status === 2) badges.push(h("span", { class: "badge bad" }, "error"));
    if (row.pending) badges.push(h("span", { class: "badge warn", title: row.note || "" }, "incomplete"));
    if (row.placeholder) badges.push(h("span", { class: "badge warn", title: row.note }, "never arrived"));
    if (this.collapsed[i]) badges.push(h("span", { class: "badge", title: "hidden spans" }, `+${this.subtreeEnd[i] - i - 1}`));
    const name = h(
      "div",
      { class: "col-name", style: { paddingLeft: `${indent + 4}px` }, title: row.depth > MAX_INDENT ? `depth ${row.depth}` : undefined },
      row.depth > MAX_INDENT ? h("span", { class: "deep" }, `↳${row.depth}`) : null,
      toggle,
      h("span", { class: "svc-dot", style: { background: colour } }),
      row.placeholder ? null : h("span", { class: "svc" }, row.service),
      h("span", { class: "op" }, row.placeholder ? `parent ${row.id}` : row.name),
      badges,
    );
    // An incomplete span never ended: its bar runs, hatched, to the end of the trace.
    const end = row.pending ? Math.max(row.end, this.duration) : row.end;
    const timeline = h("div", { class: "col-bar" });
    const a = ((row.start - r0) / span) * 100;
    const b = ((end - r0) / span) * 100;
    if (b >= 0 && a <= 100) {
      // clipped to the zoomed range, so no bar or label reaches into the name column
      const left = Math.max(0, a);
      const right = Math.min(100, b);
      const width = Math.max(right - left, 0.15);
      const bar = h("div", { class: "bar", style: { left: `${left}%`, width: `${width}%`, background: colour } });
      if (onPath) {
        for (const [s0, s1] of this.critical.get(i)) {
          const segLeft = ((Math.max(s0, r0) - Math.max(row.start, r0)) / Math.max(1, ((right - left) / 100) * span)) * 100;
          const segWidth = ((Math.min(s1, r0 + span) - Math.max(s0, r0)) / Math.max(1, ((right - left) / 100) * span)) * 100;
          if (segWidth > 0) bar.appendChild(h("div", { class: "cp", style: { left: `${segLeft}%`, width: `${segWidth}%` } }));
        }
      }
      // after the bar (the column keeps a margin for it); before it when the bar reaches the
      // right edge and there is room on its left
      const text = row.pending ? "incomplete" : fmtDuration(row.end - row.start);
      const before = right > 85 && left >= 25;
      const label = h("span", { class: "bar-label", style: before ? { right: `calc(${100 - left}% + 4px)` } : { left: `calc(${right}% + 4px)` } }, text);
      append(timeline, bar, label);
    }
    return h("div", { class: classes.join(" "), dataset: { index: i, depth: row.depth, spanId: row.id } }, name, timeline);
  }

  drawRuler(r0, span) {
    clear(this.ruler);
    for (let k = 0; k <= 4; k++) {
      const t = h("span", { class: "tick", style: { left: `${k * 25}%` } }, fmtDuration(r0 + (span * k) / 4));
      this.ruler.appendChild(t);
    }
  }

  drawMinimap() {
    const canvas = this.minimap;
    const w = canvas.clientWidth || 800;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.floor(w * ratio);
    canvas.height = Math.floor(60 * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, w, 60);
    const k = this.visible.length;
    const rowH = Math.max(60 / Math.max(k, 1), 0.25);
    const { start, end, status, flags, service } = this.data.columns;
    const strings = this.data.strings;
    for (let pos = 0; pos < k; pos++) {
      const i = this.visible[pos];
      ctx.fillStyle = status[i] === 2 ? "#dc2626" : flags[i] & PENDING ? "#fbbf24" : flags[i] & PLACEHOLDER ? "#9ca3af" : serviceColour(strings[service[i]]);
      const x = (start[i] / this.duration) * w;
      const until = flags[i] & PENDING ? this.duration : end[i];
      ctx.fillRect(x, (pos / k) * 60, Math.max(1, ((until - start[i]) / this.duration) * w), Math.max(rowH, 1));
    }
  }

  // The box over the minimap: the rows in view, from the first one at the top of the viewport.
  moveMinimapView(firstPos, height) {
    const k = Math.max(1, this.visible.length);
    const top = Math.min(60, (firstPos / k) * 60);
    const size = Math.max(3, Math.min(60, (height / ROW_H / k) * 60));
    this.minimapView.style.top = `${top}px`;
    this.minimapView.style.height = `${Math.min(size, 60 - top)}px`;
  }

  wireMinimap(el) {
    let downX = null;
    el.addEventListener("pointerdown", (e) => {
      downX = e.offsetX;
      el.setPointerCapture(e.pointerId);
    });
    el.addEventListener("pointerup", (e) => {
      if (downX === null) return;
      const w = this.minimap.clientWidth || 1;
      const x0 = Math.min(downX, e.offsetX);
      const x1 = Math.max(downX, e.offsetX);
      downX = null;
      if (x1 - x0 > 4) {
        this.zoom((x0 / w) * this.duration, (x1 / w) * this.duration);
      } else {
        const pos = Math.floor((e.offsetY / 60) * this.visible.length);
        this.viewport.scrollTop = Math.max(0, pos * ROW_H - (this.viewport.clientHeight || 400) / 2);
      }
    });
  }

  // ------------------------------------------------------------------------------ events

  onRowClick(e) {
    const rowEl = e.target.closest(".row");
    if (!rowEl) return;
    const i = Number(rowEl.dataset.index);
    if (e.target.closest(".toggle")) this.toggle(i);
    else this.select(i);
  }

  onKey(e) {
    if (this.selected < 0) return;
    const pos = this.positionOf(this.selected);
    if (e.key === "ArrowDown" && pos + 1 < this.visible.length) this.focusSpanAt(pos + 1);
    else if (e.key === "ArrowUp" && pos > 0) this.focusSpanAt(pos - 1);
    else if ((e.key === "ArrowLeft" && !this.collapsed[this.selected]) || (e.key === "ArrowRight" && this.collapsed[this.selected])) {
      if (this.data.columns.children[this.selected]) this.toggle(this.selected);
    } else return;
    e.preventDefault();
  }

  focusSpanAt(pos) {
    const i = this.visible[pos];
    this.select(i);
    const top = pos * ROW_H;
    const vh = this.viewport.clientHeight;
    if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
    else if (top + ROW_H > this.viewport.scrollTop + vh) this.viewport.scrollTop = top + ROW_H - vh;
  }

  // ------------------------------------------------------------------------------ details

  // What the columns say at once; attributes, events, links and resource once fetched.
  renderDetail() {
    const el = clear(this.detail);
    delete el.dataset.spanId;
    delete el.dataset.loaded;
    if (this.selected < 0) {
      el.appendChild(h("p", { class: "hint" }, "Select a span to see its attributes, resource, events and links."));
      return;
    }
    const row = this.row(this.selected);
    el.dataset.spanId = row.id;
    if (row.placeholder) {
      append(el,
        h("h2", {}, "Missing parent"),
        h("p", { class: "notice warn" }, row.note),
        h("p", { class: "hint" }, "The span below it references this parent, but no span with this id reached the server. The findings above name the likely sender."),
        kv("Span id", row.id),
      );
      return;
    }
    const more = this.details.get(this.selected);
    const statusMessage = more && more.status_message;
    append(el,
      h("h2", {}, h("span", { class: "svc-dot", style: { background: serviceColour(row.service) } }), row.name),
      row.pending ? h("p", { class: "notice warn" }, h("strong", {}, "Incomplete"), ": this span was announced when it started and never ended.", row.note ? [h("br"), `Why: ${row.note}`] : null) : null,
      row.status === 2 ? h("p", { class: "notice bad" }, "Error", statusMessage ? `: ${statusMessage}` : "") : null,
      h(
        "dl",
        { class: "facts" },
        fact("Service", row.service),
        fact("Kind", KIND_LABEL[row.kind] ?? row.kind),
        fact("Status", row.pending ? "incomplete" : ["unset", "ok", "error"][row.status] ?? row.status),
        fact("Duration", row.pending ? "unknown: it never ended" : fmtDuration(row.end - row.start)),
        fact("Starts at", `+${fmtDuration(row.start)}`),
        fact("Span id", row.id),
        fact("Parent id", row.parent >= 0 ? this.data.columns.id[row.parent] : "—"),
        more && more.scope ? fact("Scope", more.scope) : null,
      ),
    );
    if (!more) el.appendChild(h("p", { class: "hint loading" }, "Loading attributes, events and links…"));
    else if (more.error) el.appendChild(h("p", { class: "notice bad" }, `Could not load this span's details: ${more.error}`));
    else {
      append(el,
        section("Attributes", table(more.attributes)),
        section(
          `Events (${more.events.length})`,
          more.events.length
            ? h("ol", { class: "events" }, more.events.map((ev) => h("li", {}, h("div", { class: "event-head" }, h("span", { class: "mono" }, `+${fmtDuration(ev.t)}`), " ", h("strong", {}, ev.name)), table(ev.attributes))))
            : null,
        ),
        section(`Links (${more.links.length})`, more.links.length ? h("ul", { class: "links" }, more.links.map((lk) => this.linkItem(lk.trace_id, lk.span_id, lk, table(lk.attributes)))) : null),
      );
      el.dataset.loaded = "1";
    }
    const from = this.linkedFrom.get(row.id) || [];
    if (from.length) el.appendChild(section(`Linked from (${from.length})`, h("ul", { class: "links backlinks" }, from.map((i) => this.linkItem(this.data.trace_id, this.data.columns.id[i], this.row(i))))));
    if (more && !more.error) el.appendChild(section("Resource", table(more.resource)));
  }

  // A link's target (or a backlink's source) by service and operation when known, then its ids.
  linkItem(traceId, spanId, known, body = null) {
    const here = traceId === this.data.trace_id;
    const target = here && !known.service ? this.byId.has(spanId) && this.row(this.byId.get(spanId)) : known;
    const label = target && target.service
      ? [h("span", { class: "svc-dot", style: { background: serviceColour(target.service) } }), h("span", { class: "svc" }, target.service), " ", h("span", { class: "op" }, target.name)]
      : [h("span", { class: "op" }, here ? "a span in this trace" : "a span in another trace")];
    return h(
      "li",
      {},
      h("a", { class: "span-link", href: this.spanHref(traceId, spanId), dataset: { traceId, spanId } }, label),
      h("div", { class: "mono dim link-ids" }, `${here ? "this trace" : `trace ${traceId.slice(0, 12)}…`} · span ${spanId}`),
      body,
    );
  }
}

function stat(label, value, cls = "") {
  return h("div", { class: `stat ${cls}` }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value));
}

function side(here, s) {
  if (!s) return h("span", { class: "side unknown" }, "no sender in this trace");
  return spanLink(here, s.span_id, `${s.service}: ${s.name}`);
}

// A link to a span of the trace on screen, keeping its clock-skew setting.
function spanLink(here, spanId, text) {
  return h("a", { class: "side", href: here.spanHref(here.data.trace_id, spanId) }, text);
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

function kv(label, value) {
  return h("dl", { class: "facts" }, fact(label, value));
}

function section(title, body) {
  return h("section", { class: "detail-section" }, h("h3", {}, title), body || h("p", { class: "hint" }, "none"));
}

function table(obj) {
  const keys = Object.keys(obj || {}).sort();
  if (!keys.length) return null;
  return h(
    "table",
    { class: "attrs" },
    h(
      "tbody",
      {},
      keys.map((k) => h("tr", {}, h("th", {}, breakable(k)), h("td", {}, valueText(obj[k])))),
    ),
  );
}

// An attribute key with line-break opportunities after its dots (service.name, http.route...).
function breakable(key) {
  return key.split(/(?<=\.)/).flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}
