"""The demo shop: small Starlette services, each run in its own process by `threadline demo`.

    browser -> web (the live order page, over a WebSocket) -> gateway
    gateway -> users -> auth                 users_db (SQLite)
    gateway -> orders -> inventory            orders_db, inventory_db (SQLite)
                      -> payments over gRPC (behind a circuit breaker; sometimes declines,
                                             fails, hangs)
                      -> a process pool (pricing, CPU-bound)
                      -> "order.created" on a multiprocessing queue -> worker process

Every service is instrumented with one line, ``tl.instrument(app)`` (payments, a gRPC server:
``tl.instrument()``); its database queries and gRPC calls are traced by the same call.
Everything else here is the shop itself. Run one with
``python -m threadline.demo.services NAME --fd FD --data DIR --peer NAME=URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import multiprocessing
import multiprocessing.process
import os
import random
import signal
import socket
import sqlite3
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any

import grpc
import httpx
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import threadline as tl
from threadline.boundaries import processes
from threadline.boundaries.mailboxes import Mailbox
from threadline.demo.breaker import CircuitBreaker, CircuitOpen
from threadline.demo.web import web_app

SERVICES = ("auth", "users", "inventory", "payments", "orders", "gateway", "web")
PEERS = {
    "gateway": ("users", "orders"),
    "users": ("auth",),
    "orders": ("inventory", "payments"),
    "web": ("gateway",),
}
TOPIC = "order.created"
WORKER = "worker"

# What payments does with its n-th charge: a fixed rhythm, so every run (and test) sees approvals,
# declines, processor failures, a timeout, and a burst of failures that opens the breaker.
PAYMENT_RHYTHM = (
    "approve", "approve", "decline", "approve", "fail", "approve", "timeout", "approve",
    "fail", "fail", "fail", "approve", "approve", "decline", "approve", "approve",
)  # fmt: skip
PAYMENT_TIMEOUT = 0.5  # orders gives payments this long
HANG = 1.5  # how long a "timeout" charge takes


class PaymentDeclined(Exception):
    """The card was declined: a business outcome, not a fault of the payments service."""


class PaymentUnavailable(Exception):
    """Payments failed or did not answer in time."""


class CardProcessorError(Exception):
    pass


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0))


# -- the data: one SQLite database per service that owns data ----------------------------------

DATABASES = {"users": "users_db", "orders": "orders_db", "inventory": "inventory_db"}
USERS = ("ada", "grace", "alan", "barbara", "edsger")
ITEMS = ("tea", "coffee", "cocoa")


def open_database(name: str, data: str) -> sqlite3.Connection:
    """The service's own database, made and filled on first use: ``<data>/<name>.sqlite``.
    Start-up is no request: its statements are not recorded (untraced())."""
    with untraced():
        return _open_database(name, data)


def _open_database(name: str, data: str) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(data, f"{DATABASES[name]}.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")  # a write is not an fsync: a demo, not a bank
    conn.execute("PRAGMA synchronous=NORMAL")
    cur = conn.cursor()
    if name == "users":
        cur.execute("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, tier TEXT)")
        cur.executemany("INSERT OR IGNORE INTO users VALUES (?, ?)", [(u, "gold") for u in USERS])
    elif name == "inventory":
        cur.execute("CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, left INTEGER)")
        cur.executemany("INSERT OR IGNORE INTO stock VALUES (?, 1000)", [(i,) for i in ITEMS])
    elif name == "orders":
        cur.execute(
            "CREATE TABLE IF NOT EXISTS orders "
            "(id TEXT PRIMARY KEY, user TEXT, item TEXT, qty INTEGER, amount REAL, status TEXT)"
        )
    return conn


# -- gRPC: payments' one method, its messages as JSON ------------------------------------------

CHARGE = "/shop.Payments/Charge"


def _encode(message: dict) -> bytes:
    return json.dumps(message).encode()


# -- the services ------------------------------------------------------------------------------


def auth_app(peers: dict[str, str]) -> Starlette:
    async def verify(request: Request) -> JSONResponse:
        user = request.query_params.get("user", "")
        with tl.span("check session", attributes={"enduser.id": user}):
            await asyncio.sleep(0.002)
        return JSONResponse({"user": user, "valid": True})

    return Starlette(routes=[Route("/verify", verify)])


def users_app(peers: dict[str, str], data: str) -> Starlette:
    state: dict[str, Any] = {}

    async def profile(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        r = await state["http"].get(f"{peers['auth']}/verify", params={"user": user})
        r.raise_for_status()
        cur = state["db"].cursor()
        cur.execute("SELECT tier FROM users WHERE name = ?", (user,))
        row = cur.fetchone()
        if row is None:
            return JSONResponse({"user": user, "status": "unknown user"}, 404)
        return JSONResponse({"user": user, "name": user.title(), "tier": row[0]})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["db"] = open_database("users", data)
        try:
            async with _client() as state["http"]:
                yield
        finally:
            state["db"].close()

    return Starlette(routes=[Route("/users/{user}", profile)], lifespan=lifespan)


def inventory_app(peers: dict[str, str], data: str) -> Starlette:
    state: dict[str, Any] = {}

    async def reserve(request: Request) -> JSONResponse:
        body = await request.json()
        item, qty = str(body["item"]), int(body["qty"])
        with tl.span("reserve stock", attributes={"shop.item": item, "shop.quantity": qty}):
            cur = state["db"].cursor()
            cur.execute("UPDATE stock SET left = left - ? WHERE item = ?", (qty, item))
            cur.execute("SELECT left FROM stock WHERE item = ?", (item,))
            row = cur.fetchone()
        if row is None:
            return JSONResponse({"item": item, "status": "unknown item"}, 404)
        return JSONResponse({"item": item, "reserved": qty, "left": row[0]})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["db"] = open_database("inventory", data)
        try:
            yield
        finally:
            state["db"].close()

    return Starlette(routes=[Route("/reserve", reserve, methods=["POST"])], lifespan=lifespan)


def payments_server() -> grpc.aio.Server:
    """Payments, a gRPC service: shop.Payments/Charge takes {order_id, amount} and answers
    {status, charge}; a decline is FAILED_PRECONDITION, a processor failure UNAVAILABLE."""
    charges = 0

    async def charge(body: dict, context: grpc.aio.ServicerContext) -> dict:
        nonlocal charges
        outcome = PAYMENT_RHYTHM[charges % len(PAYMENT_RHYTHM)]
        charges += 1
        attrs = {"shop.order_id": body["order_id"], "shop.amount": body["amount"]}
        try:
            with tl.span("authorize payment", attributes=attrs) as span:
                span.set_attribute("payment.outcome", outcome)
                if outcome == "decline":
                    raise PaymentDeclined(f"card declined for order {body['order_id']}")
                if outcome == "fail":
                    raise CardProcessorError("card processor unavailable")
                if outcome == "timeout":
                    await asyncio.sleep(HANG)  # the caller has given up by now
        except PaymentDeclined as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except CardProcessorError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return {"status": "approved", "charge": uuid.uuid4().hex[:12]}

    server = grpc.aio.server()
    method = grpc.unary_unary_rpc_method_handler(
        charge, request_deserializer=json.loads, response_serializer=_encode
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("shop.Payments", {"Charge": method}),)
    )
    return server


def price_order(item: str, qty: int) -> float:
    """The CPU-bound step, run in the orders process pool: a (deliberately slow) price."""
    digest = item.encode()
    for _ in range(20_000):
        digest = hashlib.sha256(digest).digest()
    return round(qty * (5 + digest[0] / 10), 2)


def work(queue: Any) -> None:
    """The worker process (configured by the processes boundary, as service "worker"): takes
    "order.created" messages until it gets None."""
    box = Mailbox(queue, TOPIC)
    while True:
        delivery = box.receive()
        if delivery.item is None:
            break
        with delivery as order:
            with tl.span("send confirmation", attributes={"shop.order_id": order["order_id"]}):
                hashlib.sha256(repr(order).encode()).hexdigest()
    tl.flush()


@contextlib.contextmanager
def untraced():
    """Start-up is no request: it runs under an unsampled context, so neither it nor what it
    hands off (the pool's warm-up task, the worker's lifetime) is recorded as a trace of its own.
    The worker still records every message it processes, in the trace that sent it."""
    unsampled = trace.SpanContext(
        random.getrandbits(127) | 1, random.getrandbits(63) | 1, False, trace.TraceFlags(0)
    )
    with trace.use_span(trace.NonRecordingSpan(unsampled)):
        yield


def _start_worker(queue: Any) -> BaseProcess:
    proc = multiprocessing.get_context("spawn").Process(
        target=work, args=(queue,), name=WORKER, daemon=True
    )
    processes.configure_children(service_name=WORKER)
    try:
        proc.start()
    finally:
        processes.configure_children()  # the pricing pool's workers stay "orders"
    return proc


def orders_app(peers: dict[str, str], data: str, *, cooldown: float) -> Starlette:
    breaker = CircuitBreaker("payments", failures=3, cooldown=cooldown)
    state: dict[str, Any] = {}

    async def charge(order_id: str, amount: float) -> dict:
        with tl.span("charge payment", attributes={"shop.order_id": order_id}):
            breaker.check()
            try:
                answer = await state["charge"](
                    {"order_id": order_id, "amount": amount}, timeout=PAYMENT_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    breaker.success()  # payments works: the card was declined
                    raise PaymentDeclined(exc.details()) from exc
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    breaker.failure("timed out")
                    raise PaymentUnavailable(
                        f"payments did not answer in {PAYMENT_TIMEOUT}s"
                    ) from exc
                breaker.failure(code.name)
                raise PaymentUnavailable(f"payments answered {code.name}") from exc
            breaker.success()
            return answer

    def record(order_id: str, body: dict, amount: float | None, status: str) -> None:
        state["db"].cursor().execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            (order_id, body["user"], str(body["item"]), int(body["qty"]), amount, status),
        )

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        order_id = uuid.uuid4().hex[:12]
        item, qty = str(body["item"]), int(body["qty"])
        try:
            with tl.span("place order", attributes={"shop.order_id": order_id}):
                r = await state["http"].post(
                    f"{peers['inventory']}/reserve", json={"item": item, "qty": qty}
                )
                r.raise_for_status()
                loop = asyncio.get_running_loop()
                amount = await loop.run_in_executor(state["pool"], price_order, item, qty)
                payment = await charge(order_id, amount)
                record(order_id, body, amount, "placed")
                state["box"].send({"order_id": order_id, "user": body["user"], "amount": amount})
        except PaymentDeclined as exc:
            record(order_id, body, None, "declined")
            return JSONResponse(
                {"order_id": order_id, "status": "declined", "reason": str(exc)}, 402
            )
        except PaymentUnavailable as exc:
            record(order_id, body, None, "failed")
            return JSONResponse({"order_id": order_id, "status": "failed", "reason": str(exc)}, 502)
        except CircuitOpen as exc:
            record(order_id, body, None, "unavailable")
            return JSONResponse(
                {"order_id": order_id, "status": "unavailable", "reason": str(exc)},
                503,
                headers={"Retry-After": str(math.ceil(exc.retry_after))},
            )
        return JSONResponse({"order_id": order_id, "status": "placed", "amount": amount, **payment})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        queue = multiprocessing.get_context("spawn").Queue()
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        channel = grpc.aio.insecure_channel(peers["payments"].removeprefix("grpc://"))
        charge = channel.unary_unary(
            CHARGE, request_serializer=_encode, response_deserializer=json.loads
        )
        db = open_database("orders", data)
        state.update(pool=pool, box=Mailbox(queue, TOPIC), charge=charge, db=db)
        with untraced():
            worker = _start_worker(queue)
            # Start the pool's process now: the first order should not pay for it.
            await asyncio.get_running_loop().run_in_executor(pool, math.sqrt, 4)
        try:
            async with _client() as state["http"]:
                yield
        finally:
            queue.put(None)  # untraced: the worker's signal to stop
            pool.shutdown(wait=True)
            worker.join(30)
            await channel.close()
            db.close()

    return Starlette(routes=[Route("/orders", create, methods=["POST"])], lifespan=lifespan)


def gateway_app(peers: dict[str, str]) -> Starlette:
    state: dict[str, httpx.AsyncClient] = {}

    async def checkout(request: Request) -> JSONResponse:
        q = request.query_params
        user, item, qty = q.get("user", "ada"), q.get("item", "tea"), int(q.get("qty", "1"))
        http = state["http"]
        r = await http.get(f"{peers['users']}/users/{user}")
        if r.status_code != 200:
            return JSONResponse({"status": "unknown user"}, 403)
        r = await http.post(
            f"{peers['orders']}/orders", json={"user": user, "item": item, "qty": qty}
        )
        headers = {"Retry-After": r.headers["retry-after"]} if "retry-after" in r.headers else None
        return JSONResponse(r.json(), r.status_code, headers=headers)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with _client() as state["http"]:
            yield

    return Starlette(
        routes=[Route("/checkout", checkout), Route("/healthz", health)], lifespan=lifespan
    )


def build(name: str, peers: dict[str, str], data: str, *, cooldown: float = 1.0) -> Starlette:
    if name == "orders":
        return orders_app(peers, data, cooldown=cooldown)
    if name in DATABASES:
        return {"users": users_app, "inventory": inventory_app}[name](peers, data)
    factory = {"auth": auth_app, "gateway": gateway_app, "web": web_app}[name]
    return factory(peers)


# -- one service process -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m threadline.demo.services")
    parser.add_argument("name", choices=SERVICES)
    parser.add_argument("--fd", type=int, help="listening socket to serve on (not payments)")
    parser.add_argument("--endpoint", required=True, help="OTLP/HTTP endpoint")
    parser.add_argument("--data", default=".", help="directory of the services' databases")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=URL")
    parser.add_argument("--cooldown", type=float, default=1.0)
    args = parser.parse_args(argv)
    peers = dict(p.split("=", 1) for p in args.peer)
    tl.configure(args.name, endpoint=args.endpoint, namespace="threadline-demo")
    try:
        if args.name == "payments":
            tl.instrument()  # gRPC servers made from now on
            asyncio.run(_serve_payments())
            return 0
        if args.fd is None:
            parser.error(f"{args.name} needs --fd")
        app = tl.instrument(build(args.name, peers, args.data, cooldown=args.cooldown))
        sock = socket.socket(fileno=args.fd)

        class Announced(uvicorn.Server):
            async def startup(self, sockets=None):
                await super().startup(sockets)
                print(f"ready {args.name}", flush=True)  # the demo waits for this line

            @contextlib.contextmanager
            def capture_signals(self):
                # uvicorn re-raises SIGTERM after a graceful shutdown, which would kill the
                # process before its spans are exported; stop gracefully and return instead.
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, self.handle_exit)
                yield

        server = Announced(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[sock])
    finally:
        tl.shutdown()
    return 0


async def _serve_payments() -> None:
    """Serve payments on a free loopback port, say which (``ready payments grpc://HOST:PORT``),
    and stop gracefully on SIGTERM or SIGINT."""
    server = payments_server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready payments grpc://127.0.0.1:{port}", flush=True)  # the demo waits for this line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=HANG)


if __name__ == "__main__":
    sys.exit(main())
