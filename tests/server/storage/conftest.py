"""The `store` fixture: one store per engine, so a contract test runs on each of them."""

import pytest

from threadline.server.storage import open_store

ENGINES = ["duckdb", "chdb"]


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    if request.param == "chdb":
        pytest.importorskip("chdb")
        s = open_store(f"chdb:{tmp_path / 'ch'}")
    else:
        s = open_store(f"duckdb:{tmp_path / 't.duckdb'}")
    yield s
    s.close()
