// Hash router: #/ search, #/trace/<id>?span=<id>, #/map, #/completeness. Each page module
// exports render(container, params) and may return a cleanup function.
import { clear, message } from "./dom.js";
import * as search from "./search.js";
import * as trace from "./trace.js";
import * as map from "./map.js";
import * as completeness from "./completeness.js";

const page = document.getElementById("page");
let cleanup = null;

export function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/").split("/").filter(Boolean);
  let module = search;
  let name = "search";
  if (parts[0] === "trace" && parts[1]) {
    module = trace;
    name = "trace";
    params.set("id", parts[1]);
  } else if (parts[0] === "map") {
    module = map;
    name = "map";
  } else if (parts[0] === "completeness") {
    module = completeness;
    name = "completeness";
  }
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  // the trace view follows links inside the trace it shows without re-rendering
  if (name === "trace" && trace.isShowing(params.get("id"))) {
    trace.focus(params.get("span"));
    return;
  }
  if (cleanup) cleanup();
  cleanup = null;
  clear(page);
  document.body.dataset.page = name;
  Promise.resolve(module.render(page, params))
    .then((fn) => {
      cleanup = typeof fn === "function" ? fn : null;
    })
    .catch((err) => {
      clear(page).appendChild(message(String(err.message || err), "error"));
    });
}

document.getElementById("jump").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.trace;
  const id = input.value.trim().toLowerCase();
  if (/^[0-9a-f]{1,32}$/.test(id)) location.hash = `#/trace/${id.padStart(32, "0")}`;
  else input.setCustomValidity("a trace id is up to 32 hex digits");
  input.reportValidity();
  input.setCustomValidity("");
});

window.addEventListener("hashchange", route);
route();
