"""Shop: failures while starting are reported with the failing service's own words."""

from __future__ import annotations

import pytest

from threadline.demo.shop import Shop, ShopError


def test_a_service_that_cannot_start_is_named_with_its_log():
    with pytest.raises(ShopError) as failed:
        Shop("not-a-url").start()
    message = str(failed.value)
    assert "exited while starting" in message
    assert "endpoint must be an http(s) URL" in message  # the service's own traceback


def test_bad_sample_ratio():
    with pytest.raises(ValueError, match="sample_ratio"):
        Shop("http://127.0.0.1:4318", sample_ratio=1.5)
