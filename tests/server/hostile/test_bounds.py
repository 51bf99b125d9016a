"""Every query has a bound: caps on how many traces and how long a window (400 beyond them), a
cap on the spans one answer or one analysis reads, DuckDB's memory limit with spill to disk,
and a per-query time limit that interrupts the query and answers 503 + Retry-After."""

import warnings

import httpx
import pytest
from crafted import big, history

from threadline.server.ingest.queue import RETRY_AFTER_S
from threadline.server.storage import Query
from threadline.server.storage.base import QueryTooCostly, ResultTooLarge
from threadline.server.storage.duckdb import DuckDBStore
from threadline.server.web import analysis, jaeger
from threadline.server.web.app import build_app
from threadline.server.web.params import MAX_LOOKBACK_NS, MAX_TRACES

# the app in this process, over a store the test shapes (a read made slow on purpose)
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient
BASE_NS = 1_700_000_000_000_000_000
SLOW = "SELECT count(*) FROM range(100000000000)"


@pytest.fixture(scope="module")
def store():
    s = DuckDBStore()
    s.write(history(BASE_NS, n=30))
    return s


@pytest.fixture(scope="module")
def api(store):
    with TestClient(build_app(store), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/traces", {"limit": "1000000000000"}, "limit must be between 1 and 1500, got"),
        ("/api/traces", {"limit": "1501"}, "limit must be between 1 and 1500, got 1501"),
        ("/api/traces", {"limit": "-1"}, "limit must be between 1 and 1500, got -1"),
        (
            "/api/v3/traces",
            {"query.num_traces": "1000000000000"},
            "query.num_traces must be between 1 and 1500, got 1000000000000",
        ),
        (
            "/api/v3/traces",
            {"query.search_depth": "2000"},
            "query.search_depth must be between 1 and 1500, got 2000",
        ),
        ("/api/threadline/search", {"limit": "1501"}, "limit must be between 1 and 1500"),
        ("/api/traces", {"lookback": "8785h"}, "lookback must be at most 366d, got '8785h'"),
        ("/api/dependencies", {"lookback": str(367 * 86400 * 1000)}, "lookback must be between"),
        (
            "/api/threadline/analysis/dependencies",
            {"lookback": "99999d"},
            "the window (lookback, or start to end) must be at most 366d long",
        ),
        (
            "/api/threadline/analysis/completeness",
            {"start": "0", "end": str(MAX_LOOKBACK_NS // 1000 + 1)},
            "must be at most 366d long",
        ),
        ("/api/traces", {"traceID": ["ab"] * (MAX_TRACES + 1)}, "traceID: at most 1500 trace"),
    ],
)
def test_beyond_a_cap_is_400_naming_the_parameter(api, path, params, message):
    resp = api.get(path, params=params)
    assert resp.status_code == 400
    assert message in resp.text


def test_within_the_caps_answers(api):
    assert api.get("/api/traces", params={"limit": "1500"}).status_code == 200
    assert api.get("/api/traces", params={"limit": "0"}).json()["errors"] is None  # the default
    resp = api.get("/api/threadline/analysis/dependencies", params={"lookback": "366d"})
    assert resp.status_code == 200


def test_an_analysis_window_over_the_span_cap_is_refused_unread(api, monkeypatch):
    monkeypatch.setattr(analysis, "MAX_ANALYSIS_SPANS", 10)
    month = 30 * 86400 * 10**6
    start, end = BASE_NS // 1000 - month, BASE_NS // 1000 + month
    resp = api.get("/api/threadline/analysis/dependencies", params={"start": start, "end": end})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "the window holds more than 10 spans: narrow lookback (or start and end)"
    }


def test_a_search_answer_over_the_span_cap_is_refused(api, store, monkeypatch):
    monkeypatch.setattr(jaeger, "MAX_RESULT_SPANS", 5)
    resp = api.get("/api/traces", params={"limit": "100"})
    assert resp.status_code == 400
    [error] = resp.json()["errors"]
    assert error["msg"].endswith("traces found hold more than 5 spans: ask for fewer")
    resp = api.get("/api/v3/traces", params={"query.num_traces": "100"})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"].endswith("hold more than 5 spans: ask for fewer")


def test_find_traces_stops_reading_past_the_cap():
    s = DuckDBStore()
    s.write(big(BASE_NS, n=300, trace_id="ab" * 16) + history(BASE_NS, n=40))
    read = []
    real = s.get_traces
    s.get_traces = lambda ids: read.append(len(ids)) or real(ids)
    with pytest.raises(ResultTooLarge, match="hold more than 100 spans"):
        s.find_traces(Query(limit=1500), max_spans=100)
    assert read == [64]  # the first chunk already held too many: no more were read
    assert len(s.find_traces(Query(limit=1500))) == len(s.find_trace_ids(Query(limit=1500))) > 64


def test_a_query_past_the_time_limit_is_interrupted():
    s = DuckDBStore(query_timeout=0.2)
    with pytest.raises(QueryTooCostly, match=r"query cancelled after 0\.2 s"):
        s._rows(SLOW)
    assert s._rows("SELECT 42") == [(42,)]  # the cursor serves the next query


def test_a_query_past_the_time_limit_answers_503_with_retry_after():
    s = DuckDBStore(query_timeout=0.2)
    s.services = lambda: [r[0] for r in s._rows(SLOW)]  # a read that runs too long
    with TestClient(build_app(s), base_url="http://127.0.0.1") as c:
        resp = c.get("/api/services")
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == str(RETRY_AFTER_S)
        assert resp.json() == {
            "error": "store unavailable: query cancelled after 0.2 s (THREADLINE_QUERY_TIMEOUT)"
        }
        assert c.get("/api/v3/operations").status_code == 200


def test_the_engine_has_a_memory_limit_and_spills_to_disk(tmp_path):
    s = DuckDBStore(str(tmp_path / "t.duckdb"), memory_limit="64MB")
    limit, spill = s._rows(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    )[0]
    assert limit == "61.0 MiB"
    assert spill == str(tmp_path / "t.duckdb") + ".tmp"
    # a sort far larger than the limit spills rather than failing
    n = s._rows("SELECT count(*) FROM (SELECT range FROM range(20000000) ORDER BY random())")
    assert n == [(20_000_000,)]
    with pytest.raises(QueryTooCostly, match=r"query needs more than the store's 64MB"):
        s._rows("SELECT list(range)::VARCHAR FROM range(100000000)")


def test_memory_limit_and_timeout_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("THREADLINE_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("THREADLINE_QUERY_TIMEOUT", "7.5")
    s = DuckDBStore()
    assert (s.memory_limit, s.query_timeout) == ("300MB", 7.5)
    monkeypatch.setenv("THREADLINE_QUERY_TIMEOUT", "soon")
    with pytest.raises(OSError, match="THREADLINE_QUERY_TIMEOUT: 'soon' is not seconds above 0"):
        DuckDBStore()


def test_served_caps_hold_over_http(srv):
    resp = httpx.get(srv.urls.api + "/api/traces", params={"limit": "10" + "0" * 12})
    assert resp.status_code == 400
