"""Event-sourced metadata against the PostgreSQL on 127.0.0.1:5432: a command appends events
under a trace, a projector in another OS process handles them later, and each handle span is
linked to (or, asked, a child of) the span that appended its event; replays link nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from brokers import WAIT, messaging_attributes, unique
from psycopg.types.json import Jsonb

import threadline as tl
from local_services import require
from threadline.integrations import events
from threadline.semconv import MAX_LINKS
from threadline.testing import hex_ids

DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
PROJECTOR = Path(__file__).with_name("projector.py")


@pytest.fixture
def db():
    require(5432, "PostgreSQL")
    conn = psycopg.connect(DSN, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def table(db):
    name = unique("events").replace("-", "_")
    db.execute(
        f"create table {name} (id bigserial primary key, stream text not null,"
        " type text not null, data jsonb not null, metadata jsonb)"
    )
    yield name
    db.execute(f"drop table {name}")


def place_order(db, table: str, order: int, *types: str):
    """The command: its events appended in one transaction inside "send orders"."""
    with tl.span("place order", attributes={"order": order}) as command:
        with db.transaction(), events.append("orders", system="postgresql") as out:
            for kind in types:
                db.execute(
                    f"insert into {table} (stream, type, data, metadata) values (%s, %s, %s, %s)",
                    ("orders", kind, Jsonb({"order": order}), Jsonb(out.metadata({"by": "ann"}))),
                )
    return command


def insert_untraced(db, table: str, metadata) -> None:
    db.execute(
        f"insert into {table} (stream, type, data, metadata) values ('orders', 'Imported', '{{}}', %s)",
        (metadata,),
    )


def project(traces, mode: str, target: str, spans: int):
    """Run the projector in another process; wait for `spans` of its spans. Returns its pid,
    what it printed and its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.Popen(
        [sys.executable, str(PROJECTOR), mode, target, traces.endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = done.communicate(timeout=WAIT)
    assert done.returncode == 0, err
    traces.wait_for(lambda got: sum(s.pid == done.pid for s in got) >= spans, timeout=WAIT)
    return done.pid, json.loads(out), err


def spans_of(traces, pid: int, name: str):
    return [s for s in traces.spans if s.pid == pid and s.name == name]


def test_a_projector_elsewhere_links_each_event_to_the_command_that_appended_it(traces, db, table):
    first = place_order(db, table, 1, "OrderPlaced", "OrderPaid")
    second = place_order(db, table, 2, "OrderPlaced")
    insert_untraced(db, table, None)  # written before tracing was on
    insert_untraced(db, table, Jsonb({"by": "import"}))
    sends = []
    for command in (first, second):
        trace_id, command_id = hex_ids(command)
        send = traces.trace(trace_id).find("send orders")
        assert (send.kind, send.parent_id, send.service) == ("PRODUCER", command_id, "tests")
        sends.append(send)
    assert messaging_attributes(sends[0]) == {
        "messaging.system": "postgresql",
        "messaging.destination.name": "orders",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.batch.message_count": 2,
    }
    assert "messaging.batch.message_count" not in sends[1].attributes  # a single event
    # The metadata column holds the user's keys and the send span's carrier under "trace".
    stored = db.execute(f"select id, metadata from {table} order by id").fetchall()
    flags = tl.Handoff.from_carrier(stored[0][1]["trace"]).span_context.trace_flags
    carriers = [
        {"by": "ann", "trace": {"traceparent": f"00-{s.trace_id}-{s.span_id}-{flags:02x}"}}
        for s in (sends[0], sends[0], sends[1])
    ]
    assert [m for _, m in stored] == [*carriers, None, {"by": "import"}]

    pid, summary, _ = project(traces, "link", table, spans=10)
    assert summary == {"handled": 5, "garbled": 0}
    handled = spans_of(traces, pid, "project orders")
    assert [(s.kind, s.service, s.parent_id) for s in handled] == [
        ("CONSUMER", "projector", None)
    ] * 5
    assert [s.links for s in handled] == [
        [(sends[0].trace_id, sends[0].span_id, {})],
        [(sends[0].trace_id, sends[0].span_id, {})],
        [(sends[1].trace_id, sends[1].span_id, {})],
        [],
        [],
    ]
    # Each event in a trace of its own, none of them the command's; "apply" inside it.
    trace_ids = [s.trace_id for s in handled]
    assert len(set(trace_ids)) == 5
    assert not set(trace_ids) & {sends[0].trace_id, sends[1].trace_id}
    for span, (event_id, _) in zip(handled, stored, strict=True):
        assert messaging_attributes(span) == {
            "messaging.system": "postgresql",
            "messaging.destination.name": "orders",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": str(event_id),
        }
        t = traces.trace(span.trace_id)
        t.assert_connected()
        assert [(c.name, c.attributes["event.id"]) for c in t.children(span)] == [
            ("apply", event_id)
        ]


def test_relation_child_continues_the_command_trace(traces, db, table):
    command = place_order(db, table, 1, "OrderPlaced", "OrderPaid")
    trace_id, _ = hex_ids(command)
    send = traces.trace(trace_id).find("send orders")

    pid, summary, _ = project(traces, "child", table, spans=4)
    assert summary == {"handled": 2, "garbled": 0}
    handled = spans_of(traces, pid, "project orders")
    assert [(s.trace_id, s.parent_id, s.kind, s.service, s.links) for s in handled] == [
        (trace_id, send.span_id, "CONSUMER", "projector", [])
    ] * 2
    t = traces.trace(trace_id)
    t.assert_connected()
    assert t.services() == {"tests", "projector"}
    assert [c.name for s in handled for c in t.children(s)] == ["apply", "apply"]


def test_a_replay_makes_spans_with_no_link(traces, db, table):
    command = place_order(db, table, 1, "OrderPlaced", "OrderPaid")
    trace_id, _ = hex_ids(command)

    pid, summary, _ = project(traces, "replay", table, spans=4)
    assert summary == {"handled": 2, "garbled": 0}
    handled = spans_of(traces, pid, "project orders")
    assert [(s.parent_id, s.links, s.attributes["threadline.event.replay"]) for s in handled] == [
        (None, [], True)
    ] * 2
    assert len({s.trace_id for s in handled}) == 2
    assert trace_id not in {s.trace_id for s in handled}
    assert [s.name for s in traces.trace(trace_id)] == ["place order", "send orders"]


def test_a_batch_links_every_command_once_and_at_most_max_links(traces, db, table):
    commands = [place_order(db, table, 0, "OrderPlaced", "OrderPaid", "OrderShipped")]
    commands += [place_order(db, table, n, "OrderPlaced") for n in range(1, MAX_LINKS + 2)]
    insert_untraced(db, table, None)
    sends = [traces.trace(hex_ids(c)[0]).find("send orders") for c in commands]

    pid, summary, _ = project(traces, "batch", table, spans=1)
    assert summary == {"handled": MAX_LINKS + 5, "garbled": 0}
    [batch] = spans_of(traces, pid, "project orders")
    assert (batch.kind, batch.parent_id, batch.service) == ("CONSUMER", None, "projector")
    # 130 distinct commands (the first appended three events): the first 128 linked, in order.
    assert batch.links == [(s.trace_id, s.span_id, {}) for s in sends[:MAX_LINKS]]
    assert batch.attributes["threadline.links.dropped"] == 2
    assert batch.attributes["messaging.batch.message_count"] == MAX_LINKS + 5
    assert batch.attributes["messaging.destination.name"] == "orders"


def test_garbled_metadata_is_handled_in_a_new_trace_logged_once_and_counted(traces, db, table):
    command = place_order(db, table, 1, "OrderPlaced")
    for garbled in (
        {"trace": "00-not-a-carrier"},
        {"trace": {"traceparent": "00-xyz-abc-01"}},
        {"trace": ["traceparent"]},
        [1, 2, 3],
        "text, not an object",
    ):
        insert_untraced(db, table, Jsonb(garbled))
    send = traces.trace(hex_ids(command)[0]).find("send orders")

    pid, summary, log = project(traces, "link", table, spans=12)
    assert summary == {"handled": 6, "garbled": 5}
    assert log.count("starting a new trace instead") == 1
    handled = spans_of(traces, pid, "project orders")
    assert [(s.parent_id, s.links) for s in handled] == [
        (None, [(send.trace_id, send.span_id, {})]),
        *[(None, [])] * 5,
    ]
    assert len({s.trace_id for s in handled}) == 6


def test_stamp_writes_the_trace_of_now_without_a_span(traces):
    assert events.stamp({"by": "ann"}) == {"by": "ann"}  # nothing current: nothing written
    with tl.span("command") as command:
        metadata = events.stamp({"by": "ann", "trace": {"traceparent": "00-stale"}})
    trace_id, span_id = hex_ids(command)
    assert metadata["by"] == "ann"
    assert events.handoff_of(metadata).span_id == span_id
    assert events.handoff_of(json.dumps(metadata)).trace_id == trace_id  # JSON text too
    with events.handle(metadata, "project orders") as span:
        pass
    assert not tl.capture()  # the handler's previous (empty) context is back
    handled = traces.trace(hex_ids(span)[0]).root
    assert (handled.name, handled.kind, handled.links) == (
        "project orders",
        "CONSUMER",
        [(trace_id, span_id, {})],
    )
    assert [s.name for s in traces.trace(trace_id)] == ["command"]


def test_wrong_arguments_raise_naming_them():
    with pytest.raises(TypeError, match="metadata must be a mapping, not list"):
        events.stamp([("by", "ann")])
    with pytest.raises(ValueError, match="relation must be one of .*, not 'parent'"):
        events.handle({}, "project", relation="parent", replay=True)
    with pytest.raises(TypeError, match="replay must be True or False, not 'yes'"):
        events.handle({}, "project", replay="yes")
    with pytest.raises(ValueError, match="span name must be a non-empty string"):
        events.handle_batch([{}], "")
    with pytest.raises(TypeError, match="stream must be a string, not int"):
        events.handle({}, "project", stream=7)
    with pytest.raises(TypeError, match="destination must be a string, not NoneType"):
        events.append(None)


# -- the eventsourcing library, with its PostgreSQL persistence --------------------------------


@pytest.fixture
def schema(db):
    name = unique("es").replace("-", "_")
    db.execute(f"create schema {name}")
    yield name
    db.execute(f"drop schema {name} cascade")


def test_eventsourcing_followers_elsewhere_link_to_the_save_that_stored_each_event(
    traces, db, schema
):
    from event_sourced import Counters, DogSchool, postgres_env

    from threadline.integrations.eventsourcing import STATE_KEY, metadata

    env = postgres_env(schema)
    school = DogSchool(env)
    with tl.span("enrol") as command:
        dog_id = school.register("Fido")
        school.add_tricks(dog_id, "roll over", "fetch")
    # Aggregates are rebuilt from events exactly as the library makes them.
    assert school.repository.get(dog_id).tricks == ["roll over", "fetch"]
    school.close()
    trace_id, command_id = hex_ids(command)
    t = traces.trace(trace_id)
    saves = t.find_all("send DogSchool")
    assert [(s.kind, s.parent_id, s.attributes.get("messaging.message.id")) for s in saves] == [
        ("PRODUCER", command_id, "1"),
        ("PRODUCER", command_id, None),
    ]
    assert saves[1].attributes["messaging.batch.message_count"] == 2
    assert saves[0].attributes["messaging.system"] == "eventsourcing"
    # The carrier is inside the stored state, next to the event's own attributes.
    states = db.execute(f"select state from {schema}.dogschool_events order by originator_version")
    stored = [json.loads(bytes(state)) for (state,) in states.fetchall()]
    flags = f"{int(stored[0][STATE_KEY]['traceparent'][-2:], 16):02x}"
    assert [(s.get("trick"), s[STATE_KEY]) for s in stored] == [
        (None, {"traceparent": f"00-{trace_id}-{saves[0].span_id}-{flags}"}),
        ("roll over", {"traceparent": f"00-{trace_id}-{saves[1].span_id}-{flags}"}),
        ("fetch", {"traceparent": f"00-{trace_id}-{saves[1].span_id}-{flags}"}),
    ]

    pid, summary, _ = project(traces, "eventsourcing", schema, spans=5)
    assert summary == {"handled": 3, "garbled": 0}
    handled = spans_of(traces, pid, "process DogSchool")
    assert [
        (s.kind, s.service, s.parent_id, s.links, s.attributes["eventsourcing.event.type"])
        for s in handled
    ] == [
        ("CONSUMER", "projector", None, [(trace_id, saves[0].span_id, {})], "Dog.Registered"),
        ("CONSUMER", "projector", None, [(trace_id, saves[1].span_id, {})], "Dog.TrickAdded"),
        ("CONSUMER", "projector", None, [(trace_id, saves[1].span_id, {})], "Dog.TrickAdded"),
    ]
    assert messaging_attributes(handled[1]) == {
        "messaging.system": "eventsourcing",
        "messaging.destination.name": "DogSchool",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": "2",
        "messaging.consumer.group.name": "Counters",
    }
    assert trace_id not in {s.trace_id for s in handled}
    counted = [traces.trace(s.trace_id).children(s) for s in handled]
    assert [[(c.name, c.attributes["trick"]) for c in cs] for cs in counted] == [
        [],
        [("count trick", "roll over")],
        [("count trick", "fetch")],
    ]
    # What the policy stored (a Counter, created and incremented) was written under its
    # process span: the chain goes on.
    counters = Counters(env)
    notifications = counters.notification_log.select(start=1, limit=10)
    written = [metadata(counters.mapper.to_domain_event(n)) for n in notifications]
    counters.close()
    assert [tl.Handoff.from_carrier(m["trace"]).span_id for m in written] == [
        handled[1].span_id,
        handled[1].span_id,
        handled[2].span_id,
        handled[2].span_id,
    ]

    # Rebuilding the projection from the first event links to none of the old traces.
    pid, summary, _ = project(traces, "eventsourcing-replay", schema, spans=5)
    assert summary == {"handled": 3, "garbled": 0}
    rebuilt = spans_of(traces, pid, "process DogSchool")
    assert [(s.parent_id, s.links, s.attributes["threadline.event.replay"]) for s in rebuilt] == [
        (None, [], True)
    ] * 3
    assert [s.attributes["messaging.consumer.group.name"] for s in rebuilt] == [
        "CountersRebuilt"
    ] * 3
