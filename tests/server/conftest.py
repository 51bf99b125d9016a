"""Server tests share sample data (tests/server/*.py helpers); make those modules importable
under --import-mode=importlib, where test directories are not put on sys.path."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def srv():
    """A threadline server on ephemeral ports with an in-memory store, for the module's tests."""
    from threadline import server

    with server.start(db=":memory:") as s:
        yield s
