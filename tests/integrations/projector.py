"""The event tests' projector, in another OS process.

``python projector.py MODE TARGET ENDPOINT`` configures threadline as service "projector"
exporting to ENDPOINT and handles every stored event once, then prints one JSON line (the
events handled, the handoffs it could not read) and exits after exporting everything.

Modes over a PostgreSQL table TARGET (id, stream, type, data, metadata JSONB): ``link``,
``child`` and ``replay`` handle each event in a "project orders" span, with an "apply" span
inside; ``batch`` handles them all in one. Modes over an eventsourcing schema TARGET:
``eventsourcing`` runs Counters over DogSchool's events; ``eventsourcing-replay`` rebuilds
them as CountersRebuilt.
"""

from __future__ import annotations

import json
import sys

import threadline as tl
from threadline.integrations import events


def project_table(mode: str, table: str) -> int:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as conn:
        rows = conn.execute(f"select id, stream, metadata from {table} order by id").fetchall()
    if mode == "batch":
        with events.handle_batch([m for _, _, m in rows], "project orders", stream="orders"):
            pass
        return len(rows)
    for event_id, stream, metadata in rows:
        with events.handle(
            metadata,
            "project orders",
            relation="child" if mode == "child" else "link",
            replay=mode == "replay",
            stream=stream,
            event_id=event_id,
            system="postgresql",
        ):
            with tl.span("apply", attributes={"event.id": event_id}):
                pass
    return len(rows)


def run_counters(mode: str, schema: str) -> int:
    from event_sourced import Counters, CountersRebuilt, DogSchool, postgres_env

    env = postgres_env(schema)
    school = DogSchool(env)
    counters = (CountersRebuilt if mode == "eventsourcing-replay" else Counters)(env)
    counters.follow(school.name, school.notification_log)
    counters.pull_and_process(school.name)
    handled = counters.recorder.max_tracking_id(school.name) or 0
    counters.close()
    school.close()
    return handled


if __name__ == "__main__":
    mode, target, endpoint = sys.argv[1:]
    tl.configure("projector", endpoint=endpoint)
    run = run_counters if mode.startswith("eventsourcing") else project_table
    handled = run(mode, target)
    tl.shutdown()
    print(json.dumps({"handled": handled, "garbled": tl.export_stats()["garbled_handoffs"]}))
