import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from threadline import _export


@pytest.fixture
def memory():
    """threadline configured with an in-memory exporter; restored to the test default after."""
    exporter = InMemorySpanExporter()
    tl.configure("core-tests", exporter=exporter, boundaries=False)
    _export.stats.reset()
    yield exporter
    tl.configure("tests", exporter="none")
    _export.stats.reset()


@pytest.fixture
def finished():
    """finished(exporter) -> the spans it received, after a flush."""

    def read(exporter):
        tl.flush()
        return exporter.get_finished_spans()

    return read
