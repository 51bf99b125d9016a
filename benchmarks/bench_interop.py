"""The CPU an in-process hop adds on the program's own OpenTelemetry provider (with
ThreadlineInstrumentor) against the same hop under threadline.configure(): the goal is within
10%. A hop is a ThreadPoolExecutor submit and the run of its work item, measured in the thread
that pays each half, under an active span, instrumented against uninstrumented in alternating
rounds, best round kept (as bench_threads does). Each set-up runs in a process of its own (the
global provider is set once per process), the two alternating RUNS times, best run kept: the
hop's code is the same on both, so what differs between runs is the machine's noise."""

from __future__ import annotations

import json
import subprocess
import sys

from bench_threads import halves

ROUNDS = 15
RUNS = 4
GOAL = 1.10  # the user's provider's added cost over threadline's own


def hop_cost() -> float:
    """CPU per hop: bench_threads' two halves, submit() (the worker busy, so it only queues) and
    the run of the queued work item, each in the thread that pays it."""
    return sum(halves())


def measure(setup: str) -> dict:
    from opentelemetry import trace

    from threadline.boundaries import threads

    if setup == "threadline":
        import threadline as tl

        tl.configure("bench", exporter="none")
        on, off = lambda: threads.instrument(), threads.uninstrument
    else:
        from opentelemetry.sdk.trace import TracerProvider

        from threadline.instrumentation import ThreadlineInstrumentor

        trace.set_tracer_provider(TracerProvider())  # no processor: the hop alone is measured
        inst = ThreadlineInstrumentor()
        on, off = inst.instrument, inst.uninstrument
    plain, traced = float("inf"), float("inf")
    with trace.get_tracer("bench").start_as_current_span("request"):
        for _ in range(ROUNDS):
            plain = min(plain, hop_cost())
            on()
            traced = min(traced, hop_cost())
            off()
    return {"plain": plain, "traced": traced}


def run() -> list[dict]:
    added = {"threadline": float("inf"), "own provider": float("inf")}
    for _ in range(RUNS):
        for setup in added:
            done = subprocess.run(
                [sys.executable, __file__, setup], capture_output=True, text=True, check=True
            )
            found = json.loads(done.stdout)
            added[setup] = min(added[setup], found["traced"] - found["plain"])
    ratio = added["own provider"] / added["threadline"]
    verdict = "meets" if ratio <= GOAL else "misses"
    return [
        {
            "name": "hop added, threadline.configure()",
            "value": added["threadline"],
            "unit": "us CPU",
        },
        {
            "name": "hop added, own provider + ThreadlineInstrumentor",
            "value": added["own provider"],
            "unit": "us CPU",
            "baseline": added["threadline"],
            "ratio_to": "threadline's own",
            "note": f"{verdict} the goal (<= {GOAL:.2f}x)",
        },
    ]


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
