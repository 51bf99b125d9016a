"""A Ray task on the program's own provider, with ThreadlineInstrumentor naming the workers'
set-up (a raylet starts them: nothing is inherited). Prints the request's trace id."""

from __future__ import annotations

import os

import ray
import telemetry
from opentelemetry import trace

from threadline.instrumentation import ThreadlineInstrumentor
from threadline.integrations import ray as tl_ray


@ray.remote
def work(n: int) -> int:
    # The tracer is looked up in the worker: a module global of __main__ would be pickled.
    with trace.get_tracer("interop").start_as_current_span("inner") as span:
        span.set_attribute("worker.pid", os.getpid())
    return n * 2


if __name__ == "__main__":
    telemetry.own()
    ThreadlineInstrumentor().instrument(child_setup="telemetry:own")
    tl_ray.instrument()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 * 1024)  # fmt: skip
    try:
        with trace.get_tracer("interop").start_as_current_span("request") as span:
            print(f"{span.get_span_context().trace_id:032x}", flush=True)
            assert ray.get(work.remote(21), timeout=120) == 42
    finally:
        ray.shutdown()
