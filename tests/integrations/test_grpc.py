"""tl.instrument() and gRPC: a real server on a loopback port, sync (grpc.server) and asyncio
(grpc.aio.server), called through a channel made after tl.instrument(); the client's CLIENT span
and the server's SERVER span are one trace, the server's a child of the client's."""

from __future__ import annotations

import asyncio
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest

import threadline as tl
from threadline.integrations import databases
from threadline.testing import hex_ids

SERVICE = "shop.Payments"
RPC = {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.grpc.status_code": 0}


@pytest.fixture
def instrumented(monkeypatch):
    monkeypatch.delenv(databases.OPT_IN, raising=False)
    tl.instrument()
    yield
    tl.uninstrument()


def charge(request: bytes, context) -> bytes:
    with tl.span("charge card", attributes={"amount": request.decode()}):
        return b"paid " + request


def receipts(request: bytes, context):
    yield from (b"book", b"pen")


async def charge_aio(request: bytes, context) -> bytes:
    with tl.span("charge card", attributes={"amount": request.decode()}):
        return b"paid " + request


def rpc_attributes(span) -> dict:
    return {k: span.attributes.get(k) for k in (*RPC, "rpc.method")}


def assert_call(traces, root, method: str) -> None:
    """root -> CLIENT /shop.Payments/<method> -> SERVER of the same name, one trace."""
    trace_id, root_id = hex_ids(root)
    t = traces.trace(trace_id)
    t.assert_connected()
    name = f"/{SERVICE}/{method}"
    calls = t.find_all(name)
    client = [s for s in calls if s.kind == "CLIENT"]
    server = [s for s in calls if s.kind == "SERVER"]
    assert [(s.parent_id, s.service) for s in client] == [(root_id, "tests")], t.tree()
    assert [(s.parent_id, s.service) for s in server] == [(client[0].span_id, "tests")], t.tree()
    expected = dict(RPC, **{"rpc.method": method})
    assert rpc_attributes(client[0]) == rpc_attributes(server[0]) == expected
    if method == "Charge":
        assert [(s.parent_id, s.attributes["amount"]) for s in t.find_all("charge card")] == [
            (server[0].span_id, "9.5")
        ]


@contextmanager
def serving(handler, workers: int = 1):
    """A real gRPC server on a free loopback port, serving ``handler``: the port."""
    server = grpc.server(futures.ThreadPoolExecutor(workers))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


def test_sync_unary_and_streaming_calls_continue_the_trace(traces, instrumented):
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Charge": grpc.unary_unary_rpc_method_handler(charge),
            "Receipts": grpc.unary_stream_rpc_method_handler(receipts),
        },
    )
    with serving(handler, workers=2) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with tl.span("checkout") as unary:
            paid = channel.unary_unary(f"/{SERVICE}/Charge")(b"9.5", timeout=10)
        with tl.span("receipts") as streaming:
            lines = list(channel.unary_stream(f"/{SERVICE}/Receipts")(b"", timeout=10))
    assert (paid, lines) == (b"paid 9.5", [b"book", b"pen"])
    traces.wait_for(lambda spans: sum(s.kind == "SERVER" for s in spans) == 2)
    assert_call(traces, unary, "Charge")
    assert_call(traces, streaming, "Receipts")
    assert hex_ids(unary)[0] != hex_ids(streaming)[0]


def test_aio_unary_call_continues_the_trace(traces, instrumented):
    async def main():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {"Charge": grpc.unary_unary_rpc_method_handler(charge_aio)}
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with tl.span("checkout") as root:
                    paid = await channel.unary_unary(f"/{SERVICE}/Charge")(b"9.5", timeout=10)
        finally:
            await server.stop(None)
        return root, paid

    root, paid = asyncio.run(main())
    assert paid == b"paid 9.5"
    traces.wait_for(lambda spans: any(s.kind == "SERVER" for s in spans))
    assert_call(traces, root, "Charge")


def test_otlp_exports_over_grpc_are_not_traced(traces, instrumented):
    """A call to OTLP's own trace service (an exporter's) makes no span: the filter leaves it
    out, or spans about sending spans would never end."""
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(lambda request, context: b"")},
    )
    with serving(handler) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with tl.span("export"):
            path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            assert channel.unary_unary(path)(b"", timeout=10) == b""
    assert [s.name for s in traces.settle(quiet=0.3)] == ["export"]
