"""One request handed across one boundary, on one OpenTelemetry set-up:

    python app.py own|logfire|instrument BOUNDARY

`own` sets the program's provider up in the main block and names it as the children's
child_setup; `logfire` configures Logfire at import, which spawn children repeat when they
import the main module; `instrument` sets nothing up: run it under `opentelemetry-instrument`,
whose sitecustomize sets every process up. Prints the request's trace id and the pid.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.managers import BaseManager

import telemetry
from opentelemetry import trace

from threadline.boundaries.mailboxes import Mailbox
from threadline.instrumentation import ThreadlineInstrumentor

SETUP, BOUNDARY = sys.argv[1], sys.argv[2]

if SETUP == "logfire":  # at import: spawn children, importing this module, set up the same way
    telemetry.logfire_setup()
    ThreadlineInstrumentor().instrument()

tracer = trace.get_tracer("interop")


def work(n: int) -> int:
    with tracer.start_as_current_span("inner") as span:
        span.set_attribute("worker.pid", os.getpid())
        return n * 2


def consume(jobs: Mailbox) -> None:
    with jobs.receive(timeout=30) as n:
        work(n)


class Inventory:
    def reserve(self, n: int) -> int:
        return work(n)


class Node(BaseManager):
    pass


Node.register("Inventory", Inventory)


def rabbitmq() -> None:
    import pika

    from threadline.integrations import rabbitmq

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    channel.queue_declare("interop-jobs")
    channel.queue_purge("interop-jobs")

    def on_message(ch, method, properties, body):
        work(int(body))
        ch.basic_ack(method.delivery_tag)
        ch.stop_consuming()

    rabbitmq.publish(channel, "", "interop-jobs", b"21")
    channel.basic_consume("interop-jobs", rabbitmq.consumer(on_message, queue="interop-jobs"))
    channel.start_consuming()
    connection.close()


def cross() -> None:
    if BOUNDARY == "thread_pool":
        with ThreadPoolExecutor(2) as pool:
            assert pool.submit(work, 21).result() == 42
    elif BOUNDARY == "to_thread":
        assert asyncio.run(asyncio.to_thread(work, 21)) == 42
    elif BOUNDARY == "spawn_pool":
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
            assert pool.submit(work, 21).result() == 42
    elif BOUNDARY == "fork_pool":
        with mp.get_context("fork").Pool(2) as pool:
            assert pool.apply(work, (21,)) == 42
    elif BOUNDARY == "node":  # a manager's server process, started with spawn
        node = Node(address=("127.0.0.1", 0), authkey=b"interop", ctx=mp.get_context("spawn"))
        node.start()
        try:
            assert node.Inventory().reserve(21) == 42
        finally:
            node.shutdown()
    elif BOUNDARY == "rabbitmq":
        rabbitmq()
    elif BOUNDARY == "mailbox":
        ctx = mp.get_context("spawn")
        jobs = Mailbox(ctx.Queue(), "jobs")
        consumer = ctx.Process(target=consume, args=(jobs,))
        consumer.start()
        with tracer.start_as_current_span("request") as span:
            print(f"{span.get_span_context().trace_id:032x} {os.getpid()}", flush=True)
            jobs.send(21)
        consumer.join(60)
        assert consumer.exitcode == 0, consumer.exitcode
        return
    else:
        raise SystemExit(f"unknown boundary {BOUNDARY!r}")


def main() -> None:
    if SETUP == "own":
        telemetry.own()
        ThreadlineInstrumentor().instrument(child_setup="telemetry:own")
    if BOUNDARY == "mailbox":
        cross()
    else:
        with tracer.start_as_current_span("request") as span:
            instrumented = ThreadlineInstrumentor().is_instrumented_by_opentelemetry
            print(f"{span.get_span_context().trace_id:032x} {os.getpid()} {instrumented}")
            sys.stdout.flush()
            cross()


if __name__ == "__main__":
    main()
