"""The Celery app of test_celery.py, imported by the test (the sender) and by the worker it starts
in another OS process (``celery -A celery_tasks worker``). By default it configures no tracing
itself: the integration configures the worker from the environment it is started with (OTLP to
$OTEL_EXPORTER_OTLP_ENDPOINT, service "celery_tasks").

THREADLINE_CELERY_QUEUE: the queue; THREADLINE_CELERY_RELATION and
THREADLINE_CELERY_WORKER_SERVICE: instrument(relation=..., worker_service=...);
THREADLINE_CELERY_SERVICE: the module calls tl.configure(service) first, as many apps do;
THREADLINE_CELERY_LEAK=1: each pool process is left with a span current outside any task;
THREADLINE_CELERY_LOGFIRE=<service>: the module sets Logfire up instead, with threadline's
instrumentor on top (Logfire exports to $OTEL_EXPORTER_OTLP_ENDPOINT itself).
"""

from __future__ import annotations

import os
import time

from celery import Celery
from celery.signals import worker_process_init
from opentelemetry import context, trace

import threadline as tl
from threadline.integrations import celery

app = Celery("celery_tasks", broker="redis://127.0.0.1:6379/15")
app.conf.update(
    task_default_queue=os.environ.get("THREADLINE_CELERY_QUEUE", "tl-test-celery"),
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
if os.environ.get("THREADLINE_CELERY_SERVICE"):  # an app module that configures tracing itself
    tl.configure(os.environ["THREADLINE_CELERY_SERVICE"])
if os.environ.get("THREADLINE_CELERY_LOGFIRE"):  # an app on Logfire, with threadline on top
    import logfire

    from threadline.instrumentation import ThreadlineInstrumentor

    logfire.configure(
        send_to_logfire=False,
        service_name=os.environ["THREADLINE_CELERY_LOGFIRE"],
        console=False,
        distributed_tracing=True,
    )
    ThreadlineInstrumentor().instrument()
celery.instrument(
    app,
    relation=os.environ.get("THREADLINE_CELERY_RELATION", "child"),
    worker_service=os.environ.get("THREADLINE_CELERY_WORKER_SERVICE"),
)


@worker_process_init.connect(weak=False)
def _leak(**_):
    if os.environ.get("THREADLINE_CELERY_LEAK") == "1":
        span = trace.get_tracer(__name__).start_span("left open")
        context.attach(trace.set_span_in_context(span))  # and never detached


@app.task
def add(x, y):
    with tl.span("add", attributes={"x": x, "y": y}):
        return x + y


@app.task
def charge(sku):
    raise ValueError(f"no price for {sku}")


@app.task(bind=True, max_retries=2)
def flaky(self, sku):
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError(f"stock service down for {sku}"), countdown=0)
    return sku


@app.task
def bail(code):
    os._exit(code)


@app.task
def slow(seconds):
    time.sleep(seconds)
    return seconds
