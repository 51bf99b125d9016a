"""Shared test set-up. The `traces` fixture comes from the threadline pytest plugin."""

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).parent))  # tests/browser.py, under --import-mode=importlib


@pytest.fixture(scope="module", autouse=True)
def _instrumentation_ends_with_its_module():
    """What a module's tl.instrument() turned on (the contrib instrumentations, the database
    conventions' opt-in, the Server-Timing propagator) ends with the module: a later module
    gets no spans it did not ask for."""
    yield
    http = sys.modules.get("threadline.integrations.http")  # never imported just for this
    if http is not None:
        http.uninstrument()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright, installed when missing (else the test
    fails, saying why), one per test module."""
    from playwright.sync_api import sync_playwright  # the dev extra: missing is a failure

    import browser as chromium

    reason = chromium.ensure_chromium()
    if reason:
        pytest.fail(f"no browser for this test: {reason}")
    with sync_playwright() as p:
        b = chromium.launch(p)
        yield b
        b.close()
