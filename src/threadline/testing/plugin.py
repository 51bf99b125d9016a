"""pytest plugin (entry point `threadline`): the `traces` fixture."""

from __future__ import annotations

import pytest

from threadline import seam
from threadline.testing import Capture


@pytest.fixture
def traces():
    """Every span ended during the test, in this process and (via ``traces.endpoint``) others.

    Configures threadline with exporter="none" and service "tests" if the test has not
    configured it; a test may call ``tl.configure(...)`` itself, and capture carries on.

    Child processes started during the test export to ``traces.endpoint`` unless the test
    configured its own OTLP export, whose endpoint they then follow. ``traces.redirect_children``
    says it explicitly: True always to ``traces.endpoint``, False always where the configuration
    says; it is read as each child starts.
    """
    capture = Capture()
    if seam.settings() is None:
        seam.configure("tests", exporter="none")

    def for_children() -> dict[str, str]:
        redirect = capture.redirect_children
        if redirect is None:
            redirect = not _exports_otlp(seam.settings())
        return {"exporter": "otlp", "endpoint": capture.endpoint} if redirect else {}

    seam.add_tap(capture)
    seam.children(for_children)
    try:
        yield capture
    finally:
        seam.children(None)
        seam.flush(5)
        seam.remove_tap(capture)
        capture.close()


def _exports_otlp(settings: seam.Settings | None) -> bool:
    """True when threadline is configured (by the test, before the fixture or during it) to
    export OTLP: children then follow that endpoint unless told otherwise. The fixture's own
    configuration exports nowhere."""
    return settings is not None and "otlp" in settings.exporter.split(",")


def pytest_report_header(config):
    return "threadline: traces fixture available"
