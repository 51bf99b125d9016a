"""pytest plugin (entry point `threadline`): the `traces` fixture."""

from __future__ import annotations

import pytest

from threadline import seam
from threadline.testing import Capture


@pytest.fixture
def traces():
    """Every span ended during the test, in this process and (via ``traces.endpoint``) others.

    Configures threadline with exporter="none" and service "tests" if the test has not
    configured it; a test may call ``tl.configure(...)`` itself, and capture carries on. Child
    processes started during the test export to ``traces.endpoint``.
    """
    capture = Capture()
    if seam.settings() is None:
        seam.configure("tests", exporter="none")
    seam.add_tap(capture)
    seam.children(lambda: {"exporter": "otlp", "endpoint": capture.endpoint})
    try:
        yield capture
    finally:
        seam.children(None)
        seam.flush(5)
        seam.remove_tap(capture)
        capture.close()


def pytest_report_header(config):
    return "threadline: traces fixture available"
