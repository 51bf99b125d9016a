/* threadline.js: browser spans that join the server's traces. No dependencies, no build step.
 *
 *   <meta name="traceparent" content="00-…">              written by the server at render
 *   <script src="/_threadline/threadline.js" data-endpoint="http://127.0.0.1:4318"
 *           data-service="shop-browser"></script>
 *   const ws = new Threadline.WebSocket("/live");         a WebSocket that carries context
 *   <button data-trace="checkout">Checkout</button>       click / submit / change are traced
 *
 * Spans: "page load" (child of the render), "connect <path>" (the session), one trace per
 * interaction ("click checkout", linked to the session, or its child with data-interactions=
 * "child"; a submit or change the click causes, as a submit button's, is its child), "send
 * <path>" / "process <path>" for every WebSocket message. A click counts on a marked element or
 * inside one; a submit or change only on the marked form or field itself. Traces the page starts
 * are sampled at data-sample-ratio, decided from the trace id as the server's sampler decides;
 * spans under the server's context follow its decision. Context rides on the
 * connect URL (?traceparent=) and inside every message (a JSON envelope). Spans are exported as
 * OTLP/HTTP JSON, batched, and flushed when the page is hidden. Client times are corrected
 * against server clock readings; the correction is kept in threadline.clock.correction_ns.
 */
