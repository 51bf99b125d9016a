"""The tutorial's most common mistake, for real: a plain `pika` publish (no context) reaches a
threadline consumer on RabbitMQ whose queue a traced service also feeds. The consumer's span is a
root of its own; `threadline check`, the completeness API and the trace view name it."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import uuid

import pika
import pytest
from opentelemetry import trace

import threadline as tl
from threadline.cli import main
from threadline.integrations import rabbitmq
from threadline.server.client import Client
from threadline.server.serving import start

WAIT = 60

TRACED = """
import sys, pika, threadline as tl
from threadline.integrations import rabbitmq
tl.configure("shop", endpoint=sys.argv[1])
channel = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1")).channel()
with tl.span("checkout") as root:
    rabbitmq.publish(channel, "", sys.argv[2], b"traced")
print(format(root.get_span_context().trace_id, "032x"))
tl.shutdown()
"""

PLAIN = """
import sys, pika  # a program that knows nothing of tracing
channel = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1")).channel()
channel.basic_publish("", sys.argv[1], b"plain")
"""


def rabbitmq_is_up() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc}); scripts/system.sh starts it"
        )


def run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def dropped():
    """A server holding two traces of the consumer "orders" on one queue: one the traced "shop"
    sent, one a plain pika publish sent. Yields (server, queue, traced id, plain id)."""
    rabbitmq_is_up()
    queue = f"tl-test-dropped-{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    channel.queue_declare(queue)
    got: dict[bytes, str] = {}

    def on_message(ch, method, properties, body):
        got[body] = format(trace.get_current_span().get_span_context().trace_id, "032x")
        ch.basic_ack(method.delivery_tag)

    with start() as server:
        tl.configure("orders", endpoint=server.urls.otlp_http)
        try:
            channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue))
            traced = run(TRACED, server.urls.otlp_http, queue)
            run(PLAIN, queue)
            for _ in range(WAIT):
                if len(got) == 2:
                    break
                connection.process_data_events(time_limit=1)
            assert sorted(got) == [b"plain", b"traced"]
            assert got[b"traced"] == traced
            assert tl.flush()
            client = Client(server.urls.api)
            client.wait_for_trace(traced, 3, services=["shop", "orders"], connected=True)
            client.wait_for_trace(got[b"plain"], 1)
            yield server, queue, traced, got[b"plain"]
        finally:
            tl.shutdown()
            channel.queue_delete(queue)
            connection.close()


def test_the_plain_publish_is_a_root_of_its_own(dropped):
    server, queue, traced, plain = dropped
    (root,) = Client(server.urls.api).trace(plain)
    assert (root.name, root.service, root.parent_span_id, root.links) == (
        f"process {queue}",
        "orders",
        "",
        [],
    )


def test_completeness_names_the_dropped_context(dropped):
    server, queue, traced, plain = dropped
    c = Client(server.urls.api).get(
        "/api/threadline/analysis/completeness", lookback="15m", buckets=1
    )
    assert (c["traces"], c["one_root"], c["with_orphans"]) == (2, 2, 0)
    assert (c["with_dropped_context"], c["connected"], c["connected_share"]) == (1, 1, 0.5)
    assert c["broken_hops"] == []
    (hop,) = c["dropped_context"]
    assert {k: hop[k] for k in ("sender", "receiver", "destination", "kind", "count")} == {
        "sender": "?",
        "receiver": "orders",
        "destination": queue,
        "kind": "consumer",
        "count": 1,
    }
    assert hop["trace_ids"] == [plain]
    assert hop["example"] == (
        f"service 'orders' span 'process {queue}' (consumer) is a root: it arrived with no "
        f"context (the sender is not traced), while other messages from destination "
        f"{queue!r} reach 'orders' with context"
    )


def test_threadline_check_fails_naming_it(dropped, capsys):
    server, queue, traced, plain = dropped
    code = main(["check", "--since", "15m", "--server", server.urls.api])
    out = capsys.readouterr().out
    assert code == 1
    assert "dropped contexts" in out and queue in out and plain in out
    assert "untraced sender" in out
    assert out.splitlines()[-1] == "FAIL 50.00% of traces are connected; at least 99.00% required"


def test_the_trace_view_finds_it(dropped):
    server, queue, traced, plain = dropped
    client = Client(server.urls.api)
    view = client.get(f"/api/threadline/analysis/trace/{plain}")
    assert view["summary"]["dropped_context"] is True
    finding = view["dropped_context"]
    assert (finding["service"], finding["name"], finding["kind"], finding["destination"]) == (
        "orders",
        f"process {queue}",
        "consumer",
        queue,
    )
    whole = client.get(f"/api/threadline/analysis/trace/{traced}")
    assert whole["dropped_context"] is None
    assert whole["summary"]["dropped_context"] is False
