"""Added cost of the threads boundary per ThreadPoolExecutor.submit round trip (submit, run in the
worker, result), installed against uninstalled in the same run, under an active span: with no
span per task (the context hop alone) and with one span per task. The round trip is dominated by
two thread switches, so the hop is also measured on its own in one thread: Task(fn)() against
fn(), i.e. capture at hand-off plus restore/reset around the call, next to one OpenTelemetry
context attach + detach as a yardstick. Times are CPU time (the box is shared: being descheduled
is not a cost), best of interleaved rounds."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import context as otel_context

import threadline as tl
from threadline.boundaries import threads
from threadline.boundaries._task import Policy, Task

N = 5_000
HOPS = 200_000
ROUNDS = 5


def noop() -> None:
    pass


def round_trips(ex: ThreadPoolExecutor) -> float:
    start = time.process_time()  # both threads' CPU
    for _ in range(N):
        ex.submit(noop).result()
    return (time.process_time() - start) / N * 1e6


def hops(make) -> float:
    start = time.thread_time()
    for _ in range(HOPS):
        make()()
    return (time.thread_time() - start) / HOPS * 1e6


def attach_detach() -> None:
    otel_context.detach(otel_context.attach(otel_context.get_current()))


def run() -> list[dict]:
    tl.configure("bench", exporter="none", boundaries=False)
    configs = {
        "uninstalled": lambda: threads.uninstall(),
        "installed": lambda: threads.install(),
        "installed, one span per task": lambda: threads.install(span=True),
    }
    best = dict.fromkeys(configs, float("inf"))
    policy = Policy()
    hop_best = {"plain": float("inf"), "task": float("inf"), "attach": float("inf")}
    with tl.span("request"), ThreadPoolExecutor(1) as ex:
        ex.submit(noop).result()  # the worker exists before timing
        for _ in range(ROUNDS):  # interleaved, best of each: the box is shared
            for name, setup in configs.items():
                setup()
                best[name] = min(best[name], round_trips(ex))
            hop_best["plain"] = min(hop_best["plain"], hops(lambda: noop))
            hop_best["task"] = min(hop_best["task"], hops(lambda: Task(noop, policy)))
            hop_best["attach"] = min(hop_best["attach"], hops(lambda: attach_detach))
    threads.uninstall()
    tl.shutdown()
    base = best["uninstalled"]
    added = hop_best["task"] - hop_best["plain"]
    attach = hop_best["attach"] - hop_best["plain"]
    return [
        {"name": "ThreadPoolExecutor round trip, uninstalled", "value": base, "unit": "us"},
        {
            "name": "ThreadPoolExecutor round trip, installed, no span",
            "value": best["installed"],
            "unit": "us",
            "baseline": base,
            "ratio_to": "uninstalled",
            "note": f"+{best['installed'] - base:.2f} us",
        },
        {
            "name": "ThreadPoolExecutor round trip, installed, span per task",
            "value": best["installed, one span per task"],
            "unit": "us",
            "baseline": base,
            "ratio_to": "uninstalled",
            "note": f"+{best['installed, one span per task'] - base:.2f} us",
        },
        {"name": "OTel context attach + detach (yardstick)", "value": attach, "unit": "us"},
        {
            "name": "in-process hop alone: capture + restore/reset",
            "value": added,
            "unit": "us",
            "baseline": attach,
            "ratio_to": "attach + detach",
            "note": "goal <= 1.5 us",
        },
    ]
