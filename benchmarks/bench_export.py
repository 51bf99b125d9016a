"""CPU per exported span as a user pays it: each tracer in its own process, 2 attributes per span,
sent over the network to a loopback receiver in another process that reads every request and
discards it. The stock OpenTelemetry SDK (BatchSpanProcessor + OTLPSpanExporter, http/protobuf)
is the baseline; threadline sends OTLP/HTTP too, ddtrace its own agent protocol, Logfire OTLP/HTTP
through its own set-up. CPU is the tracer process's (every thread: the export thread and the HTTP
client count), over N spans and the flush that delivers them, after a warm-up; each round is a
fresh process per tracer, the tracers taking turns; best of ROUNDS rounds, the range beside it. The receiver counts the spans it got (OTLP and the agent
protocol both decoded), so a tracer that dropped some fails the bench instead of looking fast.

ddtrace and Logfire run from a virtualenv of their own (.venv-bench-peers, made by `make bench`
from constraints/bench-peers.txt); without it their rows say so and the rest still runs.

    python benchmarks/bench_export.py               # every row, printed
    python benchmarks/bench_export.py worker NAME URL   # one tracer: what run() starts
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

N = 20_000  # spans per round
WARMUP = 2_000
ROUNDS = 3  # each a process per tracer, the tracers taking turns: load from elsewhere falls on all
ATTRS = {"order.id": 1234, "customer.tier": "gold"}
GOAL = 0.2  # threadline's CPU per exported span, as a share of the stock SDK's

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv-bench-peers" / "bin" / "python"


# -- the receiver (a process of its own) --------------------------------------------------------


def count_spans(path: str, body: bytes) -> int:
    """How many spans one request carried: OTLP protobuf, or the agent protocol's msgpack
    (v0.4: a list of traces, each a list of spans; v0.5: [strings, traces])."""
    if path.endswith("/v1/traces"):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest.FromString(body)
        return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    if path.endswith("/traces"):
        import msgpack

        payload = msgpack.unpackb(body, strict_map_key=False)
        traces = payload[1] if path.startswith("/v0.5") else payload
        return sum(len(t) for t in traces)
    return 0


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as every exporter here uses it
    wbufsize = -1  # each response leaves in one write, flushed after each request, as a collector's
    spans = 0
    requests = 0
    lock = threading.Lock()

    def _answer(self, body: bytes, kind: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        spans = count_spans(self.path, body)
        with Receiver.lock:
            Receiver.spans += spans
            Receiver.requests += 1
        if self.path.endswith("/v1/traces"):
            self._answer(b"", "application/x-protobuf")  # an empty ExportTraceServiceResponse
        else:
            self._answer(b'{"rate_by_service": {}}')

    do_PUT = do_POST

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._answer(
                json.dumps({"spans": Receiver.spans, "requests": Receiver.requests}).encode()
            )
        elif self.path == "/info":  # the agent's: which endpoints it has
            self._answer(json.dumps({"endpoints": ["/v0.4/traces", "/v0.5/traces"]}).encode())
        else:
            self._answer(b"{}")

    def log_message(self, format: str, *args) -> None:
        pass


def receive() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# -- one tracer (a process of its own) ----------------------------------------------------------


def setup(name: str, url: str):
    """(make one span, flush) for tracer `name` sending to the receiver at `url`."""
    if name == "untraced":

        def one() -> None:
            with contextlib.nullcontext():
                pass

        return one, lambda: None
    if name == "otel":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{url}/v1/traces")))
        tracer = provider.get_tracer("bench")

        def one() -> None:
            with tracer.start_as_current_span("op", attributes=ATTRS):
                pass

        return one, provider.force_flush
    if name == "threadline":
        import threadline as tl

        tl.configure("bench", endpoint=url, boundaries=False)

        def one() -> None:
            with tl.span("op", attributes=ATTRS):
                pass

        return one, tl.flush
    if name == "ddtrace":
        from ddtrace.trace import tracer

        def one() -> None:
            with tracer.trace("op") as span:
                span.set_tags(ATTRS)

        return one, tracer.flush
    if name == "logfire":
        import logfire

        logfire.configure(
            service_name="bench", send_to_logfire=False, console=False, inspect_arguments=False
        )

        def one() -> None:
            with logfire.span("op", **ATTRS):
                pass

        return one, logfire.force_flush
    raise ValueError(f"no tracer {name!r}")


def worker(name: str, url: str) -> None:
    """WARMUP spans, flushed, then N: prints the CPU per span of the N and their flush."""
    one, flush = setup(name, url)
    for _ in range(WARMUP):  # connections, caches and lazy imports before the timing
        one()
    flush()
    start = time.process_time()  # every thread of this process
    for _ in range(N):
        one()
    flush()
    cpu = (time.process_time() - start) / N * 1e6
    if name == "threadline":
        import threadline as tl

        counted = tl.export_stats()
        assert counted["exported"] == counted["ended"] == WARMUP + N, counted
    print(json.dumps(cpu), flush=True)


# -- the run -----------------------------------------------------------------------------------

TRACERS = {  # name: (row, python, environment)
    "untraced": ("untraced block (no tracer)", sys.executable, {}),
    "otel": ("stock OTel SDK, BatchSpanProcessor + OTLP/HTTP", sys.executable, {}),
    "threadline": ("threadline span, OTLP/HTTP", sys.executable, {}),
    "ddtrace": (
        "ddtrace span, agent protocol",
        str(PEERS_PYTHON),
        {
            "DD_TRACE_AGENT_URL": "{url}",
            "DD_SERVICE": "bench",
            "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
            "DD_REMOTE_CONFIGURATION_ENABLED": "false",
            "DD_TRACE_STARTUP_LOGS": "false",
        },
    ),
    "logfire": (
        "Logfire span, OTLP/HTTP",
        str(PEERS_PYTHON),
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}", "LOGFIRE_SEND_TO_LOGFIRE": "false"},
    ),
}


def received(url: str) -> int:
    from urllib.request import urlopen

    with urlopen(f"{url}/stats") as response:
        return json.load(response)["spans"]


def measure(name: str, url: str) -> float | None:
    """One round of tracer `name`, in a process of its own: CPU per span (None: not installed)."""
    _, python, extra = TRACERS[name]
    if not os.path.exists(python):
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DD_", "LOGFIRE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    # Queues that hold a whole round: every span's full cost is measured, none dropped.
    env["OTEL_BSP_MAX_QUEUE_SIZE"] = str(N + 1)
    env.update({k: v.format(url=url) for k, v in extra.items()})
    before = received(url)
    out = subprocess.run(
        [python, __file__, "worker", name, url], env=env, check=True, capture_output=True, text=True
    )
    got = received(url) - before
    expected = 0 if name == "untraced" else WARMUP + N
    if got != expected:
        raise RuntimeError(f"{name}: the receiver got {got} spans of {expected}\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def run() -> list[dict]:
    receiver = subprocess.Popen(
        [sys.executable, __file__, "receive"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{int(receiver.stdout.readline())}"  # type: ignore[union-attr]
        results: dict[str, list[float] | None] = {name: [] for name in TRACERS}
        for _ in range(ROUNDS):
            for name in TRACERS:
                cpu = measure(name, url)
                if cpu is None:
                    results[name] = None
                else:
                    results[name].append(cpu)  # type: ignore[union-attr]
    finally:
        receiver.terminate()
        receiver.wait()
    stock = min(results["otel"])  # type: ignore[arg-type]
    rows = []
    for name, rounds in results.items():
        row: dict = {"name": TRACERS[name][0], "unit": "us CPU/span"}
        if rounds is None:
            row.update(value=float("nan"), note="not measured: no .venv-bench-peers (make bench)")
        else:
            row.update(value=min(rounds), note=f"rounds {min(rounds):.1f}-{max(rounds):.1f}")
            if name not in ("untraced", "otel"):
                row.update(baseline=stock, ratio_to="stock SDK")
            if name == "threadline":
                row["note"] += f"; goal <= {GOAL}x"
        rows.append(row)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        receive()
    elif sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], sys.argv[3])
    else:
        for row in run():
            ratio = f"  {row['value'] / row['baseline']:.2f}x" if row.get("baseline") else ""
            print(f"{row['name']:<50} {row['value']:8.2f} {row['unit']}{ratio}  {row['note']}")
