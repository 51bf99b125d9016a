// DOM building without markup strings. Everything that comes from spans goes through
// document.createTextNode / textContent; attributes are set one by one with setAttribute, and
// only hrefs this UI builds itself (#/...) are ever assigned. Nothing here parses HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") Object.assign(el.style, value); // CSSOM: allowed by the CSP
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "href") el.setAttribute("href", safeHref(value));
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

// Only in-app routes and same-origin API paths are ever links.
export function safeHref(value) {
  const s = String(value);
  return s.startsWith("#/") || s.startsWith("/api/") ? s : "#/";
}

// Append children (nodes, text, nested arrays; null/false skipped) to an existing element.
export function append(el, ...children) {
  return build(el, null, children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtDuration(ns) {
  const v = Number(ns);
  if (!Number.isFinite(v)) return "?";
  if (v < 1e3) return `${v.toFixed(0)} ns`;
  if (v < 1e6) return `${(v / 1e3).toFixed(v < 1e4 ? 2 : 1)} µs`;
  if (v < 1e9) return `${(v / 1e6).toFixed(v < 1e7 ? 2 : 1)} ms`;
  if (v < 60e9) return `${(v / 1e9).toFixed(2)} s`;
  return `${(v / 60e9).toFixed(1)} min`;
}

export function fmtTime(ns) {
  const d = new Date(Number(BigInt(ns) / 1000000n));
  return d.toLocaleString(undefined, { hour12: false, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// "15ms", "1.5s", "200us", "2m" -> nanoseconds; "" -> null; anything else -> NaN
export function parseDuration(text) {
  const t = String(text || "").trim();
  if (!t) return null;
  const m = /^(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)?$/.exec(t);
  if (!m) return NaN;
  const unit = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }[m[2] || "ms"];
  return Math.round(parseFloat(m[1]) * unit);
}

// One stable colour per service name.
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#86bcb6", "#8cd17d", "#a0cbe8", "#d4a6c8"];
const colours = new Map();
export function serviceColour(name) {
  if (!colours.has(name)) {
    let hash = 0;
    for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    colours.set(name, PALETTE[hash % PALETTE.length]);
  }
  return colours.get(name);
}

// Attribute values as text: strings as they are, everything else as JSON.
export function valueText(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = (body && (body.error || (body.errors && body.errors[0] && body.errors[0].msg))) || response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

export function message(text, kind = "info") {
  return h("div", { class: `message ${kind}` }, text);
}
