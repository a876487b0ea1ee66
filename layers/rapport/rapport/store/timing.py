"""How long each DynamoDB request took, as the caller waited for it, for the routed log line and metrics."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestTiming:
    """One DynamoDB request as the caller waited for it (botocore's own retries included)."""

    operation: str
    ms: float
    outcome: str = "ok"
    """"ok", "condition failed" (a lost race, expected), or the error that made the store unavailable."""

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok", "condition failed")

    def __str__(self) -> str:
        return f"{self.operation} {self.ms:.1f} ms" + ("" if self.outcome == "ok" else f" ({self.outcome})")


# The requests of the invocation running in this context. Concurrent invocations (threads) keep their own;
# requests sent from worker threads run in a copy of the invocation's context and land in the same list.
_requests: ContextVar[list[RequestTiming] | None] = ContextVar("rapport_store_requests", default=None)


@contextmanager
def recording_requests() -> Iterator[list[RequestTiming]]:
    """Collect the timing of every request made inside the block, in the order they finished."""
    requests: list[RequestTiming] = []
    token = _requests.set(requests)
    try:
        yield requests
    finally:
        _requests.reset(token)


def requests_so_far() -> list[RequestTiming]:
    """The requests recorded so far in this context ([] outside `recording_requests`)."""
    return list(_requests.get() or [])


def record(operation: str, started: float, outcome: str) -> None:
    requests = _requests.get()
    if requests is not None:
        requests.append(RequestTiming(operation, (time.perf_counter() - started) * 1000, outcome))


# Requests sent together (one round trip, `Store.together`) share a round number, so that whoever counts
# round trips counts them as one even when a worker thread happens to start its request late.
_round: ContextVar[int | None] = ContextVar("rapport_store_round", default=None)
_rounds = itertools.count(1)


@contextmanager
def one_round() -> Iterator[None]:
    """Mark the requests started inside the block (and in contexts copied from it) as one round trip."""
    token = _round.set(next(_rounds))
    try:
        yield
    finally:
        _round.reset(token)


def current_round() -> int | None:
    """The round trip the request about to be sent belongs to, when it was sent with others."""
    return _round.get()
