"""The attribute search index (attr_kv) holds the engine's hash of each "key\\0value": a file
whose index was made by another hash is rebuilt from the attribute JSON when it is opened."""

import logging
import math

from crafted import showcase

from threadline.server.storage import Filter, Query
from threadline.server.storage.duckdb import DuckDBStore

BASE = 1_700_000_000_000_000_000


def test_an_index_made_by_another_hash_is_rebuilt_on_open(tmp_path, caplog):
    spans = showcase(BASE)
    spans[0].attributes.update(
        {"ratio": math.inf, "d": 2.5, 'quoted "key" \\': "v", "ok": True, "m": {"x": 1}}
    )
    path = str(tmp_path / "index.duckdb")
    store = DuckDBStore(path)
    store.write(spans)
    store.merge()  # into the table, whose index this test spoils
    made = store._rows("SELECT span_id, attr_kv, attr_sig FROM spans ORDER BY span_id")
    assert any(kv for _, kv, _ in made) and all(sig is not None for *_, sig in made)
    # as a file written by another hash would look: its entries mean nothing to this one
    store._con.execute("UPDATE meta SET value = '0' WHERE key = 'attr_kv'")
    store._con.execute("UPDATE spans SET attr_kv = list_transform(attr_kv, lambda h: h + 1)")
    store._con.execute("ALTER TABLE spans DROP COLUMN attr_sig")  # a layout from before it
    store.close()

    with caplog.at_level(logging.WARNING, "threadline.server"):
        store = DuckDBStore(path)
    assert f"rebuilding the attribute search index of {path}" in caplog.text
    assert store._rows("SELECT span_id, attr_kv, attr_sig FROM spans ORDER BY span_id") == made
    trace = spans[0].trace_id.lower()
    for key, value in (
        ("d", "2.5"),
        ('quoted "key" \\', "v"),
        ("ok", "true"),
        ("ratio", "Infinity"),
    ):
        assert store.find_trace_ids(Query(filters=[[Filter(key, "=", value)]])) == [trace], key
    store.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, "threadline.server"):
        DuckDBStore(path).close()  # the index is current now: nothing to rebuild
    assert "rebuilding" not in caplog.text
