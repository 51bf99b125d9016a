"""Propagators other than W3C, chosen with OTEL_PROPAGATORS: B3 (single and multi-header) and a
team's own, registered as an `opentelemetry_propagator` entry point as a package would, carried
across a process pool and a RabbitMQ queue in one trace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WAIT = 120

TEAM_PROPAGATOR = '''
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators import textmap

HEADER = "x-team-context"


class TeamPropagator(textmap.TextMapPropagator):
    """trace id, span id and flags in one header of our own: "<trace>.<span>.<flags>"."""

    def extract(self, carrier, context=None, getter=textmap.default_getter):
        context = Context() if context is None else context
        values = getter.get(carrier, HEADER)
        if not values:
            return context
        try:
            t, s, f = values[0].split(".")
            sc = trace.SpanContext(int(t, 16), int(s, 16), True, trace.TraceFlags(int(f, 16)))
        except ValueError:
            return context
        return trace.set_span_in_context(trace.NonRecordingSpan(sc), context)

    def inject(self, carrier, context=None, setter=textmap.default_setter):
        sc = trace.get_current_span(context).get_span_context()
        if sc.is_valid:
            value = f"{sc.trace_id:032x}.{sc.span_id:016x}.{int(sc.trace_flags):02x}"
            setter.set(carrier, HEADER, value)

    @property
    def fields(self):
        return {HEADER}
'''

WORK = """
import threadline as tl

def price(item):
    with tl.span("price", attributes={"item": item}):
        return 9.5
"""

APP = """
import json, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
import pika
import threadline as tl
from threadline.integrations import rabbitmq
from work import price

if __name__ == "__main__":
    tl.configure("prop-app", endpoint=sys.argv[1])
    queue = sys.argv[2]
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    channel.queue_declare(queue)
    seen = []

    def on_message(ch, method, properties, body):
        with tl.span("handle"):
            seen.append(sorted(properties.headers or {}))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, rabbitmq.consumer(on_message, queue=queue))
    spawn = multiprocessing.get_context("spawn")
    with tl.span("checkout") as root:
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            assert pool.submit(price, "book").result() == 9.5
        rabbitmq.publish(channel, "", queue, b"order")
    while not seen:
        connection.process_data_events(time_limit=1)
    channel.queue_delete(queue)
    connection.close()
    print(json.dumps({"trace_id": format(root.get_span_context().trace_id, "032x"),
                      "headers": seen[0], "carrier": sorted(tl.capture().carrier)}))
    tl.shutdown()
"""


@pytest.fixture
def programs(tmp_path):
    """The app, its pool's module, and the team's propagator installed as a distribution."""
    (tmp_path / "teamprop.py").write_text(TEAM_PROPAGATOR)
    info = tmp_path / "teamprop-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: teamprop\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_propagator]\nteam = teamprop:TeamPropagator\n"
    )
    (tmp_path / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    return tmp_path


@pytest.mark.parametrize(
    ("propagators", "headers"),
    [
        ("b3", ["b3"]),
        ("b3multi", ["x-b3-sampled", "x-b3-spanid", "x-b3-traceid"]),
        ("team", ["x-team-context"]),
        ("team,baggage", ["x-team-context"]),
    ],
)
def test_a_chosen_propagator_carries_the_trace_across_a_pool_and_a_broker(
    traces, programs, propagators, headers
):
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc})")
    env = {
        **os.environ,
        "OTEL_PROPAGATORS": propagators,
        "PYTHONPATH": os.pathsep.join([str(programs), os.environ.get("PYTHONPATH", "")]),
    }
    queue = f"tl-test-prop-{os.getpid()}-{propagators.replace(',', '-')}"
    done = subprocess.run(
        [sys.executable, "app.py", traces.endpoint, queue],
        cwd=programs,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["headers"] == headers  # the message carried this propagator's headers only
    assert out["carrier"] == []  # nothing is current after the trace
    traces.wait_for(lambda spans: {"price", "handle"} <= {s.name for s in spans}, timeout=WAIT)
    trace = traces.trace(out["trace_id"])
    trace.assert_connected()
    root = trace.root
    assert root.name == "checkout"
    run = trace.find("run price")
    assert run.parent_id == root.span_id and run.pid != root.pid  # in the pool's process
    assert trace.find("price").parent_id == run.span_id
    publish, process = trace.find(f"publish {queue}"), trace.find(f"process {queue}")
    assert (publish.kind, publish.parent_id) == ("PRODUCER", root.span_id)
    assert (process.kind, process.parent_id) == ("CONSUMER", publish.span_id)
    assert trace.find("handle").parent_id == process.span_id
    assert len(trace) == 6


def test_a_propagator_set_in_code_before_configure_is_kept(programs):
    code = """
    import json
    from opentelemetry import propagate
    import threadline as tl
    from teamprop import TeamPropagator

    mine = TeamPropagator()
    propagate.set_global_textmap(mine)
    tl.configure("prop-app", exporter="none")
    with tl.span("checkout") as root:
        carrier = tl.inject()
        handoff = tl.capture()
    with tl.resume(handoff.carrier, "again") as again:
        pass
    print(json.dumps({
        "kept": propagate.get_global_textmap() is mine,
        "carrier": sorted(carrier),
        "same_trace": again.get_span_context().trace_id == root.get_span_context().trace_id,
    }))
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(programs), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("OTEL_PROPAGATORS", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "kept": True,
        "carrier": ["x-team-context"],
        "same_trace": True,
    }


REDIS_PUBSUB = """
import json, sys
import redis as redis_client
import threadline as tl
from threadline.integrations import redis

tl.configure("prop-app", endpoint=sys.argv[1])
c = redis_client.Redis(host="127.0.0.1", port=6379)
channel = sys.argv[2]
traced_sub, plain_sub = c.pubsub(), c.pubsub()
received = []

def on_message(message):
    with tl.span("handle"):
        received.append(message["data"])

traced_sub.subscribe(**{channel: redis.handler(on_message)})
plain_sub.subscribe(channel)
for sub in (traced_sub, plain_sub):
    assert sub.get_message(timeout=30)["type"] == "subscribe"
with tl.span("announce") as root:
    redis.publish(c, channel, '{"id": 1}')
while not received:
    traced_sub.get_message(timeout=1)
plain = plain_sub.get_message(timeout=30)["data"]
print(json.dumps({"trace_id": format(root.get_span_context().trace_id, "032x"),
                  "received": received[0].decode(), "plain": json.loads(plain)}))
tl.shutdown()
"""


def test_a_redis_pubsub_message_carries_a_b3_context(traces, tmp_path):
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Redis is not reachable on 127.0.0.1:6379 ({exc})")
    channel = f"tl-test-prop-{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REDIS_PUBSUB), traces.endpoint, channel],
        env={**os.environ, "OTEL_PROPAGATORS": "b3"},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["received"] == '{"id": 1}'  # the subscriber gets exactly what was published
    assert sorted(out["plain"]) == ["b3", "id"]  # a plain reader sees the b3 key in front
    assert out["plain"]["b3"].startswith(out["trace_id"] + "-")
    traces.wait_for(lambda spans: any(s.name == "handle" for s in spans), timeout=WAIT)
    trace = traces.trace(out["trace_id"])
    trace.assert_connected()
    publish, process = trace.find(f"publish {channel}"), trace.find(f"process {channel}")
    assert process.parent_id == publish.span_id
    assert trace.find("handle").parent_id == process.span_id
