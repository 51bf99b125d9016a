"""The trace view's own endpoints: the trace as columns over a string table, and a span's details
fetched on selection, over HTTP as `threadline serve` mounts them."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from crafted import (
    BROKEN,
    CHECKOUT,
    CRASHED,
    MAILER,
    MS,
    SKEWED,
    big,
    load,
    showcase,
    skewed,
    span,
)

from threadline.server import analysis as an
from threadline.server.client import Client, ClientError
from threadline.server.model import KIND_INTERNAL, Link
from threadline.server.web.waterfall import Recent, Shown

BASE = time.time_ns() - 60 * 10**9
API = "/api/threadline/analysis"
ORPHAN_LINKER = "c0ffee000000000000000000000000ff"


@pytest.fixture(scope="module")
def api(srv):
    linker = span(ORPHAN_LINKER, "e100000000000001", "", "batch", "jobs", KIND_INTERNAL, 0, 1, BASE,
                  links=[Link("ab" * 16, "cd" * 8), Link(CHECKOUT, "a000000000000003")])  # fmt: skip
    load(srv.urls.otlp_http, showcase(BASE) + skewed(BASE) + [linker])
    return Client(srv.urls.api)


def column_rows(view):
    """The columns as one tuple per row, names looked up in the string table."""
    c, s = view["columns"], view["strings"]
    return [
        (c["id"][i], c["parent"][i], c["depth"][i], c["children"][i], c["start"][i], c["end"][i],
         s[c["service"][i]], s[c["name"][i]], s[c["kind"][i]], c["status"][i], c["flags"][i])
        for i in range(len(c["id"]))
    ]  # fmt: skip


def test_columns_say_what_the_trace_rows_say(api):
    view = api.get(f"{API}/waterfall/{CHECKOUT}")
    rows = api.get(f"{API}/trace/{CHECKOUT}")
    assert column_rows(view) == [
        (r["id"], r["parent"], r["depth"], r["children"], r["start"], r["end"], r["service"],
         r["name"], r["kind"], r["status"], 0)
        for r in rows["rows"]
    ]  # fmt: skip
    for key in ("trace_id", "t0_ns", "duration_ns", "summary", "critical_path", "breaks", "skew"):
        assert view[key] == rows[key], key
    assert len(view["strings"]) == len(set(view["strings"])) == 13  # 2 services, 7 names, 4 kinds
    assert view["links"] == [[6, CHECKOUT, "a000000000000002"]]  # render -> load cart
    assert view["notes"] == {} and "rows" not in view and "resources" not in view


def test_placeholders_and_incomplete_spans_are_flagged_with_why(api):
    broken = api.get(f"{API}/waterfall/{BROKEN}")
    assert [r[0] for r in column_rows(broken) if r[-1] == 1] == ["f000000000000001"]
    assert broken["notes"] == {
        "2": "parent f000000000000001 of span f000000000000002 never arrived"
    }
    crashed = api.get(f"{API}/waterfall/{CRASHED}")
    (pending,) = [i for i, f in enumerate(crashed["columns"]["flags"]) if f == 2]
    assert crashed["columns"]["id"][pending] == "9000000000000003"
    assert crashed["notes"][str(pending)].startswith("worker pid 301 was killed by signal 9")


def test_span_details_carry_attributes_status_events_and_resource(api):
    api.get(f"{API}/waterfall/{CHECKOUT}")  # shown first, as the page does
    d = api.get(f"{API}/waterfall/{CHECKOUT}/span/b000000000000001")
    assert (d["span_id"], d["status_message"], d["scope"]) == (
        "b000000000000001",
        "card declined",
        "threadline",
    )
    assert [(e["t"], e["name"], e["attributes"]["exception.type"]) for e in d["events"]] == [
        (80 * MS, "exception", "CardDeclined")
    ]
    assert d["resource"]["service.name"] == "payments" and d["resource"]["process.pid"] == 200
    assert d["attributes"]["rpc.method"] == "Charge" and d["links"] == []
    # not shown before (or no longer kept): read again, the same answer
    assert api.get(f"{API}/waterfall/{CHECKOUT}/span/b000000000000001?skew=1") == d


def test_links_name_their_targets_where_known(api):
    (link,) = api.get(f"{API}/waterfall/{MAILER}/span/d000000000000001")["links"]
    assert link == {"trace_id": CHECKOUT, "span_id": "a000000000000004",
                    "attributes": {"messaging.message.id": "m-1"}, "service": "web",
                    "name": "orders publish"}  # fmt: skip
    (own,) = api.get(f"{API}/waterfall/{CHECKOUT}/span/a000000000000005")["links"]
    assert (own["service"], own["name"]) == ("web", "load cart")
    unknown, known = api.get(f"{API}/waterfall/{ORPHAN_LINKER}/span/e100000000000001")["links"]
    assert unknown == {"trace_id": "ab" * 16, "span_id": "cd" * 8, "attributes": {}}
    assert (known["service"], known["name"]) == ("web", "POST /charge")


def test_details_follow_the_clock_options_of_the_view(api):
    plain = api.get(f"{API}/waterfall/{SKEWED}/span/7100000000000001")
    assert [(e["t"], e["name"]) for e in plain["events"]] == [(-24 * MS, "query sent")]
    view = api.get(f"{API}/waterfall/{SKEWED}?skew=1")
    (shift,) = view["skew"]["shifts"]
    assert shift["delta_ns"] == 45 * MS
    moved = api.get(f"{API}/waterfall/{SKEWED}/span/7100000000000001?skew=1")
    assert [(e["t"], e["name"]) for e in moved["events"]] == [(21 * MS, "query sent")]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (f"waterfall/{'x' * 4}", 400, "trace id must be up to 32 hex digits, got 'xxxx'"),
        (f"waterfall/{'e' * 32}", 404, f"trace {'e' * 32} not found"),
        (f"waterfall/{CHECKOUT}/span/zz", 400, "span id must be up to 16 hex digits, got 'zz'"),
        (f"waterfall/{CHECKOUT}/span/{'f' * 16}", 404, f"span {'f' * 16} is not in trace {CHECKOUT}"),
    ],
)  # fmt: skip
def test_bad_and_unknown_ids_are_named(api, path, status, message):
    with pytest.raises(ClientError) as err:
        api.get(f"{API}/{path}")
    assert err.value.status == status
    assert json.loads(str(err.value).removeprefix(f"HTTP {status}: ")) == {"error": message}


def test_columns_are_a_fraction_of_the_rows_payload(srv, api):
    spans = big(BASE, n=3000, trace_id="b16b16b16b16b16b16b16b16b0003000")
    load(srv.urls.otlp_http, spans)

    def size(path):
        with urllib.request.urlopen(srv.urls.api + path, timeout=60) as resp:
            return len(resp.read())

    rows, columns = (
        size(f"{API}/trace/{spans[0].trace_id}"),
        size(f"{API}/waterfall/{spans[0].trace_id}"),
    )
    assert columns * 2.5 < rows, (columns, rows)


def test_recent_keeps_the_newest_traces_within_its_span_budget():
    def shown(trace_id, n):
        return Shown(an.analyse(big(BASE, n=n, trace_id=trace_id)))

    recent = Recent(max_spans=250)
    recent.put("a", shown("a" * 32, 100))
    recent.put("b", shown("b" * 32, 100))
    recent.put("c", shown("c" * 32, 100))  # 300 > 250: the oldest goes
    assert [recent.get(k) is not None for k in "abc"] == [False, True, True]
    recent.put("d", shown("d" * 32, 400))  # over budget alone: kept, alone
    assert [recent.get(k) is not None for k in "abcd"] == [False, False, False, True]
