"""What only the DuckDB engine promises: exact round trips, MVCC reads, its file's faults."""

import math

import pytest
from store_spans import T1, T2, span

from threadline.server.model import Event, Link
from threadline.server.storage.duckdb import DuckDBStore

EVERY_VALUE = {
    "s": 'é ü "quoted"',
    "b": True,
    "i": -(2**63),
    "big": 2**63 - 1,
    "d": 2.5,
    "whole": 2.0,
    "nan": math.nan,
    "inf": math.inf,
    "bytes": b"\x00\xff",
    "arr": [1, "x", [b"y", None]],
    "kv": {"b": "not bytes", "m": {"deep": [1.5]}},
    "empty": None,
}


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(str(tmp_path / "t.duckdb"))
    yield s
    s.close()


def test_every_field_round_trips_exactly(store):
    original = span(
        attributes=EVERY_VALUE,
        resource={"host.id": b"\x01", "list": ["a"]},
        status_code=2,
        status_message="boom",
        scope_name="lib",
        scope_version="1.2",
        scope_attributes={"sa": {"x": 1}},
        events=[Event(1_500, "exception", {"exception.message": "m", "n": [1]}, 3)],
        links=[Link(T2, "11" * 8, "k=v", {"link": b"\x02"}, 4, 1)],
        trace_state="vendor=1",
        flags=257,
        dropped_attributes_count=5,
        dropped_events_count=6,
        dropped_links_count=7,
        resource_schema_url="https://opentelemetry.io/schemas/1.21.0",
        scope_schema_url="s2",
    )
    store.write([original])
    [got] = store.get_trace(T1.upper())
    nan_free = lambda a: {k: v for k, v in a.items() if k != "nan"}  # noqa: E731 - nan != nan
    assert math.isnan(got.attributes["nan"])
    assert nan_free(got.attributes) == nan_free(EVERY_VALUE)
    assert type(got.attributes["whole"]) is float and type(got.attributes["i"]) is int
    got.attributes, original.attributes = {}, {}
    assert got == original


def test_reads_run_while_a_write_is_open(store):
    """A reader on another thread sees committed spans while the writer's transaction is open,
    and never its uncommitted ones."""
    import threading

    store.write([span(T1, "01" * 8)])
    store.merge()
    store._con.execute("BEGIN")
    store._con.execute("INSERT INTO spans SELECT * FROM spans")  # uncommitted duplicate rows
    seen = []
    reader = threading.Thread(
        target=lambda: seen.append((len(store.get_trace(T1)), store.stats()["spans"]))
    )
    reader.start()
    reader.join(30)
    store._con.execute("ROLLBACK")
    assert seen == [(1, 1)]


def test_a_path_that_cannot_be_created_is_store_unavailable(tmp_path):
    from threadline.server.storage import StoreUnavailable

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match=rf"cannot open {blocker}/traces.duckdb: "):
        DuckDBStore(str(blocker / "traces.duckdb"))  # its directory would be a regular file


def test_a_failed_retention_run_leaves_no_transaction_open(store):
    import duckdb

    store.write([span(T1, "01" * 8)])
    with pytest.raises(duckdb.InvalidInputException, match="too large"):
        store.delete_before(2**200)  # fails inside the transaction
    store.write([span(T2, "02" * 8)])  # a BEGIN after the failure works
    assert [s.span_id for s in store.get_trace(T1)] == ["01" * 8]
    assert store.delete_before(1_500) == 2 and store.stats()["spans"] == 0
