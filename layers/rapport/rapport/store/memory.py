"""The store in memory, keeping `DynamoStore`'s promises (the contract tests hold both to them).

For unit tests of the call flow (failover, lost races, outages in milliseconds) and for measuring the
handler's own work without I/O. `before_request`, when set, is called with each call-path operation's
name first and may raise a `StoreError` or take its time, as a failing or slow table would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from rapport.budget import Deadline
from rapport.models import (
    LINE_MARK,
    Agent,
    CallerContext,
    CallerProfile,
    DecisionRecord,
    Interest,
    Offer,
    Presence,
    Product,
    RoutingMode,
    agent_of,
)
from rapport.pools import Directory, Member, PoolView, Seat, line_seats, member_of, seated
from rapport.store import MAX_CALL_SECONDS, AgentTaken, ConditionFailed, LetGo, StoreError, StoreUnavailable
from rapport.store.layout import (
    DECISION_PREFIX,
    INTEREST_PREFIX,
    MAX_INTERESTS,
    PROFILE_SK,
    RECENT_RECORDS,
    pack,
    pool_fits,
    record_key,
)

T = TypeVar("T")
MIN_REQUEST_SECONDS = 0.05


@dataclass
class _Caller:
    profile: CallerProfile | None = None
    interests: dict[str, Interest] = field(default_factory=dict)
    calls: dict[int, int] = field(default_factory=dict)
    """New calls by rate-limit window."""
    records: dict[str, bytes] = field(default_factory=dict)
    """By sort key, encoded as the table holds them: a stored record shares no object with the code that
    wrote or reads it, and (like DynamoDB's data) adds nothing for the garbage collector to walk."""


@dataclass
class _Pool:
    members: dict[str, Member] = field(default_factory=dict)
    seats: dict[str, Seat] = field(default_factory=dict)


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callers: dict[str, _Caller] = {}
        self._anonymous: dict[str, bytes] = {}
        self._pools: dict[str, _Pool] = {}
        self._agents: dict[str, Agent] = {}
        self._directory = Directory()
        self.products: dict[str, Product] = {}
        self.offers: dict[tuple[str, str], Offer] = {}
        """Calls offered to browser agents, by (agent, call)."""
        self.before_request: Callable[[str], None] | None = None
        self.requests: list[str] = []
        """Every call-path operation, in order, as DynamoDB would name it."""
        self.rounds: list[list[str]] = []
        """The same operations grouped by round trip: those sent `together` share one."""
        self._together = 0
        self._round_open = False

    def _request(self, operation: str, deadline: Deadline | None) -> None:
        if deadline is not None and deadline.remaining() < MIN_REQUEST_SECONDS:
            raise StoreUnavailable(f"time budget spent before {operation}")
        self.requests.append(operation)
        if self._together and self._round_open:
            self.rounds[-1].append(operation)
        else:
            self.rounds.append([operation])
            self._round_open = self._together > 0
        if self.before_request is not None:
            self.before_request(operation)

    # -- the call path --------------------------------------------------------------------------------

    def together(self, requests: Sequence[Callable[[], T]], deadline: Deadline) -> list[T | StoreError]:
        results: list[T | StoreError] = []
        if not self._together:
            self._round_open = False
        self._together += 1
        try:
            for request in requests:
                try:
                    results.append(request())
                except StoreError as error:
                    results.append(error)
        finally:
            self._together -= 1
        return results

    def caller_context(
        self, caller_key: str, now: float, deadline: Deadline | None = None, records: int = RECENT_RECORDS
    ) -> CallerContext:
        self._request("Query", deadline)
        with self._lock:
            caller = self._callers.get(caller_key, _Caller())
            items: list[tuple[str, object]] = [(PROFILE_SK, caller.profile)] if caller.profile else []
            items += [
                (f"{INTEREST_PREFIX}{product}", interest) for product, interest in caller.interests.items()
            ]
            items += list(caller.records.items())
        items.sort(key=lambda entry: entry[0], reverse=True)
        context = CallerContext()
        interests: list[Interest] = []
        routed: list[float] = []
        for sk, value in items[: 1 + MAX_INTERESTS + max(records, 1)]:
            if isinstance(value, CallerProfile):
                context = context.model_copy(update={"profile": value})
            elif isinstance(value, Interest) and (value.expires_at is None or value.expires_at > now):
                interests.append(value)
            elif isinstance(value, bytes) and sk.startswith(DECISION_PREFIX) and context.last_agent is None:
                record = DecisionRecord.model_validate_json(value)
                if record.expires_at <= now:
                    continue
                if record.mode is RoutingMode.INTEREST:
                    routed.append(record.decided_at)
                if context.last_agent is None and record.link is not None and record.link.expires_at > now:
                    context = context.model_copy(update={"last_agent": record.link})
        return context.model_copy(update={"interests": interests, "interest_routed_at": routed})

    def pool(self, pool_id: str, now: float, deadline: Deadline) -> PoolView:
        self._request("Query", deadline)
        with self._lock:
            pool = self._pools.get(pool_id, _Pool())
            return PoolView(pool_id, dict(pool.members), self._copy(pool.seats), roster_at=now, seats_at=now)

    def directory(self, deadline: Deadline) -> Directory:
        self._request("GetItem", deadline)
        return self._directory

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
        self._request("UpdateItem", deadline)
        with self._lock:
            seats = self._pools.get(pool_id, _Pool()).seats
            first = seats.get(agent_of(agent_id))
            seat = seats.get(agent_id)
            if seat is None or first is None or first.presence is not Presence.ONLINE:
                raise AgentTaken(f"{agent_id} is not available", self._copy(seats))
            if not seat.open_for(tag, now):
                raise AgentTaken(f"{agent_id} is not free", self._copy(seats))
            missed = None
            if let_go is not None and let_go.agent_id != agent_id:
                missed = self._free(seats, let_go, tag, now)
            seats[agent_id] = seat.held(tag, hold_until)
            return missed

    def let_go(self, pool_id: str, agent: LetGo, tag: str, now: float, deadline: Deadline) -> int | None:
        self._request("UpdateItem", deadline)
        with self._lock:
            return self._free(self._pools.get(pool_id, _Pool()).seats, agent, tag, now)

    def set_away(self, pool_id: str, agent_id: str, reason: str, now: float, deadline: Deadline) -> None:
        self._request("TransactWriteItems", deadline)
        with self._lock:
            seats = self._pools.get(pool_id, _Pool()).seats
            seat = seats.get(agent_id)
            if seat is None or seat.presence is not Presence.ONLINE:
                raise ConditionFailed(f"{agent_id} is not available")
            seats[agent_id] = replace(seat, presence=Presence.AWAY)

    @staticmethod
    def _copy(seats: dict[str, Seat]) -> dict[str, Seat]:
        """The pool's seats as DynamoDB would return them: further lines carry their agent's presence,
        no-answers and wrap-up."""
        copied = dict(seats)
        for key, seat in copied.items():
            if LINE_MARK in key and (first := copied.get(agent_of(key))) is not None:
                copied[key] = replace(
                    seat,
                    presence=first.presence,
                    no_answers=first.no_answers,
                    wrap_up_seconds=first.wrap_up_seconds,
                )
        return copied

    @staticmethod
    def _free(seats: dict[str, Seat], agent: LetGo, tag: str, now: float) -> int | None:
        seat = seats.get(agent.agent_id)
        if seat is None or seat.held_by != tag:
            return None
        freed = seat.let_go(now, missed=False)
        if not agent.missed:
            seats[agent.agent_id] = freed
            return None
        # To the back of the queue; the miss counts on the agent, kept on their first seat as in DynamoDB.
        seats[agent.agent_id] = replace(freed, idle_since=now)
        first_key = agent_of(agent.agent_id)
        seats[first_key] = replace(seats[first_key], no_answers=seats[first_key].no_answers + 1)
        return seats[first_key].no_answers

    def _held(self, pool_id: str, agent_id: str, tag: str) -> dict[str, Seat]:
        seats = self._pools.get(pool_id, _Pool()).seats
        seat = seats.get(agent_id)
        if seat is None or seat.held_by != tag:
            raise ConditionFailed(f"{agent_id} is not held by this call")
        return seats

    def connect(self, pool_id: str, agent_id: str, tag: str, now: float, deadline: Deadline) -> None:
        self._request("UpdateItem", deadline)
        with self._lock:
            seats = self._held(pool_id, agent_id, tag)
            seats[agent_id] = seats[agent_id].talking(now + MAX_CALL_SECONDS)
            first_key = agent_of(agent_id)
            seats[first_key] = replace(seats[first_key], no_answers=0)

    def release(
        self, pool_id: str, agent_id: str, tag: str, now: float, talked: bool, deadline: Deadline
    ) -> None:
        self._request("UpdateItem", deadline)
        with self._lock:
            seats = self._held(pool_id, agent_id, tag)
            seat = replace(seats[agent_id], wrap_up_seconds=seats[agent_of(agent_id)].wrap_up_seconds)
            seats[agent_id] = seat.after_call(now) if talked else seat.let_go(now, missed=False)

    def put_offer(self, offer: Offer, deadline: Deadline) -> None:
        self._request("PutItem", deadline)
        with self._lock:
            self.offers[(offer.agent_id, offer.call_id)] = offer

    def withdraw_offer(self, agent_id: str, call_id: str, deadline: Deadline) -> None:
        self._request("DeleteItem", deadline)
        with self._lock:
            self.offers.pop((agent_id, call_id), None)

    def count_call(self, caller_key: str, window_seconds: int, now: float, deadline: Deadline) -> int:
        self._request("UpdateItem", deadline)
        window = int(now // window_seconds)
        with self._lock:
            counts = self._callers.setdefault(caller_key, _Caller()).calls
            counts[window] = counts.get(window, 0) + 1
            return counts[window]

    def put_record(self, record: DecisionRecord, deadline: Deadline) -> None:
        self._request("PutItem", deadline)
        key = record_key(record.caller_key, record.call_id, record.decided_at)
        with self._lock:
            if record.caller_key:
                self._callers.setdefault(record.caller_key, _Caller()).records[key["sk"]] = _encoded(record)
            else:
                self._anonymous[record.call_id] = _encoded(record)

    # -- off the call path ----------------------------------------------------------------------------

    def decision(self, caller_key: str | None, call_id: str) -> DecisionRecord | None:
        with self._lock:
            if not caller_key:
                stored = self._anonymous.get(call_id)
                return DecisionRecord.model_validate_json(stored) if stored else None
            records = self._callers.get(caller_key, _Caller()).records.values()
        decoded = (DecisionRecord.model_validate_json(record) for record in records)
        return next((record for record in decoded if record.call_id == call_id), None)

    def agent(self, agent_id: str) -> Agent | None:
        with self._lock:
            stored = self._agents.get(agent_id)
            if stored is None:
                return None
            seat = self._pools[stored.pool].seats.get(agent_id)
        return seated(stored, seat)

    def agents(self) -> list[Agent]:
        return [agent for agent_id in list(self._agents) if (agent := self.agent(agent_id)) is not None]

    def put_agent(self, agent: Agent) -> None:
        with self._lock:
            existing = self._agents.get(agent.agent_id)
            pool_id = existing.pool if existing else self._pool_with_room(agent)
            agent = agent.model_copy(update={"pool": pool_id})
            pool = self._pools.setdefault(pool_id, _Pool())
            pool.members[agent.agent_id] = member_of(agent)
            for key in [k for k in pool.seats if agent_of(k) == agent.agent_id]:
                del pool.seats[key]
            pool.seats.update(line_seats(agent))
            self._agents[agent.agent_id] = agent
            if existing is None:
                self._place(agent, pool_id)

    def _pool_with_room(self, agent: Agent) -> str:
        preferred = self._directory.by_product.get(agent.primary_product() or "", ())
        for pool_id in [*preferred, *reversed(self._directory.pools)]:
            members = [a for a in self._agents.values() if a.pool == pool_id]
            if pool_fits([*members, agent]):
                return pool_id
        return str(len(self._directory.pools))

    def _place(self, agent: Agent, pool_id: str) -> None:
        by_product = dict(self._directory.by_product)
        primary = agent.primary_product()
        if primary and pool_id not in by_product.get(primary, ()):
            by_product[primary] = (*by_product.get(primary, ()), pool_id)
        pools = (
            self._directory.pools if pool_id in self._directory.pools else (*self._directory.pools, pool_id)
        )
        self._directory = Directory(pools=pools, by_product=by_product)

    def load_roster(self, agents: Sequence[Agent]) -> None:
        with self._lock:
            for index, members in enumerate(pack(agents)):
                pool_id = str(index)
                for agent in members:
                    placed = agent.model_copy(update={"pool": pool_id})
                    pool = self._pools.setdefault(pool_id, _Pool())
                    pool.members[agent.agent_id] = member_of(placed)
                    pool.seats.update(line_seats(placed))
                    self._agents[agent.agent_id] = placed
                    self._place(placed, pool_id)

    def put_product(self, product: Product) -> None:
        self.products[product.product_id] = product

    def put_caller(
        self,
        caller_key: str,
        profile: CallerProfile | None,
        interests: Sequence[Interest],
        records: Sequence[DecisionRecord] = (),
    ) -> None:
        with self._lock:
            caller = self._callers.setdefault(caller_key, _Caller())
            if profile is not None:
                caller.profile = profile
            caller.interests.update({interest.product: interest for interest in interests})
            for record in records:
                sk = record_key(caller_key, record.call_id, record.decided_at)["sk"]
                caller.records[sk] = _encoded(record)


def _encoded(record: DecisionRecord) -> bytes:
    return record.model_dump_json(by_alias=True).encode()
