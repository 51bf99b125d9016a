"""threadline on other OpenTelemetry set-ups: {the program's own provider, opentelemetry-instrument
(the real CLI), Logfire} x {thread pool, asyncio.to_thread, spawn ProcessPoolExecutor, fork
multiprocessing.Pool, an mp.Queue mailbox}. Each cell runs tests/interop/app.py in a process of
its own, exporting to a real OTLP/HTTP collector, and asserts one connected trace with exact
span names, parents and service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from interop_env import app_env

from local_services import require
from threadline.testing import Capture, CapturedSpan

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
SERVICES = {"own": "interop-own", "logfire": "interop-logfire", "instrument": "interop-instrument"}
# What the receiving side adds between the request and the work: nothing for an in-process
# hop, the processes boundary's unit span, or the mailbox's producer and consumer spans.
CHAINS = {
    "thread_pool": ["request", "inner"],
    "to_thread": ["request", "inner"],
    "spawn_pool": ["request", "run work", "inner"],
    "fork_pool": ["request", "run work", "inner"],
    "mailbox": ["request", "send jobs", "process jobs", "inner"],
    "node": ["request", "Inventory/reserve@CLIENT", "Inventory/reserve@SERVER", "inner"],
    "rabbitmq": ["request", "publish interop-jobs", "process interop-jobs", "inner"],
}
OTHERS = {"node": ["Inventory/create@CLIENT", "Inventory/create@SERVER"]}  # beside the chain


@pytest.fixture
def capture():
    c = Capture()
    yield c
    c.close()


def run_app(capture: Capture, setup: str, boundary: str, **env: str) -> tuple[str, int, str]:
    """Run app.py; its request's trace id, its pid and whether ThreadlineInstrumentor was on
    ("True" / "False"; "" for the mailbox, which prints before it checks)."""
    environ = app_env(capture.endpoint, **env)
    command = [sys.executable, str(HERE / "app.py"), setup, boundary]
    if setup == "instrument":
        command = [str(BIN / "opentelemetry-instrument"), *command]
        environ.update(
            OTEL_SERVICE_NAME=SERVICES["instrument"],
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=capture.endpoint + "/v1/traces",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    trace_id, pid, *instrumented = done.stdout.split()
    return trace_id, int(pid), "".join(instrumented)


def chain(spans: list[CapturedSpan], names: list[str]) -> list[CapturedSpan]:
    """The spans named ("name" or "name@KIND"), each the parent of the next, the first a root;
    fails describing why."""
    by_name = {}
    for name in names:
        wanted, _, kind = name.partition("@")
        found = [s for s in spans if s.name == wanted and kind in ("", s.kind)]
        assert len(found) == 1, f"expected one {name!r}, got {found}"
        by_name[name] = found[0]
    out = [by_name[n] for n in names]
    assert out[0].parent_id is None, out[0]
    for parent, child in zip(out, out[1:], strict=False):
        assert child.parent_id == parent.span_id, f"{child.name} is not a child of {parent.name}"
    return out


@pytest.mark.parametrize("boundary", list(CHAINS))
@pytest.mark.parametrize("setup", list(SERVICES))
def test_one_connected_trace(capture, setup, boundary):
    trace_id, pid, instrumented = run_app(capture, setup, boundary)
    assert instrumented in ("True", "")
    if boundary == "rabbitmq":
        require(5672, "RabbitMQ")
    names = CHAINS[boundary]
    expected = {n.partition("@")[0] for n in names}
    capture.wait_for(
        lambda spans: {s.name for s in spans if s.trace_id == trace_id} >= expected, timeout=30
    )
    spans = [s for s in capture.settle() if s.trace_id == trace_id]
    linked = chain(spans, names)
    assert len(spans) == len(names) + len(OTHERS.get(boundary, ())), capture.describe()
    assert {s.service for s in spans} == {SERVICES[setup]}
    inner = linked[-1]
    crossed = boundary in ("spawn_pool", "fork_pool", "mailbox", "node")
    assert (inner.attributes["worker.pid"] != pid) is crossed


def test_opentelemetry_instrument_loads_threadline_unless_disabled(capture):
    """The entry point is what connects the hop: disabled by name, the work on the pool thread
    starts a trace of its own."""
    _, _, instrumented = run_app(capture, "instrument", "thread_pool")
    assert instrumented == "True"
    disabled = Capture()
    try:
        other, _, instrumented = run_app(
            disabled,
            "instrument",
            "thread_pool",
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="threadline",
        )
        assert instrumented == "False"
        spans = disabled.wait_for(2, timeout=30)
        inner = next(s for s in spans if s.name == "inner")
        assert inner.parent_id is None and inner.trace_id != other
    finally:
        disabled.close()
