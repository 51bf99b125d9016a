"""Child processes leaving every way, on the program's own provider:

    python exits.py fork|spawn|forkserver process_exit|pool_recycle|executor|killed

Prints the request's trace id. The spans each child ended must all arrive: the exit flush
flushes whatever provider is global, within its bound.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import telemetry
from opentelemetry import trace

from threadline.instrumentation import ThreadlineInstrumentor

tracer = trace.get_tracer("interop")


def spans(n: int) -> int:
    for i in range(n):
        with tracer.start_as_current_span("inner") as span:
            span.set_attribute("i", i)
    return n


def burst_then_exit(n: int) -> None:
    spans(n)
    os._exit(3)  # skips atexit: the exit flush must still send them


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    method, kind = sys.argv[1], sys.argv[2]
    telemetry.own()
    ThreadlineInstrumentor().instrument(child_setup="telemetry:own")
    ctx = mp.get_context(method)
    with tracer.start_as_current_span("request") as request:
        print(f"{request.get_span_context().trace_id:032x}", flush=True)
        if kind == "process_exit":
            p = ctx.Process(target=burst_then_exit, args=(20,))
            p.start()
            p.join(60)
            assert p.exitcode == 3, p.exitcode
        elif kind == "pool_recycle":
            with ctx.Pool(2, maxtasksperchild=1) as pool:
                assert pool.map(spans, [3] * 6) == [3] * 6
        elif kind == "executor":
            recycle = {} if method == "fork" else {"max_tasks_per_child": 1}
            with ProcessPoolExecutor(2, mp_context=ctx, **recycle) as pool:
                assert list(pool.map(spans, [3] * 6)) == [3] * 6
        elif kind == "killed":
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                try:
                    pool.submit(die).result(60)
                except BrokenProcessPool:
                    pass
                else:
                    raise AssertionError("the worker was not killed")


if __name__ == "__main__":
    main()
