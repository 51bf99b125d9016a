"""Work run in child processes by the process and node tests (importable by spawn children)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.managers import BaseManager

from opentelemetry import trace

import threadline as tl
from threadline import _exit, _export
from threadline.boundaries.mailboxes import Mailbox

_ready = None


def task(mode: str, x: int = 1) -> int:
    with tl.span("inner", attributes={"x": x}):
        pass
    if mode == "exit":
        os._exit(0)
    if mode == "raise":
        raise ValueError(f"boom {x}")
    return x * 2


def pair(a: int, b: int) -> int:
    return task("return", a + b)


def recording() -> bool:
    with tl.span("inner") as s:
        return s.is_recording()


def remember(ready) -> None:
    """Pool/executor initializer: the event hang() sets, or the queue hold() writes to
    (synchronisation objects travel only when a process is created)."""
    global _ready
    _ready = ready


def hang(ready=None) -> None:
    """Start a span, say so, then wait to be killed."""
    with tl.span("inner"):
        (ready or _ready).set()
        threading.Event().wait(60)


def hold(label: str) -> None:
    """Say which worker runs this (to the queue given to remember()), then wait to be killed."""
    _ready.put((label, os.getpid()))
    threading.Event().wait(60)


def burst(count: int, flush_timeout: float) -> None:
    """End `count` spans, and give the exit flush `flush_timeout` seconds."""
    _exit.FLUSH_TIMEOUT = flush_timeout
    for _ in range(count):
        with tl.span("burst"):
            pass


def terminated_while_counting(flush_timeout: float) -> None:
    """SIGTERM arrives while this process's main thread is inside the export counters."""
    _exit.FLUSH_TIMEOUT = flush_timeout
    with tl.span("inner"):
        pass
    with _export.stats._lock:  # where a span's end is counted
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # the handler runs here, in this thread


def threads_taking_sigterm() -> list[int]:
    """The threads of this process, other than the main one, that do not block SIGTERM."""
    takers = []
    for tid in map(int, os.listdir("/proc/self/task")):
        if tid == os.getpid():
            continue
        with open(f"/proc/self/task/{tid}/status") as f:
            blocked = next(line for line in f if line.startswith("SigBlk:")).split()[1]
        if not int(blocked, 16) & (1 << (signal.SIGTERM - 1)):
            takers.append(tid)
    return takers


def wait_behind(lock, helpers) -> None:
    """Start a helper thread and say which it is, then wait on a lock the parent holds."""
    started = threading.Event()

    def helper() -> None:
        helpers.put(threading.get_native_id())
        started.set()
        threading.Event().wait(60)

    threading.Thread(target=helper, daemon=True).start()
    started.wait()
    with lock:
        pass


def current_trace_id() -> str | None:
    sc = trace.get_current_span().get_span_context()
    return format(sc.trace_id, "032x") if sc.is_valid else None


def leave(code: int) -> None:
    with tl.span("inner"):
        pass
    sys.exit(code)


# -- nodes: managers served by their own OS processes -------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        with tl.span("count"):
            if k < 0:
                raise ValueError("only up")
            self.n += k
            return self.n


class NodeB(BaseManager):
    pass


NodeB.register("Counter", Counter)


class Relay:
    """Lives on node A; forwards to a Counter on node B, as a client of B."""

    def __init__(self, address, authkey: bytes) -> None:
        self.node = NodeB(address=address, authkey=authkey)
        self.node.connect()
        self.counter = self.node.Counter()

    def add(self, k: int) -> int:
        return self.counter.add(k)


class NodeA(BaseManager):
    pass


NodeA.register("Relay", Relay)


# -- mailboxes across processes -----------------------------------------------------------------


def consume(queue, name: str, count: int, relation: str | None = None) -> None:
    """Receive `count` items from a traced mailbox and handle each in its own span."""
    box = Mailbox(queue, name, relation=relation)
    for _ in range(count):
        with box.receive() as item:
            with tl.span("handle", attributes={"item": item}):
                pass
        if hasattr(queue, "task_done"):
            queue.task_done()


def produce(queue, name: str, items: list) -> None:
    box = Mailbox(queue, name)
    with tl.span("produce"):
        for item in items:
            box.send(item)
