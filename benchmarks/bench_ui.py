"""The trace view with a 50k-span trace in headless Chromium: time to interactive (navigation to
the waterfall answering input) and the cost of one scrolled frame, against a 7-span trace in the
same run; plus the server-side share: analysis, the trace endpoint (rows, for the CLI and
other clients) against the waterfall endpoint the UI reads (columns), and one span's details.
Skipped with a note when Debian's chromium is not installed."""

from __future__ import annotations

import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS / "server"), str(TESTS)]

import crafted  # noqa: E402

import browser as chromium  # noqa: E402
from threadline.server import analysis  # noqa: E402

N = 50_000
ROUNDS = 3

SCROLL = """async () => {
  const vp = document.querySelector('.viewport');
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t0 = performance.now();
  for (let i = 1; i <= 60; i++) { vp.scrollTop = (vp.scrollHeight * i) / 61; await frame(); }
  return (performance.now() - t0) / 60;
}"""


MARKS = """() => ['trace-fetch-start', 'trace-fetched', 'trace-interactive']
  .map(name => performance.getEntriesByName(name)[0].startTime)"""


def tti(page, url: str) -> tuple[float, float]:
    """(navigation to interactive, the browser's own share: building the view once fetched)."""
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_selector("body[data-ready=trace]", timeout=120_000)
    _, fetched, interactive = page.evaluate(MARKS)
    return interactive, interactive - fetched


def fetched(url: str) -> tuple[float, int]:
    """(best of ROUNDS wall ms, size in bytes) of a GET."""
    best, size = float("inf"), 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as resp:
            size = len(resp.read())
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best, size


def run() -> list[dict]:
    from threadline import server

    base = time.time_ns() - 60 * 10**9
    spans = crafted.big(base, n=N)
    rows = []
    t = [0.0] * ROUNDS
    for i in range(ROUNDS):
        start = time.perf_counter()
        analysis.analyse(spans)
        t[i] = (time.perf_counter() - start) * 1e3
    rows.append({"name": f"analyse() {N // 1000}k-span trace", "value": min(t), "unit": "ms"})
    if not os.path.exists(chromium.CHROMIUM):
        rows.append(
            {
                "name": "trace view time to interactive",
                "value": 0.0,
                "unit": "ms",
                "note": "skipped: Debian chromium is not installed (make system)",
            }
        )
        return rows
    from playwright.sync_api import sync_playwright

    with server.start(db=":memory:") as srv, sync_playwright() as p:
        crafted.load(srv.urls.otlp_http, spans, batch=5000)
        crafted.load(srv.urls.otlp_http, crafted.checkout(base))
        big_id, small_id = spans[0].trace_id, crafted.CHECKOUT
        analysis_api = f"{srv.urls.api}/api/threadline/analysis"
        rows_ms, rows_size = fetched(f"{analysis_api}/trace/{big_id}")
        columns_ms, columns_size = fetched(f"{analysis_api}/waterfall/{big_id}")
        detail_ms, _ = fetched(f"{analysis_api}/waterfall/{big_id}/span/{spans[N // 2].span_id}")
        rows.append(
            {
                "name": f"trace endpoint (rows), {N // 1000}k spans ({rows_size / 1e6:.1f} MB JSON)",
                "value": rows_ms,
                "unit": "ms",
            }
        )
        rows.append(
            {
                "name": f"waterfall endpoint (the UI's columns), {columns_size / 1e6:.1f} MB JSON",
                "value": columns_ms,
                "unit": "ms",
                "baseline": rows_ms,
                "ratio_to": "trace endpoint",
            }
        )
        rows.append({"name": "a selected span's details", "value": detail_ms, "unit": "ms"})
        browser = chromium.launch(p)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        small = min(tti(page, f"{srv.urls.api}/#/trace/{small_id}") for _ in range(ROUNDS))
        big = min(tti(page, f"{srv.urls.api}/#/trace/{big_id}") for _ in range(ROUNDS))
        for i, what in enumerate(
            ("time to interactive", "of which building the view in the browser")
        ):
            rows.append(
                {
                    "name": f"trace view {what}, {N // 1000}k spans",
                    "value": big[i],
                    "unit": "ms",
                    "baseline": small[i],
                    "ratio_to": "7-span trace",
                }
            )
        page.goto(f"{srv.urls.api}/#/trace/{small_id}")
        page.wait_for_selector("body[data-ready=trace]")
        small_frames = [page.evaluate(SCROLL) for _ in range(ROUNDS)]
        page.goto(f"{srv.urls.api}/#/trace/{big_id}")
        page.wait_for_selector("body[data-ready=trace]", timeout=120_000)
        frames = [page.evaluate(SCROLL) for _ in range(ROUNDS)]
        rows.append(
            {
                "name": f"scrolled frame, {N // 1000}k spans (60 jumps)",
                "value": statistics.median(frames),
                "unit": "ms",
                "baseline": statistics.median(small_frames),
                "ratio_to": "7-span trace",
            }
        )
        browser.close()
    return rows
