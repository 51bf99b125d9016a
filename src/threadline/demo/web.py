"""The demo's live order page: rendered once, then living on a WebSocket.

    browser: click "Checkout" ─ WebSocket message ─► web ─► gateway ─► users, orders ─► inventory,
    payments ─► the status pushed back over the socket ─► browser

The page carries the render's context (``live.head``); the browser module traces the click and
every message; the web service runs each message under the browser's span and calls the gateway
over HTTP, so one trace runs from the click to the inventory service and back.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

from threadline.demo.outcome import Outcome
from threadline.integrations import live

ITEMS = ("tea", "coffee", "cocoa")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>threadline shop</title>
__HEAD__
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; color: #222; }
  form { display: flex; gap: .5rem; align-items: end; flex-wrap: wrap; }
  label { display: grid; font-size: .85rem; color: #555; }
  button { padding: .4rem 1.2rem; font-size: 1rem; }
  #log { list-style: none; padding: 0; } #log li { padding: .3rem 0; border-bottom: 1px solid #eee; }
  .trace { font-family: ui-monospace, monospace; color: #888; font-size: .8rem; }
</style></head>
<body>
  <h1>threadline shop</h1>
  <form id="order" onsubmit="return false">
    <label>customer <input name="user" value="ada" data-trace="customer"></label>
    <label>item <select name="item" data-trace="item">__OPTIONS__</select></label>
    <label>qty <input name="qty" type="number" min="1" max="9" value="1"></label>
    <button id="checkout" type="button" data-trace="checkout" disabled>Checkout</button>
  </form>
  <ul id="log"></ul>
  <script>
    const form = document.getElementById("order");
    const button = document.getElementById("checkout");
    const log = document.getElementById("log");
    const ws = new Threadline.WebSocket("/live");
    const lines = new Map();  // order request id -> its line in the log
    let next = 0;
    ws.addEventListener("open", () => { button.disabled = false; });
    button.addEventListener("click", () => {
      const id = String(++next);
      const line = document.createElement("li");
      const trace = document.createElement("span");
      trace.className = "trace";
      trace.textContent = " trace " + Threadline.current.traceId;
      line.append(document.createElement("span"), trace);
      lines.set(id, line);
      log.prepend(line);
      const order = Object.fromEntries(new FormData(form));
      ws.send(JSON.stringify(Object.assign(order, { id })));
    });
    ws.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      const line = lines.get(msg.id);
      if (!line) return;
      line.firstChild.textContent = msg.text;  // text, never markup
      line.dataset.status = msg.status;
    });
  </script>
</body></html>
"""


def page_html() -> str:
    options = "".join(f"<option>{item}</option>" for item in ITEMS)
    head = live.head(service="web-browser")  # the browser exports where this service does
    return PAGE.replace("__HEAD__", head).replace("__OPTIONS__", options)


def _order(data: str | bytes) -> dict[str, Any]:
    order = json.loads(data)
    if not isinstance(order, dict):
        raise ValueError("an order is a JSON object")
    return {
        "id": str(order.get("id", "")),
        "user": str(order.get("user") or "ada"),
        "item": str(order.get("item") or ITEMS[0]),
        "qty": max(1, min(9, int(order.get("qty") or 1))),
    }


def web_app(peers: dict[str, str]) -> Starlette:
    state: dict[str, httpx.AsyncClient] = {}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(page_html())

    async def on_message(sock: live.LiveSocket, data: str | bytes) -> None:
        try:
            order = _order(data)
        except (ValueError, TypeError) as exc:
            await sock.send_json({"id": "", "status": "rejected", "text": f"bad order: {exc}"})
            return
        what = f"{order['qty']} × {order['item']} for {order['user']}"
        await sock.send_json({"id": order["id"], "status": "placing", "text": f"placing {what}…"})
        params = {k: order[k] for k in ("user", "item", "qty")}
        r = await state["http"].get(f"{peers['gateway']}/checkout", params=params)
        outcome = Outcome(r.status_code, r.json(), None)
        text = f"{what}: {outcome.label}"
        if outcome.body.get("reason"):
            text += f" ({outcome.body['reason']})"
        await sock.send_json({"id": order["id"], "status": outcome.label, "text": text})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as state["http"]:
            yield

    return Starlette(
        routes=[
            Route("/", page),
            live.script_route(),
            WebSocketRoute("/live", live.endpoint(on_message)),
        ],
        lifespan=lifespan,
    )
