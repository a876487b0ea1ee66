"""The roster as people run it: add, change, remove and look at agents, and set them available, away or
offline. Shared by AgentsFunction (its HTTP API) and the `rapport agents` commands.

Every change is one transaction (`rapport.store.agents`): it happens whole or not at all. A change that
raced another is read again and tried again; one that cannot be made says why (`Conflict`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from rapport.models import (
    MAX_CONCURRENT_CALLS,
    Agent,
    AgentEndpoint,
    AgentId,
    EndpointKind,
    Presence,
    ProductId,
    Proficiency,
)
from rapport.pools import Directory, PooledAgent, Seat, lines_of, seat_of, seated
from rapport.store import ConditionFailed, StoreError
from rapport.store.agents import AgentStore, OutcomeStore, Pool
from rapport.store.layout import POOL_MAX_AGENTS, pool_fits

WRITE_ROUNDS = 10
"""Tries of a change that raced others (each round lets at least one of the racing changes through)."""
_BACKOFF_SECONDS = 0.01
MAX_PAGE = 100

LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]
"""ISO 639 language codes: `de`, `en`, `tr`."""
DisplayName = Annotated[str, Field(min_length=1, max_length=80)]


class Status(StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


PRESENCE_OF = {
    Status.AVAILABLE: Presence.ONLINE,
    Status.AWAY: Presence.AWAY,
    Status.OFFLINE: Presence.OFFLINE,
}
STATUS_OF = {presence: status for status, presence in PRESENCE_OF.items()}


class NewAgent(BaseModel):
    """An agent to add: everything routing and people need to know of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: AgentId
    name: DisplayName
    endpoint: AgentEndpoint
    products: dict[ProductId, Proficiency] = Field(default_factory=dict, max_length=20)
    """Products the agent sells or supports, with their proficiency from 1 (learning) to 5 (expert)."""
    languages: list[LanguageCode] = Field(default_factory=list, max_length=10)
    wrap_up_seconds: int = Field(default=30, ge=0, le=3600)
    """After a call, how long before the agent is offered the next one."""
    max_concurrent_calls: int = Field(default=1, ge=1, le=MAX_CONCURRENT_CALLS)
    """Calls the agent takes at once. Each is a line of its own: ringing, on call, wrap-up."""
    status: Status = Status.AVAILABLE


class AgentChange(BaseModel):
    """What to change of an agent; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DisplayName | None = None
    endpoint: AgentEndpoint | None = None
    products: dict[ProductId, Proficiency] | None = Field(default=None, max_length=20)
    languages: list[LanguageCode] | None = Field(default=None, max_length=10)
    wrap_up_seconds: int | None = Field(default=None, ge=0, le=3600)
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=MAX_CONCURRENT_CALLS)


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    reason: str = Field(default="", max_length=200)
    """Why, for people reading `rapport agents get` later ("lunch", "training")."""


CallId = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]


class ProductOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product: ProductId
    sale: bool
    value: float | None = Field(default=None, ge=0, le=10_000_000)
    """What the sale was worth, in the shop's currency (kept with the outcome, not used in ranking)."""


class OutcomeReport(BaseModel):
    """What became of one call, per product, as a CRM reports it. Keyed by the call id (the decision
    id the agent's screen and the decision record carry): the same outcome sent again counts once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_id: CallId
    agent_id: AgentId
    """The agent who took the call."""
    outcomes: list[ProductOutcome] = Field(min_length=1, max_length=20)


class OutcomeResult(BaseModel):
    product: str
    status: str
    """`counted`, or `duplicate` when this call's outcome for the product was counted before."""


class OutcomeAnswer(BaseModel):
    call_id: str
    agent_id: str
    results: list[OutcomeResult]


class NotFound(Exception):
    """No agent with that id."""


class Conflict(Exception):
    """The change cannot be made as asked (the agent exists already, their pool has no room)."""


def iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch > 0 else None


class Record(BaseModel):
    calls: int
    sales: int


