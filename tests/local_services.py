"""The services on 127.0.0.1 the tests talk to (brokers, databases), checked before a test uses
one: a service that is down is a broken set-up, never a reason to skip."""

from __future__ import annotations

import socket

import pytest


def require(port: int, name: str) -> None:
    """Fail the test, naming the service, when nothing listens on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"{name} is not reachable on 127.0.0.1:{port} ({exc}); scripts/system.sh starts it"
        )
