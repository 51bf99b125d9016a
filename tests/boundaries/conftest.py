import pytest

from threadline.boundaries import asyncio as asyncio_boundary
from threadline.boundaries import threads


@pytest.fixture(autouse=True)
def default_boundaries():
    """Every test starts and ends with threads + asyncio installed under the default policy."""
    threads.instrument(relation="child")
    asyncio_boundary.instrument(relation="child")
    yield
    threads.instrument(relation="child")
    asyncio_boundary.instrument(relation="child")
