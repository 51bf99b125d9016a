"""A broker or database that is down fails the test that needs it, naming it; never a skip."""

from __future__ import annotations

import pytest

from local_services import require


def test_a_service_that_is_down_fails_naming_it():
    with pytest.raises(pytest.fail.Exception) as failed:
        require(1, "PostgreSQL")  # nothing listens on port 1
    assert str(failed.value).startswith("PostgreSQL is not reachable on 127.0.0.1:1 (")
    assert str(failed.value).endswith("); scripts/system.sh starts it")