(function (global) {
  "use strict";

  const VERSION = "0.1.0";
  const KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 };
  const doc = global.document;
  const script = doc && doc.currentScript;
  const data = (script && script.dataset) || {};

  const config = {
    endpoint: (data.endpoint || "http://127.0.0.1:4318").replace(/\/+$/, ""),
    service: data.service || "browser",
    interactions: data.interactions === "child" ? "child" : "link", // relation to the session
    events: (data.events || "click submit change").split(/\s+/).filter(Boolean),
    sampleRatio: ratio(data.sampleRatio),
    batchSize: 64,
    flushDelayMs: 1000,
  };

  function ratio(text) {
    const r = text === undefined || text === "" ? 1 : Number(text);
    return Number.isFinite(r) ? Math.min(1, Math.max(0, r)) : 1;
  }

  // -- ids and time ---------------------------------------------------------------------------

  function randomHex(bytes) {
    const buf = new Uint8Array(bytes);
    do global.crypto.getRandomValues(buf); while (buf.every((b) => b === 0)); // all-zero is invalid
    return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const perf = global.performance;
  const origin = () => perf.timeOrigin || Date.now() - perf.now(); // some fake clocks report 0
  const now = () => origin() + perf.now(); // epoch ms, sub-ms precision

  function nanos(ms) { // exact integer nanoseconds as a decimal string, as OTLP/JSON wants
    const whole = Math.floor(ms);
    return (BigInt(whole) * 1000000n + BigInt(Math.round((ms - whole) * 1e6))).toString();
  }

  // -- context --------------------------------------------------------------------------------

  const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

  function parseTraceparent(value, tracestate) {
    const m = TRACEPARENT.exec(String(value || "").trim());
    if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return null;
    const flags = parseInt(m[3], 16) & 0x03; // sampled, random (W3C Trace Context level 2)
    return { traceId: m[1], spanId: m[2], flags, sampled: (flags & 1) === 1, tracestate: tracestate || "" };
  }

  function meta(name) {
    const el = doc && doc.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : null;
  }

  const rendered = parseTraceparent(meta("traceparent"), meta("tracestate")); // the server's render span
  let current = null; // the span whose context a send made right now continues

  function withCurrent(span, fn) {
    const previous = current;
    current = span;
    try { return fn(); } finally { current = previous; }
  }

  // -- sampling: one decision per trace, the same one the SDK's TraceIdRatioBased makes ---------

  function sampledByRatio(traceId) { // the id's low 64 bits against ratio x 2^64
    if (config.sampleRatio >= 1) return true;
    if (config.sampleRatio <= 0) return false;
    return BigInt("0x" + traceId.slice(16)) < BigInt(Math.round(config.sampleRatio * 2 ** 64));
  }

  // -- spans ----------------------------------------------------------------------------------

  class Span {
    constructor(name, { kind = "internal", parent = null, links = [], attributes = {}, start } = {}) {
      this.name = name;
      this.kind = KIND[kind] || 1;
      this.traceId = parent ? parent.traceId : randomHex(16);
      this.spanId = randomHex(8);
      this.parentSpanId = parent ? parent.spanId : "";
      // a new trace: its ids are random (say so), and it is sampled or not, once, here
      this.flags = parent ? parent.flags : 0x02 | (sampledByRatio(this.traceId) ? 1 : 0);
      this.sampled = (this.flags & 1) === 1;
      this.tracestate = parent ? parent.tracestate || "" : "";
      this.links = links.filter(Boolean).map((l) => ({ traceId: l.traceId, spanId: l.spanId, attributes: l.attributes || {} }));
      this.attributes = Object.assign({}, attributes);
      this.events = [];
      this.status = null;
      this.start = start === undefined ? now() : start;
      this.endTime = null;
    }
    get traceparent() { return "00-" + this.traceId + "-" + this.spanId + "-0" + this.flags; }
    carrier() {
      const c = { traceparent: this.traceparent };
      if (this.tracestate) c.tracestate = this.tracestate;
      return c;
    }
    setAttribute(key, value) { this.attributes[key] = value; return this; }
    addEvent(name, attributes, time) { this.events.push({ name, attributes: attributes || {}, time: time === undefined ? now() : time }); return this; }
    setError(message) { this.status = { code: 2, message: String(message || "") }; return this; }
    end(time) {
      if (this.endTime !== null) return;
      this.endTime = time === undefined ? now() : time;
      if (this.sampled) exporter.add(this);
    }
  }

  // -- clock: offset of the server clock from ours, from request/response pairs ---------------
  // t0 client send, t1 server receive, t2 server send, t3 client receive (NTP's four stamps).
  // The pair with the shortest round trip bounds the error best, so it wins.

  const clock = {
    offset: 0, delay: Infinity, samples: 0,
    sample(t0, t1, t2, t3) {
      if (![t0, t1, t2, t3].every(Number.isFinite)) return;
      const delay = Math.max(0, (t3 - t0) - (t2 - t1));
      this.samples += 1;
      if (delay <= this.delay) {
        this.delay = delay;
        this.offset = ((t1 - t0) + (t2 - t3)) / 2;
      }
    },
    get known() { return this.samples > 0; },
  };

  function sampleNavigation() { // the page request itself: its timing against the server's stamps
    const stamps = String(meta("threadline-clock") || "").split(/\s+/).map(Number);
    const nav = perf.getEntriesByType && perf.getEntriesByType("navigation")[0];
    if (stamps.length !== 2 || !nav || !nav.requestStart || !nav.responseStart) return;
    clock.sample(origin() + nav.requestStart, stamps[0], stamps[1], origin() + nav.responseStart);
  }

  // -- export: OTLP/HTTP JSON, batched, flushed on page hide ---------------------------------

  function anyValue(v) {
    if (typeof v === "boolean") return { boolValue: v };
    if (typeof v === "number") return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
    if (typeof v === "bigint") return { intValue: v.toString() };
    if (Array.isArray(v)) return { arrayValue: { values: v.map(anyValue) } };
    return { stringValue: String(v) };
  }

  const kvs = (obj) => Object.keys(obj).filter((k) => obj[k] !== undefined && obj[k] !== null)
    .map((key) => ({ key, value: anyValue(obj[key]) }));

  function encode(span) {
    const shift = clock.known ? clock.offset : 0; // place our times on the server's clock
    const attributes = Object.assign({}, span.attributes);
    if (clock.known) {
      attributes["threadline.clock.correction_ns"] = BigInt(Math.round(shift * 1e6));
      attributes["threadline.clock.uncertainty_ns"] = BigInt(Math.round((clock.delay / 2) * 1e6));
    }
    const out = {
      traceId: span.traceId,
      spanId: span.spanId,
      name: span.name,
      kind: span.kind,
      startTimeUnixNano: nanos(span.start + shift),
      endTimeUnixNano: nanos(span.endTime + shift),
      attributes: kvs(attributes),
      events: span.events.map((e) => ({ name: e.name, timeUnixNano: nanos(e.time + shift), attributes: kvs(e.attributes) })),
      links: span.links.map((l) => ({ traceId: l.traceId, spanId: l.spanId, attributes: kvs(l.attributes) })),
      status: span.status || { code: 0 },
    };
    if (span.parentSpanId) out.parentSpanId = span.parentSpanId;
    if (span.tracestate) out.traceState = span.tracestate;
    return out;
  }

  const exporter = {
    queue: [], timer: null, stats: { exported: 0, failed: 0 }, warned: false,
    add(span) {
      this.queue.push(span);
      if (this.queue.length >= config.batchSize) this.flush();
      else if (!this.timer) this.timer = setTimeout(() => this.flush(), config.flushDelayMs);
    },
    body(spans) {
      const resource = { "service.name": config.service, "telemetry.sdk.name": "threadline.js",
        "telemetry.sdk.language": "webjs", "telemetry.sdk.version": VERSION,
        "user_agent.original": global.navigator ? global.navigator.userAgent : undefined };
      return JSON.stringify({ resourceSpans: [{ resource: { attributes: kvs(resource) },
        scopeSpans: [{ scope: { name: "threadline.js", version: VERSION }, spans: spans.map(encode) }] }] });
    },
    send(spans) { // keepalive requests may carry 64 KiB at most: halve a batch until it fits
      const body = this.body(spans);
      if (body.length > 60000 && spans.length > 1) {
        const half = Math.ceil(spans.length / 2);
        return Promise.all([this.send(spans.slice(0, half)), this.send(spans.slice(half))]);
      }
      return global.fetch(config.endpoint + "/v1/traces", {
        method: "POST", body, keepalive: true, mode: "cors", headers: { "Content-Type": "application/json" },
      }).then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        this.stats.exported += spans.length;
      }).catch((err) => { // tracing never breaks the page: count, warn once
        this.stats.failed += spans.length;
        if (!this.warned) { this.warned = true; console.warn("threadline: export failed:", err); }
      });
    },
    flush() {
      clearTimeout(this.timer);
      this.timer = null;
      const spans = this.queue.splice(0);
      return spans.length ? this.send(spans) : Promise.resolve();
    },
  };

  // -- page load ------------------------------------------------------------------------------

  let pageLoad = null; // ended at load, but its context parents what the page starts afterwards

  function recordPageLoad() {
    sampleNavigation();
    const nav = perf.getEntriesByType("navigation")[0];
    const at = (ms) => origin() + ms;
    pageLoad = new Span("page load", { parent: rendered, start: at(nav ? nav.startTime : 0),
      attributes: { "url.full": global.location.href, "threadline.render.traced": !!rendered } });
    if (nav) {
      for (const mark of ["fetchStart", "requestStart", "responseStart", "responseEnd", "domInteractive",
        "domContentLoadedEventEnd", "loadEventStart"]) {
        if (nav[mark]) pageLoad.addEvent(mark, {}, at(nav[mark]));
      }
    }
    pageLoad.end(nav && nav.loadEventEnd ? at(nav.loadEventEnd) : now());
  }

  if (doc) {
    if (doc.readyState === "complete") setTimeout(recordPageLoad, 0);
    else global.addEventListener("load", () => setTimeout(recordPageLoad, 0)); // after loadEventEnd is set
  }

  // -- interactions on elements marked data-trace ---------------------------------------------

  let session = null; // the connect span of the latest live socket
  let interaction = null; // the interaction being handled in this task, and what it caused

  function tracedTarget(event) { // a click inside a marked element counts (an icon in a button)
    const el = event.target;
    if (!el || !el.closest) return null;
    if (event.type === "click") return el.closest("[data-trace]");
    return el.hasAttribute("data-trace") ? el : null;
  }

  function onInteraction(event) {
    const target = tracedTarget(event);
    if (!target) return;
    const label = target.getAttribute("data-trace") || target.tagName.toLowerCase();
    const attributes = { "event.type": event.type, "threadline.target": label,
      "html.element": target.tagName.toLowerCase(), "html.id": target.id || undefined };
    let parent = interaction; // a submit or change dispatched while a click is handled: its cause
    let links = [];
    if (session) {
      attributes["threadline.session.id"] = session.spanId;
      const sessionLink = { traceId: session.traceId, spanId: session.spanId, attributes: { "threadline.link": "session" } };
      if (!parent && config.interactions === "child") parent = session;
      else if (!parent) links = [sessionLink];
    }
    const span = new Span(event.type + " " + label, { parent, links, attributes });
    // Listeners of this event run synchronously after this one, so anything they send belongs
    // to the interaction; it ends (after what it caused) once the task has been handled.
    current = span;
    if (interaction) {
      interaction.caused.push(span);
      return;
    }
    interaction = span;
    span.caused = [];
    setTimeout(() => {
      interaction = null;
      if (current === span || span.caused.includes(current)) current = null;
      for (const effect of span.caused) effect.end();
      span.end();
    }, 0);
  }

  if (doc) for (const type of config.events) doc.addEventListener(type, onInteraction, true);

  // -- WebSocket that carries context on connect and inside every message ---------------------

  function envelope(payload, span) { // text: a JSON object; binary: a JSON header line, then the bytes
    const head = Object.assign(span.carrier(), { sent: now() });
    if (typeof payload === "string") return JSON.stringify(Object.assign(head, { data: payload }));
    return new Blob([JSON.stringify(head) + "\n", payload]);
  }

  function unwrap(raw) { // -> { head, payload }; plain frames from an uninstrumented server pass as they are
    try {
      if (typeof raw === "string") {
        const obj = JSON.parse(raw);
        if (obj && typeof obj === "object" && typeof obj.traceparent === "string" && "data" in obj) {
          const payload = obj.data;
          delete obj.data;
          return { head: obj, payload };
        }
      } else {
        const bytes = new Uint8Array(raw);
        const nl = bytes.indexOf(10);
        if (nl > 0 && bytes[0] === 123) {
          const head = JSON.parse(new TextDecoder().decode(bytes.subarray(0, nl)));
          if (head && typeof head.traceparent === "string") return { head, payload: raw.slice(nl + 1) };
        }
      }
    } catch (_) { /* not an envelope */ }
    return { head: null, payload: raw };
  }

  const size = (p) => (typeof p === "string" ? new TextEncoder().encode(p).length : p.byteLength || p.size || 0);

  class LiveSocket extends EventTarget {
    constructor(url, protocols) {
      super();
      const u = new URL(url, global.location.href);
      if (u.protocol === "http:") u.protocol = "ws:";
      if (u.protocol === "https:") u.protocol = "wss:";
      this.path = u.pathname;
      this.binaryType = "blob";
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      this.session = new Span("connect " + this.path, { kind: "client", parent: pageLoad || rendered,
        attributes: { "network.protocol.name": "websocket", "url.path": this.path } });
      this.session.setAttribute("threadline.session.id", this.session.spanId);
      session = this.session;
      for (const [k, v] of Object.entries(this.session.carrier())) u.searchParams.set(k, v);
      this.url = u.toString();
      const ws = protocols === undefined ? new global.WebSocket(this.url) : new global.WebSocket(this.url, protocols);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.addEventListener("open", () => { this.session.end(); this._dispatch(new Event("open")); });
      ws.addEventListener("error", () => {
        if (this.session.endTime === null) this.session.setError("connection failed").end();
        this._dispatch(new Event("error"));
      });
      ws.addEventListener("close", (e) => {
        if (this.session.endTime === null) this.session.setError("closed " + e.code).end();
        this._dispatch(new CloseEvent("close", { code: e.code, reason: e.reason, wasClean: e.wasClean }));
      });
      ws.addEventListener("message", (e) => this._receive(e.data));
    }

    get readyState() { return this.ws.readyState; }
    get protocol() { return this.ws.protocol; }
    get extensions() { return this.ws.extensions; }
    get bufferedAmount() { return this.ws.bufferedAmount; }

    _attributes(operation, payload) {
      return { "messaging.system": "websocket", "messaging.destination.name": this.path,
        "messaging.operation.type": operation, "messaging.message.body.size": size(payload),
        "threadline.session.id": this.session.spanId };
    }

    _sessionRelation() { // where a message with no interaction around it belongs
      const sid = this.session.spanId;
      if (config.interactions === "child") return { parent: this.session, links: [] };
      return { parent: null, links: [{ traceId: this.session.traceId, spanId: sid, attributes: { "threadline.link": "session" } }] };
    }

    send(payload) {
      const relation = current ? { parent: current, links: [] } : this._sessionRelation();
      const span = new Span("send " + this.path, Object.assign(relation, { kind: "producer",
        attributes: this._attributes("send", payload) }));
      try {
        this.ws.send(envelope(payload, span));
      } catch (err) {
        span.setError(err && err.message);
        throw err;
      } finally {
        span.end();
      }
    }

    close(code, reason) { this.ws.close(code, reason); }

    _receive(raw) {
      const received = now();
      const { head, payload } = unwrap(raw);
      if (head && Array.isArray(head.clock) && head.clock.length === 3) clock.sample(head.clock[0], head.clock[1], head.clock[2], received);
      const parent = head ? parseTraceparent(head.traceparent, head.tracestate) : null;
      const relation = parent ? { parent, links: [] } : this._sessionRelation();
      const data = typeof payload === "string" || this.binaryType !== "blob" ? payload : new Blob([payload]);
      const span = new Span("process " + this.path, Object.assign(relation, { kind: "consumer", start: received,
        attributes: this._attributes("process", payload) }));
      try {
        withCurrent(span, () => this._dispatch(new MessageEvent("message", { data, origin: new URL(this.url).origin })));
      } finally {
        span.end();
      }
    }

    _dispatch(event) {
      const handler = this["on" + event.type];
      if (typeof handler === "function") {
        try { handler.call(this, event); } catch (err) { setTimeout(() => { throw err; }, 0); }
      }
      this.dispatchEvent(event);
    }
  }

  for (const [name, value] of Object.entries({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 })) {
    LiveSocket[name] = value;
    LiveSocket.prototype[name] = value;
  }

  // -- flush when the page goes away ----------------------------------------------------------

  if (doc) {
    doc.addEventListener("visibilitychange", () => { if (doc.visibilityState === "hidden") exporter.flush(); });
    global.addEventListener("pagehide", () => exporter.flush());
  }

  global.Threadline = {
    version: VERSION,
    config,
    clock,
    WebSocket: LiveSocket,
    Span,
    get current() { return current; },
    get session() { return session; },
    get pageLoad() { return pageLoad; },
    startSpan: (name, options) => new Span(name, Object.assign({ parent: current || pageLoad || rendered }, options)),
    withSpan: withCurrent,
    flush: () => exporter.flush(),
    stats: exporter.stats,
  };
})(window);