class LineView(BaseModel):
    """One of an agent's lines: a call it may take at once."""

    line: int
    state: str
    """`idle`, `ringing` (held for a call), `on_call` or `wrap_up`."""
    busy_until: str | None


class AgentView(BaseModel):
    """An agent as the API shows them: who, where, what they know, and where they stand right now."""

    agent_id: str
    name: str
    endpoint: AgentEndpoint
    products: dict[str, int]
    languages: list[str]
    wrap_up_seconds: int
    max_concurrent_calls: int
    status: Status
    status_reason: str | None
    status_at: str | None
    state: str
    """`idle`, `ringing` (held for a call), `on_call` or `wrap_up`: the busiest of the agent's lines."""
    on_a_call: bool
    calls_now: int
    """Lines a call holds right now (ringing or talking)."""
    busy_until: str | None
    """When the busiest line is free again, while one is busy."""
    lines: list[LineView]
    idle_since: str | None
    no_answers_in_a_row: int
    record: dict[str, Record]
    """Calls and sales per product, as outcomes reported them."""
    pool: str


class AgentPage(BaseModel):
    agents: list[AgentView]
    next: str | None
    """Pass as `next` for the page after this one; none: nothing follows."""


class Removal(BaseModel):
    agent_id: str
    removed: bool
    was_on_a_call: bool
    """The call goes on to its end; its hang-up finds the agent gone and lets go of nobody."""


_BUSIEST = {"on_call": 3, "ringing": 2, "wrap_up": 1, "idle": 0}


def _line_state(seat: Seat, now: float) -> str:
    return seat.state.value if seat.busy_until > now else "idle"


def view(agent: Agent, lines: Sequence[Seat], now: float) -> AgentView:
    """`agent` as stored, with their lines (`rapport.pools.lines_of`; the first carries their presence)."""
    if lines:
        agent = seated(agent, lines[0])
    else:
        lines = [seat_of(agent)]
    busy = [seat for seat in lines if seat.busy_until > now]
    busiest = max(busy, key=lambda seat: (_BUSIEST[seat.state.value], seat.busy_until), default=None)
    holding = [seat for seat in busy if seat.held_by is not None]
    return AgentView(
        agent_id=agent.agent_id,
        name=agent.name,
        endpoint=agent.endpoint,
        products=dict(agent.proficiency),
        languages=list(agent.languages),
        wrap_up_seconds=agent.wrap_up_seconds,
        max_concurrent_calls=agent.max_concurrent_calls,
        status=STATUS_OF[agent.presence],
        status_reason=agent.status_reason or None,
        status_at=iso(agent.status_at),
        state=busiest.state.value if busiest is not None else "idle",
        on_a_call=bool(holding),
        calls_now=len(holding),
        busy_until=iso(busiest.busy_until) if busiest is not None else None,
        lines=[
            LineView(
                line=line,
                state=_line_state(seat, now),
                busy_until=iso(seat.busy_until) if seat.busy_until > now else None,
            )
            for line, seat in enumerate(lines, start=1)
        ],
        idle_since=iso(agent.idle_since),
        no_answers_in_a_row=agent.no_answers,
        record={p: Record(calls=s.calls, sales=s.sales) for p, s in sorted(agent.stats.items())},
        pool=agent.pool,
    )


