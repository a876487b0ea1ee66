"""The time an invocation may take, as a hard limit: slow dependencies cost a fallback route, not the call.

`Deadline` says how much of the budget is left; the store checks it before every request and waits no
longer than it for answers from worker threads. `enforced` makes it hard on the thread Lambda runs the
handler on (the main thread): an interval timer interrupts whatever is still running when the budget is
spent, even a request whose answer trickles in too slowly for botocore's per-read timeout to notice.
Elsewhere (local runs that serve calls from many threads) only the checks between requests apply.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType


class Deadline:
    """A monotonic deadline; `remaining()` never goes below zero."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self._ends = time.monotonic() + self.seconds

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


class BudgetSpent(BaseException):
    """Raised inside the handler's thread when its budget runs out. A BaseException, so that no
    `except Exception` between here and the handler (botocore's retries, urllib3) swallows it."""


class _Timer:
    """SIGALRM, armed for one guarded block at a time, on the main thread only."""

    def __init__(self) -> None:
        self._armed = False
        self._installed = False

    def usable(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        if not self._installed:
            # Never take the signal from someone else who handles it.
            if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
                return False
            signal.signal(signal.SIGALRM, self._fire)
            self._installed = True
        return True

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False
            raise BudgetSpent

    @contextlib.contextmanager
    def armed(self, seconds: float) -> Iterator[None]:
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
        try:
            yield
        finally:
            # Disarm before stopping the timer: a signal already on its way is then ignored.
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)


_timer = _Timer()


@contextlib.contextmanager
def enforced(deadline: Deadline) -> Iterator[None]:
    """Run the block within `deadline`: on the main thread, `BudgetSpent` is raised in it when the time is
    up; on other threads the block runs as it is (the store still stops starting requests)."""
    if not _timer.usable():
        yield
        return
    with _timer.armed(deadline.remaining()):
        yield
