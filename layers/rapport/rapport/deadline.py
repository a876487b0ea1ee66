"""A per-invocation time budget, so slow dependencies cost a fallback route instead of the call."""

from __future__ import annotations

import contextlib
import time


class Deadline:
    """Monotonic deadline; `remaining()` never goes below zero."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + max(0.0, seconds)

    @classmethod
    def for_invocation(cls, context: object, budget_ms: int, reserve_ms: int = 500) -> Deadline:
        """The smaller of the configured budget and what Lambda leaves us, less time to answer."""
        budget = budget_ms / 1000
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_ms):
            with contextlib.suppress(TypeError, ValueError):
                budget = min(budget, (int(remaining_ms()) - reserve_ms) / 1000)
        return cls(budget)

    def remaining(self) -> float:
        return max(0.0, self._ends - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0
