"""Added cost of the threads boundary per ThreadPoolExecutor.submit round trip (submit, run in the
worker, result), installed against uninstalled, under an active span, with no span per task
(the context hop alone) and with one span per task. Times are CPU time (the box is shared:
being descheduled is not a cost); configurations are interleaved round by round and each keeps
its best round, so noise from other work falls on all alike.

A round trip wakes two threads and costs tens of microseconds, most of it thread switching that
varies by several microseconds from round to round; so the added cost is also measured as its
two halves, each in the thread that pays it: the submitter's submit() (the worker busy, so
submit only queues) and the worker's run of the queued work item. Their sum is the added cost
per round trip that the goal (<= 1.5 us per in-process hop, no span) is held against."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import threadline as tl
from threadline.boundaries import threads
from threadline.boundaries._task import Policy, Task

N = 2_000  # round trips per round
HOPS = 200_000
ROUNDS = 15
GOAL = 1.5  # us added per in-process hop, no span


def noop() -> None:
    pass


def round_trips(ex: ThreadPoolExecutor) -> float:
    start = time.process_time()  # both threads' CPU
    for _ in range(N):
        ex.submit(noop).result()
    return (time.process_time() - start) / N * 1e6


def halves() -> tuple[float, float]:
    """CPU per submit() in the submitter, and per queued work item run, in one thread each."""
    gate = threading.Event()
    with ThreadPoolExecutor(1) as ex:
        ex.submit(gate.wait)  # the one worker is busy: the submits below only queue
        start = time.thread_time()
        for _ in range(N):
            ex.submit(noop)
        submit = (time.thread_time() - start) / N * 1e6
        items = [ex._work_queue.get_nowait() for _ in range(ex._work_queue.qsize())]
        start = time.thread_time()
        for item in items:
            item.run()
        run = (time.thread_time() - start) / N * 1e6
        gate.set()
    return submit, run


def hops(make) -> float:
    start = time.thread_time()
    for _ in range(HOPS):
        make()()
    return (time.thread_time() - start) / HOPS * 1e6


def run() -> list[dict]:
    tl.configure("bench", exporter="none", boundaries=False)
    configs = {
        "uninstalled": lambda: threads.uninstrument(),
        "installed": lambda: threads.instrument(relation="child", span=False),
        "installed, one span per task": lambda: threads.instrument(span=True),
    }
    trips: dict[str, list[float]] = {name: [] for name in configs}
    split: dict[str, list[tuple[float, float]]] = {"uninstalled": [], "installed": []}
    hop = {"plain": float("inf"), "task": float("inf")}
    policy = Policy()
    with tl.span("request"), ThreadPoolExecutor(1) as ex:
        ex.submit(noop).result()  # the worker exists before timing
        for _ in range(ROUNDS):
            for name, setup in configs.items():
                setup()
                trips[name].append(round_trips(ex))
                if name in split:
                    split[name].append(halves())
            threads.uninstrument()
            hop["plain"] = min(hop["plain"], hops(lambda: noop))
            hop["task"] = min(hop["task"], hops(lambda: Task(noop, policy)))
    tl.shutdown()

    best = {name: min(values) for name, values in trips.items()}
    paired = statistics.median(
        i - u for i, u in zip(trips["installed"], trips["uninstalled"], strict=True)
    )
    submit_added = min(s for s, _ in split["installed"]) - min(s for s, _ in split["uninstalled"])
    run_added = min(r for _, r in split["installed"]) - min(r for _, r in split["uninstalled"])
    added = submit_added + run_added
    base = best["uninstalled"]
    verdict = "meets" if added <= GOAL else "misses"
    return [
        {"name": "ThreadPoolExecutor round trip, uninstalled", "value": base, "unit": "us CPU"},
        {
            "name": "ThreadPoolExecutor round trip, installed, no span",
            "value": best["installed"],
            "unit": "us CPU",
            "baseline": base,
            "ratio_to": "uninstalled",
            "note": f"best {best['installed'] - base:+.2f} us, median of paired rounds "
            f"{paired:+.2f} us (thread-switch noise)",
        },
        {
            "name": "ThreadPoolExecutor round trip, installed, span per task",
            "value": best["installed, one span per task"],
            "unit": "us CPU",
            "baseline": base,
            "ratio_to": "uninstalled",
            "note": f"{best['installed, one span per task'] - base:+.2f} us",
        },
        {
            "name": "  added in submit() (submitter's thread)",
            "value": submit_added,
            "unit": "us CPU",
        },
        {
            "name": "  added in the task's run (worker's thread)",
            "value": run_added,
            "unit": "us CPU",
        },
        {
            "name": "added per round trip, no span (submit + run)",
            "value": added,
            "unit": "us CPU",
            "note": f"goal <= {GOAL} us: {verdict}",
        },
        {
            "name": "in-process hop alone: Task(fn)() over fn()",
            "value": hop["task"] - hop["plain"],
            "unit": "us CPU",
            "note": f"goal <= {GOAL} us",
        },
    ]
