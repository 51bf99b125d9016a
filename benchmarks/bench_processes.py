"""Process boundaries, traced against untraced in the same run.

Costs are CPU time of this process and of its children together (getrusage, children counted
once reaped): the work happens in other processes, and on a shared machine wall-clock time
measures the neighbours. Spans are exported over OTLP/HTTP to a sink in a separate process,
so shipping them is counted on the sending side and receiving them is not.

- ProcessPoolExecutor submit + result round trip (fork, one reused worker): untraced; traced
  (the task's span and its pending announcement, both exported); traced with announce=False.
- multiprocessing.Queue put + get between two processes: plain items against Mailbox send /
  receive (a PRODUCER span in the sender, a CONSUMER span in the receiver, both exported; goal
  <= 3x), and, to show where that goes, against the same spans made but not exported
  (exporter="none") and the context alone (an Envelope put, resumed without a span). Their
  rounds are interleaved with the plain ones: a put/get's cost moves with how often the reader
  waits on an empty pipe, so each configuration gets the same chances.
- Child start-up with spawn (start + join of an empty target): untraced against auto-configured
  (the child configures itself like the parent and flushes when it exits).

Untraced means threadline not configured and the process boundaries uninstalled. Per-item costs
are the difference between a long and a short run, so set-up and shutdown cancel out.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import threadline as tl
from threadline import boundaries
from threadline.boundaries.mailboxes import Envelope, Mailbox

SHORT, LONG = 50, 1050
STARTS = 5
ROUNDS = 3
QUEUE_ROUNDS = 5


def noop(x: int = 0) -> int:
    return x


def consume(q, count: int, traced: bool | str) -> None:
    if traced == "carry":  # the context only: no span, just current while the item is handled
        for _ in range(count):
            with tl.resume(q.get().handoff):
                pass
    elif traced:
        box = Mailbox(q, "bench")
        for _ in range(count):
            with box.receive():
                pass
    else:
        for _ in range(count):
            q.get()


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(server: ThreadingHTTPServer) -> None:
    server.serve_forever()


def cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def per_item(session) -> float:
    """Microseconds of CPU per item: (long run - short run) / (LONG - SHORT), best of ROUNDS."""
    return max(min(_one_round(session) for _ in range(ROUNDS)), 0.0)


def _one_round(session) -> float:
    start = cpu()
    session(SHORT)
    short = cpu() - start
    start = cpu()
    session(LONG)
    return (cpu() - start - short) / (LONG - SHORT) * 1e6


def interleaved(sessions: dict[str, tuple[Callable[[], None], Callable]]) -> dict[str, float]:
    """per_item() of each session, best of QUEUE_ROUNDS, its rounds taken in turn with the
    others'. Each entry is (set-up run before each of its rounds, session)."""
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(QUEUE_ROUNDS):
        for name, (set_up, session) in sessions.items():
            set_up()
            best[name] = min(best[name], _one_round(session))
    return {name: max(value, 0.0) for name, value in best.items()}


def round_trips(n: int) -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        with tl.span("bench"):
            for i in range(n):
                ex.submit(noop, i).result()


def queue_items(traced: bool | str):
    def session(n: int) -> None:
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        child = ctx.Process(target=consume, args=(q, n, traced))
        child.start()
        box = Mailbox(q, "bench")
        with tl.span("bench"):
            for i in range(n):
                if traced == "carry":
                    q.put(Envelope(i, tl.capture()))
                elif traced:
                    box.send(i)
                else:
                    q.put(i)
        child.join()

    return session


def start_up() -> float:
    """Median CPU milliseconds to start and join a spawn child with an empty target."""
    ctx = multiprocessing.get_context("spawn")
    costs = []
    for _ in range(STARTS):
        start = cpu()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        costs.append((cpu() - start) * 1e3)
    return statistics.median(costs)


def untraced() -> None:
    """threadline not configured and the process boundaries uninstalled (configure() installs
    them)."""
    tl.shutdown()
    boundaries.uninstrument("processes", "nodes")


def run() -> list[dict]:
    untraced()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    sink = multiprocessing.get_context("fork").Process(target=_serve, args=(server,), daemon=True)
    sink.start()
    server.server_close()  # the sink process owns the socket now
    try:
        base_rt, base_start = per_item(round_trips), start_up()
        tl.configure("bench", endpoint=endpoint)
        traced_rt, traced_start = per_item(round_trips), start_up()
        tl.configure("bench", endpoint=endpoint, announce=False)
        quiet_rt = per_item(round_trips)
        queues = interleaved(
            {
                "plain": (untraced, queue_items(False)),
                "traced": (lambda: tl.configure("bench", endpoint=endpoint), queue_items(True)),
                "unexported": (lambda: tl.configure("bench", exporter="none"), queue_items(True)),
                "carried": (lambda: tl.configure("bench", endpoint=endpoint), queue_items("carry")),
            }
        )
        base_q, traced_q = queues["plain"], queues["traced"]
        tl.shutdown()
    finally:
        sink.terminate()
        sink.join()
        boundaries.instrument("processes", "nodes")

    def row(name, value, unit, baseline=None, ratio_to=None, note=None):
        out = {"name": name, "value": value, "unit": unit}
        if baseline is not None:
            out.update(baseline=baseline, ratio_to=ratio_to, note=note)
        return out

    return [
        row("ProcessPoolExecutor round trip, untraced", base_rt, "us cpu"),
        row(
            "ProcessPoolExecutor round trip, traced",
            traced_rt,
            "us cpu",
            base_rt,
            "untraced",
            f"+{traced_rt - base_rt:.0f} us: task span + its pending copy, both exported",
        ),
        row(
            "ProcessPoolExecutor round trip, traced, announce=False",
            quiet_rt,
            "us cpu",
            base_rt,
            "untraced",
            f"+{quiet_rt - base_rt:.0f} us: task span, exported",
        ),
        row("multiprocessing.Queue put/get across processes, plain", base_q, "us cpu"),
        row(
            "multiprocessing.Queue Mailbox send/receive, traced",
            traced_q,
            "us cpu",
            base_q,
            "plain",
            f"+{traced_q - base_q:.1f} us per item (2 spans, exported); goal <= 3x",
        ),
        row(
            "multiprocessing.Queue Mailbox send/receive, spans not exported",
            queues["unexported"],
            "us cpu",
            base_q,
            "plain",
            f"+{queues['unexported'] - base_q:.1f} us per item (2 spans made, exporter none)",
        ),
        row(
            "multiprocessing.Queue, context carried, no spans",
            queues["carried"],
            "us cpu",
            base_q,
            "plain",
            f"+{queues['carried'] - base_q:.1f} us per item "
            "(traceparent numbers pickled, resumed unparsed)",
        ),
        row("spawn child start + join, untraced", base_start, "ms cpu"),
        row(
            "spawn child start + join, auto-configured",
            traced_start,
            "ms cpu",
            base_start,
            "untraced",
            f"+{traced_start - base_start:.0f} ms",
        ),
    ]
