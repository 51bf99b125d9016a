"""What a customer of the demo shop saw of one checkout: the shop's driver and its live page
both describe checkouts this way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """One checkout as the customer saw it."""

    status: int
    body: dict[str, Any]
    trace_id: str | None
    retry_after: float | None = None
    sampled: bool = True

    @property
    def label(self) -> str:
        return {
            200: "placed",
            402: "declined",
            502: "payment failed",
            503: "circuit open",
        }.get(self.status, f"HTTP {self.status}")