class AgentAdmin:
    """The roster operations, bound to one table."""

    def __init__(self, store: AgentStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, agent_id: str) -> AgentView:
        agent = self._store.stored(agent_id)
        if agent is None:
            raise NotFound(agent_id)
        now = self._clock()
        seats = self._store.pool_now(agent.pool, now).view.seats
        return view(agent, [seat for _, seat in lines_of(seats, agent_id)], now)

    def list(self, limit: int = 50, after: str | None = None) -> AgentPage:
        """A page of agents, by pool and then by id; `next` continues where it ends (None: nothing
        follows; a page may come out short, or even empty, when pools are)."""
        limit = max(1, min(limit, MAX_PAGE))
        now = self._clock()
        pools = list(self._store.directory_now()[0].pools)
        start, after_id = 0, ""
        if after:
            pool_id, _, after_id = after.partition(":")
            start = pools.index(pool_id) if pool_id in pools else len(pools)
        page: list[PooledAgent] = []
        more = False
        for index in range(start, len(pools)):
            members = sorted(self._store.pool_now(pools[index], now).view.agents, key=lambda a: a.agent_id)
            if index == start and after_id:
                members = [member for member in members if member.agent_id > after_id]
            room = limit - len(page)
            page += members[:room]
            if len(members) > room or (len(page) == limit and index + 1 < len(pools)):
                more = True
                break
        stored = self._store.many([member.agent_id for member in page])
        agents = [
            view(stored[member.agent_id], [member.seat, *member.more_lines], now)
            for member in page
            if member.agent_id in stored
        ]
        last = page[-1] if page else None
        return AgentPage(agents=agents, next=f"{last.pool}:{last.agent_id}" if more and last else None)

    # -- changing -----------------------------------------------------------------------------------------

    def add(self, new: NewAgent) -> AgentView:
        now = self._clock()
        agent = Agent(
            agent_id=new.agent_id,
            name=new.name,
            endpoint=new.endpoint,
            proficiency=dict(new.products),
            languages=list(new.languages),
            presence=PRESENCE_OF[new.status],
            idle_since=now,
            wrap_up_seconds=new.wrap_up_seconds,
            max_concurrent_calls=new.max_concurrent_calls,
            status_reason="added",
            status_at=now,
        )
        for round_ in range(WRITE_ROUNDS):
            if self._store.stored(agent.agent_id) is not None:
                raise Conflict(f"an agent {agent.agent_id} exists already")
            self._connect_user_free(agent)
            directory, version = self._store.directory_now()
            pool = self._pool_with_room(agent, directory, now)
            placed = agent.model_copy(update={"pool": pool.view.pool_id})
            listed = _listing(directory, placed)
            try:
                self._store.create(placed, pool, (listed, version) if listed != directory else None)
            except ConditionFailed:
                _back_off(round_)  # someone changed the pool or the directory meanwhile: read again
                continue
            return self.get(agent.agent_id)
        raise StoreError("the roster kept changing meanwhile; try again")

    def _pool_with_room(self, agent: Agent, directory: Directory, now: float) -> Pool:
        """A pool this agent fits in: one of their best product's first, then any; else a new one."""
        preferred = directory.by_product.get(agent.primary_product() or "", ())
        for pool_id in dict.fromkeys([*preferred, *reversed(directory.pools)]):
            pool = self._store.pool_now(pool_id, now)
            if len(pool.view.members) < POOL_MAX_AGENTS and pool_fits([*_agents_of(pool), agent]):
                return pool
        taken = {int(p) for p in directory.pools if p.isdigit()}
        new_id = str(max(taken, default=-1) + 1)
        return self._store.pool_now(new_id, now)

    def _connect_user_free(self, agent: Agent) -> None:
        """An Amazon Connect user is one agent's endpoint, never two agents'."""
        if agent.endpoint.kind is not EndpointKind.CONNECT:
            return
        holder = self._store.connect_user(agent.endpoint.address)
        if holder is not None and holder != agent.agent_id:
            raise Conflict(
                f"Amazon Connect user {agent.endpoint.address} is the endpoint of {holder} already"
            )

    def update(self, agent_id: str, change: AgentChange) -> AgentView:
        now = self._clock()
        for round_ in range(WRITE_ROUNDS):
            stored = self._store.stored(agent_id)
            if stored is None:
                raise NotFound(agent_id)
            fields = change.model_dump(exclude_none=True, exclude={"endpoint", "products"})
            if change.endpoint is not None:
                fields["endpoint"] = change.endpoint
            if change.products is not None:
                fields["proficiency"] = dict(change.products)
            changed = stored.model_copy(update=fields)
            self._connect_user_free(changed)
            pool = self._store.pool_now(stored.pool, now)
            others = [a for a in _agents_of(pool) if a.agent_id != agent_id]
            if not pool_fits([*others, changed]):
                raise Conflict(
                    f"{agent_id}'s pool has no room for this change; remove the agent and add them again"
                )
            directory, version = self._store.directory_now()
            listed = _listing(directory, changed)
            try:
                self._store.change(
                    changed, pool, (listed, version) if listed != directory else None, before=stored
                )
            except ConditionFailed:
                _back_off(round_)
                continue
            return self.get(agent_id)
        raise StoreError("the roster kept changing meanwhile; try again")

    def remove(self, agent_id: str) -> Removal:
        """Take an agent off the roster. A call they are on goes on to its end: its hang-up finds them
        gone and lets go of nobody; its failover skips them."""
        now = self._clock()
        for round_ in range(WRITE_ROUNDS):
            stored = self._store.stored(agent_id)
            if stored is None:
                raise NotFound(agent_id)
            pool = self._store.pool_now(stored.pool, now)
            lines = lines_of(pool.view.seats, agent_id)
            try:
                self._store.delete(agent_id, pool, before=stored)
            except ConditionFailed:
                _back_off(round_)
                continue
            on_call = any(seat.held_by is not None and seat.busy_until > now for _, seat in lines)
            return Removal(agent_id=agent_id, removed=True, was_on_a_call=on_call)
        raise StoreError("the roster kept changing meanwhile; try again")

    def set_status(self, agent_id: str, change: StatusChange) -> AgentView:
        stored = self._store.stored(agent_id)
        if stored is None:
            raise NotFound(agent_id)
        reason = change.reason or f"set {change.status.value}"
        try:
            self._store.set_presence(stored, PRESENCE_OF[change.status], reason, self._clock())
        except ConditionFailed as gone:
            raise NotFound(agent_id) from gone
        return self.get(agent_id)


