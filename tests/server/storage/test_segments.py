"""DuckDB's durable segments: a write is a synced Arrow IPC segment, merged into the table in the
background; reads see unmerged spans exactly as merged ones, and a crash loses none of them
and stores none twice."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from crafted import showcase, users
from store_spans import peer_cases

from threadline.server.storage import Filter, Query, StoreUnavailable
from threadline.server.storage import duckdb as engine
from threadline.server.storage.duckdb import DuckDBStore

BASE = 1_700_000_000_000_000_000
NEVER = 10**12  # merge thresholds no test reaches: spans stay unmerged until merge()


def batches():
    """The writes: every crafted trace (events, links, every value type, pending copies later
    completed, cross-service calls and calls to databases) in several exports."""
    spans = showcase(BASE) + users(BASE) + peer_cases(start=BASE)[0]
    return [spans[i : i + 7] for i in range(0, len(spans), 7)]


WRITTEN = sum(map(len, batches()))


def reads(store: DuckDBStore) -> dict:
    """Every read of the store interface, over the written spans."""
    ids = sorted({s.trace_id for b in batches() for s in b})
    end = BASE + 10**12
    queries = [
        Query(),
        Query(service="users"),
        Query(filters=[[Filter("db.system.name", "=", "postgresql")]]),
        Query(filters=[[Filter("server.port", ">", "1000")]]),
        Query(filters=[[Filter("http.route", "exists")]], min_duration_ns=1),
        Query(filters=[[Filter("host.name", "=", "app-1", "resource")]], limit=3),
    ]
    return {
        "traces": store.get_traces(ids),
        "found": [store.find_trace_ids(q) for q in queries],
        "summaries": store.summaries(ids),
        "between": store.spans_between(BASE, end),
        "between_one": store.spans_between(BASE, end, service="users", limit=5),
        "count": store.count_between(BASE, end, 1_000),
        "services": store.services(),
        "operations": [store.operations(), store.operations("users", 3)],
        "dependencies": store.dependencies(BASE, end),
        "spans": store.stats()["spans"],
    }


def written(tmp_path, name: str, merge_after: int | None) -> DuckDBStore:
    """A store holding `batches()`, merged after the first `merge_after` of them."""
    store = DuckDBStore(
        str(tmp_path / name), merge_spans=NEVER, max_unmerged_spans=NEVER, merge_after_s=NEVER
    )
    for i, batch in enumerate(batches()):
        store.write(batch)
        if merge_after is not None and i + 1 >= merge_after:
            store.merge()
    return store


def test_unmerged_spans_read_exactly_as_merged_ones(tmp_path):
    merged = written(tmp_path, "merged.duckdb", merge_after=0)
    unmerged = written(tmp_path, "unmerged.duckdb", merge_after=None)
    half = written(tmp_path, "half.duckdb", merge_after=len(batches()) // 2)
    try:
        assert merged.stats()["unmerged_spans"] == 0
        assert unmerged.stats()["unmerged_spans"] == merged.stats()["spans"] == WRITTEN
        assert unmerged._rows("SELECT count(*) FROM spans") == [(merged.stats()["spans"],)]
        expected = reads(merged)
        assert expected["found"][2] and expected["dependencies"] and expected["summaries"]
        assert reads(unmerged) == expected
        # a completed span in the table supersedes its pending copy still unmerged and back
        assert reads(half) == expected
        assert unmerged.merge() == expected["spans"] and reads(unmerged) == expected
    finally:
        for store in (merged, unmerged, half):
            store.close()


def test_retention_deletes_unmerged_spans_as_merged_ones(tmp_path):
    merged = written(tmp_path, "merged.duckdb", merge_after=0)
    unmerged = written(tmp_path, "unmerged.duckdb", merge_after=None)
    try:
        cut = sorted(s.start_ns for b in batches() for s in b)[20]
        deleted = merged.delete_before(cut)
        assert deleted >= 20 and unmerged.delete_before(cut) == deleted
        assert reads(unmerged) == reads(merged)
        assert unmerged.stats()["unmerged_spans"] == 0
    finally:
        merged.close()
        unmerged.close()


def test_a_merge_cut_short_by_a_crash_is_not_stored_twice(tmp_path):
    """The merged mark is committed with the rows: segments a crash left on disk after their
    merge are removed when the file is opened again, not merged a second time."""
    path = str(tmp_path / "t.duckdb")
    store = written(tmp_path, "t.duckdb", merge_after=None)
    expected = reads(store)
    store._segments.remove = lambda upto: None  # the crash: after the commit, before the removal
    store.merge()
    assert len(os.listdir(path + ".segments")) == len(batches())
    store._con.close()  # no clean close: that would merge and remove
    again = DuckDBStore(path)
    try:
        assert os.listdir(path + ".segments") == []
        assert reads(again) == expected
    finally:
        again.close()


WRITER = """
import sys
sys.path[:0] = {paths!r}
from crafted import showcase
from threadline.server.storage.duckdb import DuckDBStore
store = DuckDBStore({db!r}, merge_spans=10**12, merge_after_s=10**12)
store.write(showcase({base}))
print("written", flush=True)
sys.stdin.read()  # killed here
"""


def test_kill_9_after_a_write_returns_loses_nothing(tmp_path):
    """A write returns once its segment is synced: SIGKILL right after it, before any merge,
    and the next open replays the segment into the table."""
    db = str(tmp_path / "t.duckdb")
    here = os.path.dirname(os.path.dirname(__file__))
    paths = [here, *sys.path]
    code = textwrap.dedent(WRITER.format(paths=paths, db=db, base=BASE))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert [n.endswith(".arrow") for n in os.listdir(db + ".segments")] == [True]
    store = DuckDBStore(db)
    try:
        assert os.listdir(db + ".segments") == []
        assert store.stats()["unmerged_spans"] == 0  # replayed into the table on open
        reference = DuckDBStore()
        reference.write(showcase(BASE))
        assert reads(store)["traces"] == reads(reference)["traces"]
        assert store.stats()["spans"] == reference.stats()["spans"] > 10
    finally:
        store.close()


def test_a_full_unmerged_window_holds_writes_then_refuses_them(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "UNMERGED_WAIT_S", 0.2)
    store = DuckDBStore(
        str(tmp_path / "t.duckdb"), merge_spans=NEVER, max_unmerged_spans=10, merge_after_s=NEVER
    )
    try:
        spans = showcase(BASE)
        store.write(spans[:10])
        with pytest.raises(StoreUnavailable, match=r"10 spans are waiting to be merged into "):
            store.write(spans[10:11])
        assert store.stats()["spans"] == 10  # the refused write was not stored
        store.merge()
        store.write(spans[10:11])
        assert store.stats()["spans"] == 11
    finally:
        store.close()


def test_the_background_merge_empties_the_window(tmp_path):
    store = DuckDBStore(str(tmp_path / "t.duckdb"), merge_spans=NEVER, merge_after_s=0.05)
    try:
        store.write(showcase(BASE))
        deadline = time.monotonic() + 30
        while store.stats()["unmerged_spans"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.stats()["unmerged_spans"] == 0
        assert store._rows("SELECT count(*) FROM spans") == [(len(showcase(BASE)),)]
        assert os.listdir(store.path + ".segments") == []
    finally:
        store.close()


def test_reads_during_loads_and_merges_count_every_span_once(tmp_path):
    """The merged mark and the in-memory rows are read in one snapshot, and rows leave the
    in-memory table only after the reads that started before their merge: a read running
    while the background thread loads and merges never misses an acknowledged span nor counts
    one twice."""
    import threading

    from store_spans import span

    store = DuckDBStore(str(tmp_path / "t.duckdb"), merge_spans=40, merge_after_s=0.01)
    started = acked = 0
    done = threading.Event()

    def writer():
        nonlocal started, acked
        for i in range(60):
            batch = [span(f"{i + 1:032x}", f"{j + 1:016x}", start=BASE + i) for j in range(10)]
            started += len(batch)
            store.write(batch)
            acked += len(batch)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    try:
        while not done.is_set():
            low = acked
            n = store.stats()["spans"]
            high = started
            seen.append(n)
            assert low <= n <= high
    finally:
        thread.join(60)
    store.merge()
    assert store.stats() | {"bytes_on_disk": 0} == {
        "engine": "duckdb",
        "path": store.path,
        "spans": 600,
        "bytes_on_disk": 0,
        "unmerged_spans": 0,
    }
    assert len(seen) > 5 and store._rows("SELECT count(*) FROM traces") != [(0,)]
    store.close()
