"""What the call flow needs from storage, and the errors it may see.

Two implementations keep the same promises, checked by the same contract tests: `DynamoStore` (the one
door to DynamoDB) and `MemoryStore` (for fast unit tests and the benchmark of the handler's own work).
Every call-path method costs one request, takes a `Deadline`, and raises `StoreUnavailable` rather than
outlive it. The layout of the table is in docs/data-model.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from rapport.budget import Deadline
from rapport.models import Agent, CallerContext, CallerProfile, DecisionRecord, Interest, Offer, Product
from rapport.pools import Directory, PoolView, Seat

T = TypeVar("T")

MAX_CALL_SECONDS = 4 * 3600
"""Longest time a call keeps an agent once connected, in case its HANGUP never arrives."""


class StoreError(Exception):
    """Base of the few errors the store raises; callers turn them into a safe route."""


class StoreUnavailable(StoreError):
    """DynamoDB did not answer in time, throttled, or failed; the reason is in the message."""


class ConditionFailed(StoreError):
    """A conditional write found the item in another state than expected; nothing was written."""


class AgentTaken(ConditionFailed):
    """The agent is held by another call (or offline, or gone). `seats` is the pool as it is now."""

    def __init__(self, message: str, seats: Mapping[str, Seat]) -> None:
        super().__init__(message)
        self.seats = seats


@dataclass(frozen=True)
class LetGo:
    """An agent a call holds and no longer needs: one who did not answer (`missed`: counted, and to the
    back of the queue), or one it held early and then routed elsewhere (as if never held)."""

    agent_id: str
    missed: bool


class Store(Protocol):
    # -- the call path: one request each -------------------------------------------------------------

    def caller_context(
        self, caller_key: str, now: float, deadline: Deadline | None = None, records: int = 3
    ) -> CallerContext:
        """Profile, interests, last-agent link and the times of the latest `records` calls routed on
        interest data, of one caller (expired items left out)."""
        ...

    def pool(self, pool_id: str, now: float, deadline: Deadline) -> PoolView:
        """One pool's routing data and availability."""
        ...

    def directory(self, deadline: Deadline) -> Directory:
        """The pools and which products' agents they hold."""
        ...

    def reserve(
        self,
        pool_id: str,
        agent_id: str,
        tag: str,
        now: float,
        hold_until: float,
        deadline: Deadline,
        let_go: LetGo | None = None,
    ) -> int | None:
        """Hold a free agent for the call tagged `tag` (repeating it for that call is harmless) and, in the
        same write, let go of another agent of the same pool this call holds. Raises `AgentTaken`, with the
        pool's availability as it is, when the agent is not free (and then lets go of nobody). Returns
        the let-go agent's calls not answered in a row when they missed one, else None."""
        ...

    def let_go(self, pool_id: str, agent: LetGo, tag: str, now: float, deadline: Deadline) -> int | None:
        """Free an agent this call holds; a no-op if the call no longer holds them. Returns their calls not
        answered in a row when they missed this one (None otherwise, or when nothing was done)."""
        ...

    def set_away(self, pool_id: str, agent_id: str, reason: str, now: float, deadline: Deadline) -> None:
        """Set an available agent away, with the reason. Raises `ConditionFailed` if they are not
        available (or not there)."""
        ...

    def connect(self, pool_id: str, agent_id: str, tag: str, now: float, deadline: Deadline) -> None:
        """The agent answered: hold them for the call. Raises `ConditionFailed` if the call no longer
        holds them (a late or repeated event)."""
        ...

    def release(
        self, pool_id: str, agent_id: str, tag: str, now: float, talked: bool, deadline: Deadline
    ) -> None:
        """The call ended: an agent who talked goes into wrap-up, one still ringing is free at once.
        Raises `ConditionFailed` if the call no longer holds them."""
        ...

    def count_call(self, caller_key: str, window_seconds: int, now: float, deadline: Deadline) -> int:
        """Count one more new call of this caller in the current rate-limit window; the count so far,
        this call included. One try, never retried: a throttled or failed count must not hold up the
        round trip it shares with the caller's context."""
        ...

    def put_record(self, record: DecisionRecord, deadline: Deadline) -> None:
        """Store a call's decision record (with the last-agent link it leaves, if any)."""
        ...

    def put_offer(self, offer: Offer, deadline: Deadline) -> None:
        """Offer a call to a browser agent's page (kept until the offer's end)."""
        ...

    def withdraw_offer(self, agent_id: str, call_id: str, deadline: Deadline) -> None:
        """The caller is gone: take the offer back (whether or not it is still there)."""
        ...

    def together(self, requests: Sequence[Callable[[], T]], deadline: Deadline) -> list[T | StoreError]:
        """Send independent requests at once (one round trip); each result or its error, in order."""
        ...

    # -- off the call path ------------------------------------------------------------------------------

    def decision(self, caller_key: str | None, call_id: str) -> DecisionRecord | None: ...

    def agent(self, agent_id: str) -> Agent | None: ...

    def agents(self) -> list[Agent]: ...

    def put_agent(self, agent: Agent) -> None:
        """Add an agent, or replace what is known of them (availability included)."""
        ...

    def load_roster(self, agents: Sequence[Agent]) -> None:
        """Write a whole roster at once, packed into pools (an empty table's first roster)."""
        ...

    def put_product(self, product: Product) -> None: ...

    def put_caller(
        self,
        caller_key: str,
        profile: CallerProfile | None,
        interests: Sequence[Interest],
        records: Sequence[DecisionRecord] = (),
    ) -> None:
        """Write a caller's profile, interests and earlier decision records (loading scenario data)."""
        ...


__all__ = [
    "MAX_CALL_SECONDS",
    "AgentTaken",
    "ConditionFailed",
    "LetGo",
    "Store",
    "StoreError",
    "StoreUnavailable",
]