class Outcomes:
    """Outcomes of calls, fed into the agents' records that ranking learns from."""

    def __init__(self, store: OutcomeStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def report(self, report: OutcomeReport) -> OutcomeAnswer:
        now = self._clock()
        results = []
        for outcome in report.outcomes:
            results.append(OutcomeResult(product=outcome.product, status=self._count(report, outcome, now)))
        return OutcomeAnswer(call_id=report.call_id, agent_id=report.agent_id, results=results)

    def _count(self, report: OutcomeReport, outcome: ProductOutcome, now: float) -> str:
        for round_ in range(WRITE_ROUNDS):
            agent = self._store.stored(report.agent_id)
            if agent is None:
                raise NotFound(report.agent_id)
            pool = self._store.pool_now(agent.pool, now)
            try:
                self._store.count_outcome(
                    agent, pool, report.call_id, outcome.product, outcome.sale, outcome.value, now
                )
            except ConditionFailed:
                if self._store.outcome_known(report.call_id, outcome.product):
                    return "duplicate"
                _back_off(round_)  # the roster changed meanwhile: read again
                continue
            return "counted"
        raise StoreError("the roster kept changing meanwhile; try again")


def _back_off(round_: int) -> None:
    """Let the changes that raced this one finish, at random, before reading again."""
    time.sleep(random.uniform(0, _BACKOFF_SECONDS * 2 ** min(round_, 5)))  # noqa: S311 - jitter, not a secret


def _agents_of(pool: Pool) -> list[Agent]:
    """A pool's members as agents, for the size check (ids, endpoints, skills and records count)."""
    return [
        Agent(
            agent_id=member.agent_id,
            endpoint=member.endpoint,
            proficiency=dict(member.proficiency),
            stats=dict(member.stats),
            max_concurrent_calls=1 + len(member.more_lines),
        )
        for member in pool.view.agents
    ]


def _listing(directory: Directory, agent: Agent) -> Directory:
    """The directory with the agent's pool listed, and listed for the product they know best."""
    pools = directory.pools if agent.pool in directory.pools else (*directory.pools, agent.pool)
    by_product = dict(directory.by_product)
    primary = agent.primary_product()
    if primary and agent.pool not in by_product.get(primary, ()):
        by_product[primary] = (*by_product.get(primary, ()), agent.pool)
    return Directory(pools=pools, by_product=by_product)
