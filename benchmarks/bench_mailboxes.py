"""queue.Queue send + receive in one thread: plain put/get against a Mailbox (PRODUCER "send" and
CONSUMER "process" spans, the envelope) and against a Mailbox with tracing switched off, in the
same run. Spans go to no exporter: this is the cost of making them, not of shipping them."""

from __future__ import annotations

import queue
import time

import threadline as tl
from threadline.boundaries import mailboxes
from threadline.boundaries.mailboxes import Mailbox

N = 20_000
ROUNDS = 3


def timed(loop) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()  # CPU: the box is shared, being descheduled is not a cost
        loop()
        best = min(best, (time.process_time() - start) / N * 1e6)
    return best


def run() -> list[dict]:
    tl.configure("bench", exporter="none", boundaries=False)
    q = queue.Queue()
    box = Mailbox(q, "bench")

    def plain():
        for i in range(N):
            q.put(i)
            q.get()

    def traced():
        for i in range(N):
            box.send(i)
            with box.receive():
                pass

    with tl.span("request"):
        base = timed(plain)
        on = timed(traced)
        mailboxes.uninstrument()
        off = timed(traced)
        mailboxes.instrument()
    tl.shutdown()
    return [
        {"name": "queue.Queue put + get, plain", "value": base, "unit": "us"},
        {
            "name": "Mailbox send + receive, traced (2 spans)",
            "value": on,
            "unit": "us",
            "baseline": base,
            "ratio_to": "plain",
            "note": f"+{on - base:.2f} us",
        },
        {
            "name": "Mailbox send + receive, mailboxes uninstalled",
            "value": off,
            "unit": "us",
            "baseline": base,
            "ratio_to": "plain",
            "note": f"+{off - base:.2f} us",
        },
    ]
