"""A circuit breaker whose state changes are span events, so a trace shows why a call was
refused or let through.

closed --(`failures` in a row)--> open --(`cooldown` seconds)--> half_open --(success)--> closed
                                                                         \\--(failure)--> open
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry import trace

EVENT = "circuit_breaker.state_change"
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(Exception):
    """Refused without calling: the circuit is open."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 3,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures!r}")
        if cooldown <= 0:
            raise ValueError(f"cooldown must be positive, not {cooldown!r}")
        self.name = name
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self.state = CLOSED
        self._in_a_row = 0
        self._opened_at = 0.0
        self._lock = threading.Lock()

    def _move(self, to: str, reason: str) -> None:
        before, self.state = self.state, to
        span = trace.get_current_span()
        span.add_event(
            EVENT,
            {
                "circuit_breaker.name": self.name,
                "circuit_breaker.from": before,
                "circuit_breaker.to": to,
                "circuit_breaker.reason": reason,
            },
        )
        span.set_attribute("circuit_breaker.state", to)

    def check(self) -> None:
        """Before a call: raises CircuitOpen while open; lets one trial call through after the
        cooldown (half open)."""
        with self._lock:
            waited = self.clock() - self._opened_at
            if self.state == OPEN and waited >= self.cooldown:
                self._move(HALF_OPEN, f"cooldown of {self.cooldown}s over: trying one call")
            trace.get_current_span().set_attribute("circuit_breaker.state", self.state)
            if self.state == OPEN:
                raise CircuitOpen(self.name, self.cooldown - waited)

    def success(self) -> None:
        with self._lock:
            self._in_a_row = 0
            if self.state != CLOSED:
                self._move(CLOSED, "trial call succeeded")

    def failure(self, what: str) -> None:
        with self._lock:
            self._in_a_row += 1
            if self.state == HALF_OPEN or (
                self.state == CLOSED and self._in_a_row >= self.failures
            ):
                self._opened_at = self.clock()
                self._move(OPEN, f"{self._in_a_row} failure(s) in a row, last: {what}")
