"""Agent pools: how a call finds candidates in bounded work, whatever the size of the roster.

Agents are kept in pools of up to ~16 (docs/data-model.md). A pool is read in one request and an agent in
it is reserved with one conditional write on the pool's availability item, which answers with the
pool's fresh availability. Each container keeps what it last saw of the pools it uses (`PoolViews`):
routing data for `ROSTER_MAX_AGE`, availability for `AVAILABILITY_MAX_AGE`, refreshed by every answer
to its own writes. The conditional reservation, not the view, decides who gets an agent.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from pydantic import Field

from rapport.models import (
    Agent,
    AgentEndpoint,
    AgentId,
    AgentState,
    Model,
    Presence,
    ProductId,
    ProductStats,
    Proficiency,
    line_key,
)

AVAILABILITY_MAX_AGE = 5.0
"""Seconds a container trusts what it saw of a pool's availability before reading the pool again."""
ROSTER_MAX_AGE = 60.0
"""Seconds a container trusts a pool's routing data (skills, endpoints, stats) and the pool directory."""
POOL_TURN_SECONDS = 5.0
"""How long a container keeps taking agents from the same pool before it picks another at random, so
that every pool's agents are offered calls, not only those of the pools a busy container started on."""


def call_tag(call_id: str) -> str:
    """The short, fixed-size mark a call leaves on the agent it holds (12 hex characters)."""
    return hashlib.blake2b(call_id.encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class Seat:
    """An agent's availability, as the pool's availability item holds it. A plain dataclass: every write's
    answer carries a pool's worth of them, so they are decoded on the hot path."""

    presence: Presence = Presence.ONLINE
    state: AgentState = AgentState.IDLE
    busy_until: float = 0.0
    idle_since: float = 0.0
    held_by: str | None = None
    no_answers: int = 0
    wrap_up_seconds: int = 30

    def free_for(self, tag: str | None, now: float) -> bool:
        """Online and not held, or held by the call tagged `tag` (a repeated event finds its agent)."""
        return self.presence is Presence.ONLINE and self.open_for(tag, now)

    def open_for(self, tag: str | None, now: float) -> bool:
        """Not held, or held by the call tagged `tag`, whatever the agent's presence."""
        return self.busy_until <= now or (tag is not None and self.held_by == tag)

    @property
    def busy_since_or_idle(self) -> float:
        """When this line last became free, or, while it is taken, when it will be: how long-idle a line
        counts in the idle order (a line in use is not idle at all)."""
        if self.held_by is not None or self.state is not AgentState.IDLE:
            return max(self.idle_since, self.busy_until)
        return self.idle_since

    # The agent's transitions, as the conditional writes in rapport.store.dynamodb make them.

    def held(self, tag: str, until: float) -> Seat:
        return replace(self, state=AgentState.RINGING, busy_until=until, held_by=tag)

    def talking(self, until: float) -> Seat:
        return replace(self, state=AgentState.ON_CALL, busy_until=until, no_answers=0)

    def after_call(self, now: float) -> Seat:
        """The call ended after they talked: wrap-up, then free (and last in the idle order)."""
        free_at = now + self.wrap_up_seconds
        return replace(self, state=AgentState.WRAP_UP, busy_until=free_at, idle_since=free_at, held_by=None)

    def let_go(self, now: float, missed: bool) -> Seat:
        """Free again: after a no-answer (counted, last in the idle order), or untouched otherwise."""
        if missed:
            return replace(
                self,
                state=AgentState.IDLE,
                busy_until=now,
                idle_since=now,
                held_by=None,
                no_answers=self.no_answers + 1,
            )
        return replace(self, state=AgentState.IDLE, busy_until=now, held_by=None)


class Member(Model):
    """What routing needs to know of an agent that changes rarely: skills, record, where they ring."""

    endpoint: AgentEndpoint
    proficiency: dict[ProductId, Proficiency] = Field(default_factory=dict)
    stats: dict[ProductId, ProductStats] = Field(default_factory=dict)


def line_seats(agent: Agent) -> dict[str, Seat]:
    """An agent's lines as their pool's availability item holds them: their seat, then one idle seat per
    further call they may take at once (presence, no-answers and wrap-up count on the first)."""
    first = seat_of(agent)
    idle = Seat(
        presence=first.presence,
        idle_since=agent.idle_since,
        no_answers=first.no_answers,
        wrap_up_seconds=first.wrap_up_seconds,
    )
    return {
        agent.agent_id: first,
        **{line_key(agent.agent_id, line): idle for line in range(2, agent.max_concurrent_calls + 1)},
    }


def lines_of(seats: Mapping[str, Seat], agent_id: str) -> list[tuple[int, Seat]]:
    """An agent's lines in `seats`, by number: (1, seat), (2, seat), …; empty if they have none."""
    first = seats.get(agent_id)
    if first is None:
        return []
    found = [(1, first)]
    line = 2
    while (seat := seats.get(line_key(agent_id, line))) is not None:
        found.append((line, seat))
        line += 1
    return found


def free_line(seats: Mapping[str, Seat], agent_id: str, tag: str | None, now: float) -> int:
    """The line of an agent a call should try to hold: the one it holds already, else the first free one
    as `seats` show them, else their first (the conditional write then says it is taken)."""
    lines = lines_of(seats, agent_id)
    if len(lines) <= 1:
        return 1
    held = next((line for line, seat in lines if tag is not None and seat.held_by == tag), None)
    if held is not None:
        return held
    return next((line for line, seat in lines if seat.busy_until <= now), 1)


def seat_of(agent: Agent) -> Seat:
    return Seat(
        presence=agent.presence,
        state=agent.state,
        busy_until=agent.busy_until,
        idle_since=agent.idle_since,
        held_by=agent.reserved_by,
        no_answers=agent.no_answers,
        wrap_up_seconds=agent.wrap_up_seconds,
    )


def seated(agent: Agent, seat: Seat | None) -> Agent:
    """The stored agent with their availability as their pool holds it (the reverse of `seat_of`)."""
    if seat is None:
        return agent
    return agent.model_copy(
        update={
            "presence": seat.presence,
            "state": seat.state,
            "busy_until": seat.busy_until,
            "idle_since": seat.idle_since,
            "reserved_by": seat.held_by,
            "no_answers": seat.no_answers,
            "wrap_up_seconds": seat.wrap_up_seconds,
        }
    )


def member_of(agent: Agent) -> Member:
    return Member(endpoint=agent.endpoint, proficiency=agent.proficiency, stats=agent.stats)


@dataclass(frozen=True, slots=True)
class PooledAgent:
    """An agent as one pool view shows them to routing: `Member` and `Seat` side by side."""

    agent_id: AgentId
    pool: str
    member: Member
    seat: Seat
    """The agent's first line: their presence, no-answers and wrap-up time are kept on it."""
    more_lines: tuple[Seat, ...] = ()
    """Lines 2, 3, … of an agent who takes more than one call at once."""

    @property
    def endpoint(self) -> AgentEndpoint:
        return self.member.endpoint

    @property
    def proficiency(self) -> Mapping[str, int]:
        return self.member.proficiency

    @property
    def stats(self) -> Mapping[str, ProductStats]:
        return self.member.stats

    @property
    def idle_since(self) -> float:
        """For the idle order. An agent with more lines counts as idle from the latest moment any of them
        was (or will be) busy, so that a free agent comes before one on a call who could take another."""
        if not self.more_lines:
            return self.seat.idle_since
        return max(seat.busy_since_or_idle for seat in (self.seat, *self.more_lines))

    def is_available(self, now: float, call_tag: str | None = None) -> bool:
        return self.line_for(now, call_tag) is not None

    def line_for(self, now: float, call_tag: str | None = None) -> int | None:
        """The line a call would take: the one it holds already, else the first free one; None when the
        agent is not available or every line is taken."""
        if self.seat.presence is not Presence.ONLINE:
            return None
        if not self.more_lines:
            return 1 if self.seat.open_for(call_tag, now) else None
        lines = (self.seat, *self.more_lines)
        if call_tag is not None:
            for line, seat in enumerate(lines, start=1):
                if seat.held_by == call_tag:
                    return line
        return next((line for line, seat in enumerate(lines, start=1) if seat.busy_until <= now), None)


@dataclass(frozen=True)
class PoolView:
    """One pool as a container last saw it."""

    pool_id: str
    members: Mapping[str, Member]
    seats: Mapping[str, Seat]
    roster_at: float
    """When the routing data was read."""
    seats_at: float
    """When the availability was read, or returned by a write."""

    @property
    def agents(self) -> list[PooledAgent]:
        seats = self.seats
        return [
            PooledAgent(agent_id, self.pool_id, member, seat, _more_lines(seats, agent_id))
            if line_key(agent_id, 2) in seats
            else PooledAgent(agent_id, self.pool_id, member, seat)
            for agent_id, member in self.members.items()
            if (seat := seats.get(agent_id)) is not None
        ]

    def fresh(self, now: float) -> bool:
        return now - self.seats_at < AVAILABILITY_MAX_AGE and now - self.roster_at < ROSTER_MAX_AGE

    def has_free_agent(self, now: float) -> bool:
        return any(seat.free_for(None, now) for seat in self.seats.values())

    def with_seats(self, seats: Mapping[str, Seat], now: float) -> PoolView:
        """The pool with its availability as a failed write reported it (all of it, fresh)."""
        return PoolView(self.pool_id, self.members, seats, self.roster_at, now)

    def with_change(self, agent_id: str, change: Callable[[Seat], Seat]) -> PoolView:
        """The pool after this container changed one agent (the rest as old as it was)."""
        seat = self.seats.get(agent_id)
        if seat is None:
            return self
        seats = {**self.seats, agent_id: change(seat)}
        return PoolView(self.pool_id, self.members, seats, self.roster_at, self.seats_at)


def _more_lines(seats: Mapping[str, Seat], agent_id: str) -> tuple[Seat, ...]:
    return tuple(seat for line, seat in lines_of(seats, agent_id) if line > 1)


class Directory(Model):
    """Which pools exist, and which of them hold the agents who know a product best."""

    pools: tuple[str, ...] = ()
    by_product: dict[str, tuple[str, ...]] = Field(default_factory=dict)


ANY_POOL = ""


class PoolViews:
    """A container's memory of pools: views, the directory, and the pool it currently takes agents from.

    Safe to share between threads (local runs serve many calls from one container); in Lambda one
    invocation uses it at a time.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, PoolView] = {}
        self._directory: tuple[Directory, float] | None = None
        self._turns: dict[str, tuple[str, float]] = {}
        self._random = rng or random.Random()  # noqa: S311 - spreads load; not a secret

    def directory(self, now: float) -> Directory | None:
        """The directory, unless it is older than `ROSTER_MAX_AGE` (then it must be read again)."""
        known = self._directory
        return known[0] if known is not None and now - known[1] < ROSTER_MAX_AGE else None

    def last_directory(self) -> Directory | None:
        """The directory as last read, however old: good enough to choose pools to read while a fresh
        one is fetched (pools are added and refilled, rarely taken away)."""
        known = self._directory
        return known[0] if known is not None else None

    def remember_directory(self, directory: Directory, now: float) -> None:
        self._directory = (directory, now)

    def view(self, pool_id: str, now: float) -> PoolView | None:
        """The view of a pool if it is fresh enough to route on, else None."""
        view = self._views.get(pool_id)
        return view if view is not None and view.fresh(now) else None

    def remember(self, view: PoolView) -> None:
        with self._lock:
            self._views[view.pool_id] = view

    def remember_seats(self, pool_id: str, seats: Mapping[str, Seat], now: float) -> None:
        """A failed write's answer: the pool's availability as it is now (kept if its roster is known)."""
        with self._lock:
            view = self._views.get(pool_id)
            if view is not None and now - view.roster_at < ROSTER_MAX_AGE:
                self._views[pool_id] = view.with_seats(seats, now)

    def remember_change(self, pool_id: str, agent_id: str, change: Callable[[Seat], Seat]) -> None:
        """This container changed an agent with a successful write (reserved, connected, released them):
        its next calls see the change without reading the pool again."""
        with self._lock:
            view = self._views.get(pool_id)
            if view is not None:
                self._views[pool_id] = view.with_change(agent_id, change)

    def pool_for(self, group: str, pools: Iterable[str], now: float) -> str | None:
        """The pool this container takes `group`'s agents from (group: a product, or `ANY_POOL`).

        Kept for `POOL_TURN_SECONDS` while it has free agents as far as the container knows, then
        another one at random, so that over time every pool is offered calls.
        """
        choices = tuple(pools)
        if not choices:
            return None
        with self._lock:
            current = self._turns.get(group)
            if current is not None and current[0] in choices and now - current[1] < POOL_TURN_SECONDS:
                view = self._views.get(current[0])
                if view is None or not view.fresh(now) or view.has_free_agent(now):
                    return current[0]
            known_full = {
                pool_id
                for pool_id in choices
                if (view := self._views.get(pool_id)) is not None
                and view.fresh(now)
                and not view.has_free_agent(now)
            }
            open_pools = [pool_id for pool_id in choices if pool_id not in known_full] or list(choices)
            chosen = self._random.choice(open_pools)
            self._turns[group] = (chosen, now)
            return chosen

    def members(self, pool_id: str, now: float) -> Mapping[str, Member] | None:
        """A pool's routing data if this container read it recently enough, else None."""
        view = self._views.get(pool_id)
        return view.members if view is not None and now - view.roster_at < ROSTER_MAX_AGE else None

    def more_pools(self, seen: Iterable[str], now: float) -> list[str]:
        """Pools a call has not looked at yet, best bets first: those known to have a free agent, then
        those this container knows nothing fresh about, in random order."""
        directory = self.directory(now)
        if directory is None:
            return []
        looked = set(seen)
        fresh = {
            pool_id: view for pool_id in directory.pools if (view := self.view(pool_id, now)) is not None
        }
        with_free = [
            pool_id for pool_id, view in fresh.items() if pool_id not in looked and view.has_free_agent(now)
        ]
        unknown = [pool_id for pool_id in directory.pools if pool_id not in looked and pool_id not in fresh]
        self._random.shuffle(unknown)
        return with_free + unknown
