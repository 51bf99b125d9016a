"""CPU per round trip over a real WebSocket (uvicorn + the websockets client, loopback, both in
this process, so CPU time counts both ends and the export thread; wall time on a shared machine
would mostly measure the neighbours): a plain
Starlette echo, the same echo behind live.endpoint with a plain client (a process and a send span
per message), and with an enveloping client (context carried both ways in every message, as
the browser module does). Spans go through the batch processor to an exporter that drops them."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlencode

import uvicorn
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.sync.client import connect

import threadline as tl
from threadline.integrations import live

N = 2_000
ROUNDS = 3


class Discard(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


async def plain_echo(websocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


async def live_echo(sock, data):
    await sock.send_text(data)


def serve(app):
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # uvicorn offers no event to wait on
        time.sleep(0.01)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def per_round_trip(url: str, message: str) -> float:
    best = float("inf")
    with connect(url) as ws:
        for _ in range(ROUNDS):
            start = time.process_time()
            for _ in range(N):
                ws.send(message)
                ws.recv()
            tl.flush()
            best = min(best, (time.process_time() - start) / N * 1e6)
    return best


def run() -> list[dict]:
    tl.configure("bench", exporter=Discard())
    app = Starlette(
        routes=[
            WebSocketRoute("/plain", plain_echo),
            WebSocketRoute("/live", live.endpoint(live_echo)),
        ]
    )
    server, thread, port = serve(app)
    try:
        body = json.dumps({"type": "checkout", "item": "book"})
        base = per_round_trip(f"ws://127.0.0.1:{port}/plain", body)
        plain_client = per_round_trip(f"ws://127.0.0.1:{port}/live", body)
        with tl.span("client") as _:
            query = urlencode(tl.inject())
            envelope = json.dumps({**tl.inject(), "sent": time.time() * 1000, "data": body})
        enveloped = per_round_trip(f"ws://127.0.0.1:{port}/live?{query}", envelope)
    finally:
        server.should_exit = True
        thread.join(10)
        tl.shutdown()
    row = {"unit": "CPU us/round trip", "baseline": base, "ratio_to": "plain Starlette echo"}
    return [
        {"name": "websocket echo, plain Starlette", "value": base, "unit": "CPU us/round trip"},
        {**row, "name": "live.endpoint echo, plain client (2 spans/msg)", "value": plain_client},
        {**row, "name": "live.endpoint echo, enveloping client (2 spans/msg)", "value": enveloped},
    ]
