"""`make screenshots`: start a server on ephemeral ports, send it crafted traces over OTLP, and
save a PNG of each UI page (headless Debian chromium) to docs/screenshots/ for the README."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "server"), str(ROOT / "tests")]

import crafted  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

import browser as chromium  # noqa: E402
from threadline import server  # noqa: E402

PAGES = [  # file, route, selector to wait for, actions
    ("search.png", "#/?lookback=15m", "body[data-ready=search]", []),
    (
        "trace.png",
        f"#/trace/{crafted.CHECKOUT}?span=b000000000000001",
        "body[data-ready=trace]",
        [],
    ),
    (
        "trace-broken.png",
        f"#/trace/{crafted.BROKEN}",
        "body[data-ready=trace]",
        [".row.placeholder"],
    ),
    (
        "trace-crashed.png",
        f"#/trace/{crafted.CRASHED}?span=9000000000000003",
        "body[data-ready=trace]",
        [],
    ),
    ("map.png", "#/map", "svg.map", [".edge-label[data-kind=messaging]"]),
    ("completeness.png", "#/completeness", ".cards", []),
]


def main(out: str = "docs/screenshots") -> int:
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    base = time.time_ns() - 60 * 10**9
    with server.start(db=":memory:") as srv, sync_playwright() as p:
        spans = (
            crafted.checkout(base)
            + crafted.mailer(base)
            + crafted.broken(base)
            + crafted.crashed(base)
            + crafted.users(base)
        )
        crafted.load(srv.urls.otlp_http, crafted.history(base) + spans)
        browser = chromium.launch(p)
        page = browser.new_page(viewport={"width": 1440, "height": 860})
        for name, route, ready, clicks in PAGES:
            page.goto(f"{srv.urls.api}/{route}")
            page.wait_for_selector(ready)
            for selector in clicks:
                page.click(selector)
            page.wait_for_timeout(300)  # let the live search and transitions settle
            page.screenshot(path=str(target / name))
            print(f"wrote {target / name}")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
