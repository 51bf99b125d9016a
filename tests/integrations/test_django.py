"""Django under tl.instrument(), served by uvicorn in its own OS process (django_shop.server):
a request, an ORM query on SQLite, an outgoing httpx call to a price service and a Celery task
run by a real worker against Redis are one trace."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import redis
from brokers import unique
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_celery import worker

import threadline as tl
from local_services import require
from threadline.integrations import databases
from threadline.testing import hex_ids

HERE = Path(__file__).parent


@pytest.fixture
def queue():
    require(6379, "Redis")
    name = unique("django")
    yield name
    r = redis.Redis(host="127.0.0.1", db=15)
    r.delete(name, *r.keys(f"_kombu.binding*.{name}"))


@pytest.fixture
def prices(serve_asgi, monkeypatch):
    """The price service: an instrumented Starlette app in the test process (service "tests"),
    with the test's httpx instrumented as well."""
    monkeypatch.delenv(databases.OPT_IN, raising=False)

    async def price(request):
        return JSONResponse({"price": 9.5})

    app = tl.instrument(Starlette(routes=[Route("/price", price)]))
    try:
        with serve_asgi(app) as url:
            yield url
    finally:
        tl.uninstrument()


class Shop:
    """``python -m django_shop.server``: the Django project on uvicorn, exporting to the test's
    collector, its Celery tasks going to ``queue``."""

    def __init__(self, traces, queue: str, prices: str, db: str, output) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_"))}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=traces.endpoint,
            THREADLINE_CELERY_QUEUE=queue,
            DJANGO_SHOP_PRICES=prices,
            DJANGO_SHOP_DB=db,
        )
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.output = output
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django_shop.server"],
            cwd=HERE,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=output,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise AssertionError(f"the Django server did not start: {line!r}\n{self.log()}")
        self.url = f"http://127.0.0.1:{line}"

    def stop(self) -> int:
        """Closes its stdin: the server stops serving, flushes its spans and exits."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log(self) -> str:
        self.output.seek(0)
        return self.output.read()[-4000:]


def test_request_orm_httpx_and_celery_are_one_trace(traces, queue, prices, tmp_path):
    with tempfile.TemporaryFile("w+") as output:
        shop = Shop(traces, queue, prices, str(tmp_path / "shop.db"), output)
        try:
            with worker(traces, queue, "--concurrency=1"):
                with tl.span("checkout") as root:
                    r = httpx.get(f"{shop.url}/checkout/book", timeout=30)
                assert r.status_code == 200, shop.log()
                traces.wait_for(
                    lambda spans: any(s.name == "add" and not s.pending for s in spans), 40
                )
        finally:
            assert shop.stop() == 0, shop.log()
    body = r.json()
    assert (body["orders"], body["price"]) == (2, 9.5)
    trace_id, root_id = hex_ids(root)
    traces.wait_for(lambda spans: any(s.name == "GET checkout/<str:item>" for s in spans))
    t = traces.trace(trace_id)
    t.assert_connected()

    [call] = [s for s in t if s.kind == "CLIENT" and s.service == "tests"]
    assert (call.name, call.parent_id) == ("GET", root_id)
    server = t.find("GET checkout/<str:item>")
    assert (server.kind, server.service, server.parent_id) == ("SERVER", "shop", call.span_id)
    assert server.attributes["http.route"] == "checkout/<str:item>"
    assert server.attributes["http.status_code"] == 200

    under = sorted(t.children(server), key=lambda s: s.start_ns)
    assert [(s.name, s.kind, s.service) for s in under] == [
        ("SELECT", "CLIENT", "shop"),
        ("GET", "CLIENT", "shop"),
        ("apply_async/celery_tasks.add", "PRODUCER", "shop"),
    ]
    query, price_call, send = under
    assert {k: query.attributes.get(k) for k in ("db.system.name", "db.operation.name")} == {
        "db.system.name": "sqlite",
        "db.operation.name": "SELECT",
    }
    assert query.attributes["db.query.text"] == (
        'SELECT COUNT(*) AS "__count" FROM "django_shop_order" '
        'WHERE "django_shop_order"."item" = %s'
    )
    priced = t.find("GET /price")
    assert (priced.kind, priced.service, priced.parent_id) == (
        "SERVER",
        "tests",
        price_call.span_id,
    )
    run = t.find("run/celery_tasks.add")
    assert (run.kind, run.service, run.parent_id) == ("CONSUMER", "celery_tasks", send.span_id)
    add = t.find("add")
    assert (add.parent_id, add.attributes["x"], add.attributes["y"]) == (run.span_id, 2, 9.5)
    assert len(t) == 9  # checkout, 2 HTTP clients, 2 servers, the query, send, run, add
    assert t.services() == {"tests", "shop", "celery_tasks"}
