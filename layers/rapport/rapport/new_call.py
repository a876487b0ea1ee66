"""Routing one new call in three steps, each a short method: look, decide, reserve.

Look (one round trip): the caller's context, read while the call already holds the agent it would get
without profile data (the longest idle in the pool this container takes calls from). Most callers have
no usable profile data, and their call is then routed in that one round trip. A second round trip reads
the pools of the caller's interests, when this container has no fresh view of them.
Decide: the pure routing and privacy policy, over the agents of the pools seen (and the caller's last
agent, whose pool need not have been seen).
Reserve: one conditional write on the chosen agent's pool, which lets go of the early hold in the same
write when it shares the pool. Whatever else that step needs goes in the same round trip: the early
hold let go in another pool, and the last agent's pool read (to find where they ring).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from rapport import SERVICE_NAME
from rapport.budget import Deadline
from rapport.call import CallState, InboundCall, Route, RouteKind, Stage, fallback
from rapport.explain import candidate_reasons
from rapport.models import (
    Attempt,
    CallerContext,
    Candidate,
    Decision,
    DecisionRecord,
    EndpointKind,
    Interest,
    LastAgent,
    Note,
    NoteCode,
    ProductStats,
    RoutingMode,
)
from rapport.pools import ANY_POOL, Directory, PooledAgent, PoolView, PoolViews, Seat, call_tag
from rapport.privacy import Permissions, Rules, permissions
from rapport.routing import Routable, RoutingPolicy, choose_agent, current_interests
from rapport.scoring import DAY
from rapport.settings import Settings
from rapport.store import AgentTaken, LetGo, Store, StoreError, StoreUnavailable

logger = Logger(service=SERVICE_NAME, child=True)

# Conditional writes a new call may spend on agents that concurrent calls took first.
MAX_RESERVATION_ATTEMPTS = 8
# After a lost race the next few candidates are tried in a per-call order: the calls that lost the same
# race ranked alike, and would otherwise all race again for the same next agent.
CONTENTION_WINDOW = 4
# Products of the caller's interests whose pools a call looks at.
TOP_INTERESTS = 2
# Further pools a call looks at (one round trip) when those it started with have nobody free.
EXTRA_POOLS = 2
LIVE_INTEREST_SOURCE = "this call"


@dataclass(frozen=True)
class UnseenAgent:
    """The caller's last agent, in a pool this container has no fresh view of: offered to routing as free
    (the conditional reservation says whether they are), their pool read in the same round trip."""

    agent_id: str
    pool: str

    @property
    def proficiency(self) -> Mapping[str, int]:
        return {}

    @property
    def stats(self) -> Mapping[str, ProductStats]:
        return {}

    @property
    def idle_since(self) -> float:
        return 0.0

    def is_available(self, now: float, call_tag: str | None = None) -> bool:
        return True


_NO_VIEW = PoolView("", {}, {}, 0.0, 0.0)


@dataclass(frozen=True)
class Held:
    """An agent this call holds: what the conditional write reserved."""

    agent_id: str
    pool: str


@dataclass
class NewCall:
    """One new call being routed; `route()` runs the three steps."""

    store: Store
    views: PoolViews
    settings: Settings
    rules: Rules
    policy: RoutingPolicy
    hold_seconds: int
    call: InboundCall
    key: str | None
    now: float
    deadline: Deadline
    context: CallerContext = field(default_factory=CallerContext)
    allowed: Permissions | None = None
    live: list[Interest] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    seen: dict[str, PoolView] = field(default_factory=dict)
    early: Held | None = None
    known: LastAgent | None = None
    """The caller's last agent, where policy allows routing to them."""
    tag: str = ""
    """The mark this call leaves on the agent it holds."""

    def __post_init__(self) -> None:
        self.tag = call_tag(self.call.call_id)

    def route(self) -> Route:
        self.look()
        return self.reserve(self.decide())

    # -- look -------------------------------------------------------------------------------------------

    def look(self) -> None:
        """Round 1: the caller's context, the directory and any stale pool this call starts from, and the
        early hold. Round 2, only if needed: the pools the context points to."""
        self.notes = [] if self.key else [Note(code=NoteCode.NO_CALLER_KEY)]
        live = [
            Interest(product=product, score=1.0, updated_at=self.now, sources=[LIVE_INTEREST_SOURCE])
            for product in self.call.live_products
        ]
        directory = self.views.directory(self.now)
        stale = self._use_fresh(self._pools_for(directory, CallerContext(), live, None)) if directory else []
        early = self._early_pick() if self.key and not live else None
        requests: list[Callable[[], object]] = []
        if self.key is not None:
            key = self.key
            requests.append(lambda: self.store.caller_context(key, self.now, self.deadline))
        if directory is None:
            requests.append(lambda: self.store.directory(self.deadline))
        requests += [self._read(pool_id) for pool_id in stale]
        if early is not None:
            requests.append(lambda: self._hold(early, None))
        results = self.store.together(requests, self.deadline)
        readable = True
        if self.key is not None:
            context = results.pop(0)
            if isinstance(context, CallerContext):
                self.context = context
            else:
                logger.warning("caller context unavailable", extra={"error": str(context)})
                self.notes.append(Note(code=NoteCode.PROFILE_UNAVAILABLE, detail=str(context)))
                readable = False
        if directory is None:
            directory = self._directory_from(results.pop(0))
        if early is not None:
            self._early_held(early, results.pop())
        self._keep(stale, results)
        region = self.call.region or (self.context.profile.jurisdiction if self.context.profile else None)
        self.allowed = permissions(self.rules, region, self.context.profile, profile_readable=readable)
        self.live = live if self.allowed.use_interests else []
        if directory is not None:
            self.known = self._known_agent(directory)
            wanted = self._pools_for(directory, self.context, self.live, self.allowed)
            self._read_pools([pool_id for pool_id in wanted if pool_id not in self.seen])
            if self.known is not None and self.known.pool not in self.seen:
                self._use_fresh([self.known.pool])  # if stale, it is read as the agent is reserved

    def _known_agent(self, directory: Directory) -> LastAgent | None:
        last = self.context.last_agent
        assert self.allowed is not None
        if last is None or not self.allowed.use_known_agent or last.expires_at <= self.now:
            return None
        return last if last.pool in directory.pools else None

    def _pools_for(
        self,
        directory: Directory,
        context: CallerContext,
        live: Sequence[Interest],
        allowed: Permissions | None,
    ) -> list[str]:
        """The pools a call takes candidates from: those of the top interests' products (where allowed;
        `allowed` None: before the context is known) and the pool this container offers any-available
        calls from. The last agent's pool is not read ahead: it is read as they are reserved."""
        wanted: list[str] = []
        if allowed is None or allowed.use_interests:
            ranked = current_interests(context.interests, live, self.now, self.policy)
            for product in sorted(ranked, key=lambda p: -ranked[p][0])[:TOP_INTERESTS]:
                chosen = self.views.pool_for(product, directory.by_product.get(product, ()), self.now)
                if chosen is not None:
                    wanted.append(chosen)
        chosen = self.views.pool_for(ANY_POOL, directory.pools, self.now)
        if chosen is not None:
            wanted.append(chosen)
        return list(dict.fromkeys(wanted))

    def _use_fresh(self, pool_ids: Sequence[str]) -> list[str]:
        """Take this container's fresh views of these pools; return the pools that must be read."""
        stale = []
        for pool_id in pool_ids:
            view = self.views.view(pool_id, self.now)
            if view is None:
                stale.append(pool_id)
            else:
                self.seen[pool_id] = view
        return stale

    def _read(self, pool_id: str) -> Callable[[], PoolView]:
        return lambda: self.store.pool(pool_id, self.now, self.deadline)

    def _read_pools(self, pool_ids: Sequence[str]) -> None:
        stale = self._use_fresh(pool_ids)
        self._keep(stale, self.store.together([self._read(pool_id) for pool_id in stale], self.deadline))

    def _keep(self, pool_ids: Sequence[str], results: Sequence[object]) -> None:
        for pool_id, result in zip(pool_ids, results, strict=True):
            if isinstance(result, PoolView):
                self.views.remember(result)
                self.seen[pool_id] = result
            else:
                logger.warning("pool unavailable", extra={"pool": pool_id, "error": str(result)})
                self.notes.append(Note(code=NoteCode.AGENTS_UNREADABLE, detail=str(result)))

    def _directory_from(self, result: object) -> Directory | None:
        if isinstance(result, Directory):
            self.views.remember_directory(result, self.now)
            return result
        logger.error("pool directory unavailable", extra={"error": str(result)})
        self.notes.append(Note(code=NoteCode.AGENTS_UNREADABLE, detail=str(result)))
        return None

    def _early_pick(self) -> Held | None:
        """The agent this call would get without profile data: the longest idle in the pool it starts
        from, when this container has a fresh view of it."""
        free = [agent for view in self.seen.values() for agent in view.agents if self._free(agent)]
        if not free:
            return None
        first = min(free, key=lambda agent: (agent.idle_since, agent.agent_id))
        return Held(first.agent_id, first.pool)

    # -- decide -----------------------------------------------------------------------------------------

    def decide(self) -> Decision:
        agents: dict[str, Routable] = {
            agent.agent_id: agent for view in self.seen.values() for agent in view.agents
        }
        if self.known is not None and self.known.pool not in self.seen:
            agents[self.known.agent_id] = UnseenAgent(self.known.agent_id, self.known.pool)
        reachable = [agent for agent in agents.values() if self._reachable(agent)]
        notes = list(self.notes)
        if len(reachable) < len(agents):
            notes.append(Note(code=NoteCode.NO_VOICE_CONNECTOR, detail=str(len(agents) - len(reachable))))
        assert self.allowed is not None, "decide() comes after look()"
        decision = choose_agent(
            agents=reachable,
            context=self.context,
            permissions=self.allowed,
            live_interests=self.live,
            call_tag=self.tag,
            now=self.now,
            policy=self.policy,
        )
        return decision.model_copy(update={"notes": [*notes, *decision.notes]})

    def _reachable(self, agent: Routable) -> bool:
        if not isinstance(agent, PooledAgent):
            return True  # not seen yet: the pool read with the reservation tells where they ring
        return agent.endpoint.kind is not EndpointKind.VOICE_CONNECTOR or bool(
            self.settings.voice_connector_arn
        )

    def _free(self, agent: PooledAgent) -> bool:
        return agent.is_available(self.now, self.tag) and self._reachable(agent)

    # -- reserve ----------------------------------------------------------------------------------------

    def reserve(self, decision: Decision) -> Route:
        """Hold the best candidate; after a lost race, decide again on the pool as it is now."""
        order = random.Random(self.call.call_id)  # noqa: S311 - spreads contending calls; not a secret
        lost, probed = 0, 0
        while lost < MAX_RESERVATION_ATTEMPTS:
            if not decision.candidates:
                if probed >= EXTRA_POOLS or not self._probe():
                    return self._fallback(self._why_nobody(lost), decision)
                probed += 1
                decision = self.decide()
                continue
            chosen = decision.candidates[0]
            try:
                self._hold(Held(chosen.agent_id, chosen.pool), self.early)
            except AgentTaken as taken:
                logger.info("agent taken by another call", extra={"agent_id": chosen.agent_id})
                self._saw(chosen.pool, taken.seats)
                lost += 1
                decision = self.decide()
                window = list(decision.candidates[:CONTENTION_WINDOW])
                order.shuffle(window)
                decision = decision.model_copy(
                    update={"candidates": [*window, *decision.candidates[CONTENTION_WINDOW:]]}
                )
                continue
            except StoreUnavailable as error:
                logger.error("reservation failed", extra={"error": str(error)})
                return self._fallback(Note(code=NoteCode.RESERVATION_FAILED, detail=str(error)), decision)
            return self._ringing(chosen, decision)
        return self._fallback(Note(code=NoteCode.ALL_TAKEN), decision)

    def _hold(self, wanted: Held, early: Held | None) -> Held:
        """Reserve `wanted` (a no-op when the early hold is that very agent). In the same round trip: the
        early hold let go (in this write when it shares the pool, else in a write of its own) and, when
        this call has not seen `wanted`'s pool, the pool read to find where they ring."""
        if early == wanted:
            return wanted
        hold_until = self.now + self.hold_seconds
        shared = early is not None and early.pool == wanted.pool
        let_go = LetGo(early.agent_id, missed=False) if early is not None and shared else None
        unseen = wanted.pool not in self.seen
        requests: list[Callable[[], object]] = [
            lambda: self.store.reserve(
                wanted.pool, wanted.agent_id, self.tag, self.now, hold_until, self.deadline, let_go
            )
        ]
        if unseen:
            requests.append(self._read(wanted.pool))
        if early is not None and not shared:
            requests.append(lambda: self._let_go(early))
            self.early = None  # let go whatever the reservation's outcome: it is free for a next try
        results = self.store.together(requests, self.deadline)
        if unseen:
            self._keep([wanted.pool], [results[1]])
        if isinstance(results[0], StoreError):
            raise results[0]
        self._changed(wanted.pool, wanted.agent_id, lambda seat: seat.held(self.tag, hold_until))
        if early is not None and shared:
            self._changed(early.pool, early.agent_id, lambda seat: seat.let_go(self.now, missed=False))
        self.early = None
        if wanted.agent_id not in self.seen.get(wanted.pool, _NO_VIEW).members:
            self._let_go(wanted)
            raise StoreUnavailable(f"where {wanted.agent_id} rings could not be read")
        return wanted

    def _early_held(self, early: Held, result: object) -> None:
        if isinstance(result, Held):
            self.early = result
        elif isinstance(result, AgentTaken):
            self._saw(early.pool, result.seats)

    def _changed(self, pool_id: str, agent_id: str, change: Callable[[Seat], Seat]) -> None:
        """A write of this call succeeded: its view and the container's follow it."""
        view = self.seen.get(pool_id)
        if view is not None:
            self.seen[pool_id] = view.with_change(agent_id, change)
        self.views.remember_change(pool_id, agent_id, change)

    def _let_go(self, held: Held) -> None:
        try:
            self.store.let_go(
                held.pool, LetGo(held.agent_id, missed=False), self.tag, self.now, self.deadline
            )
        except StoreError as error:
            logger.warning("early hold not let go: it lapses by itself", extra={"error": str(error)})
            return
        self._changed(held.pool, held.agent_id, lambda seat: seat.let_go(self.now, missed=False))

    def _saw(self, pool_id: str, seats: Mapping[str, Seat]) -> None:
        """A lost race's answer: the pool as it is now, for this call's next choice and the container's."""
        if seats and pool_id in self.seen:
            self.seen[pool_id] = self.seen[pool_id].with_seats(seats, self.now)
            self.views.remember_seats(pool_id, seats, self.now)

    def _why_nobody(self, lost: int) -> Note:
        """Why no candidate is left: the agents could not be read at all, or they were busy (or taken)."""
        unreadable = next((note for note in self.notes if note.code is NoteCode.AGENTS_UNREADABLE), None)
        if unreadable is not None and not self.seen:
            return unreadable
        return Note(code=NoteCode.ALL_TAKEN if lost else NoteCode.NO_AGENT_AVAILABLE)

    def _probe(self) -> bool:
        """Look at up to `EXTRA_POOLS` more pools; False when there are none."""
        more = self.views.more_pools(self.seen, self.now)[:EXTRA_POOLS]
        if not more:
            return False
        self._read_pools(more)
        return True

    # -- the outcome ------------------------------------------------------------------------------------

    def _state(self) -> CallState:
        assert self.allowed is not None
        link_days = self.allowed.retention_days.last_agent if self.allowed.keep_last_agent and self.key else 0
        return CallState(stage=Stage.AGENT, caller_key=self.key, link_days=link_days)

    def _record(self, decision: Decision) -> DecisionRecord:
        assert self.allowed is not None
        listed = decision.candidates[: self.settings.max_candidates]
        kept = {product for candidate in listed for product in candidate.skills}
        return DecisionRecord(
            call_id=self.call.call_id,
            caller_key=self.key,
            decided_at=self.now,
            mode=decision.mode,
            candidates=listed,
            interests={product: fact for product, fact in decision.interests.items() if product in kept},
            privacy=self.allowed.facts,
            notes=decision.notes,
            expires_at=self.now + self.allowed.retention_days.decision * DAY,
        )

    def _ringing(self, chosen: Candidate, decision: Decision) -> Route:
        record = self._record(decision).model_copy(
            update={
                "mode": chosen.mode,
                "attempts": [
                    Attempt(agent_id=chosen.agent_id, mode=chosen.mode, pool=chosen.pool, at=self.now)
                ],
            }
        )
        return Route(
            RouteKind.AGENT,
            self._state().model_copy(update={"record": record}),
            endpoint=self.seen[chosen.pool].members[chosen.agent_id].endpoint,
            reason="; ".join(candidate_reasons(chosen, decision.interests, self.now)),
        )

    def _fallback(self, why: Note, decision: Decision) -> Route:
        if self.early is not None:
            self._let_go(self.early)
            self.early = None
        notes = [
            note for note in decision.notes if note.code is not NoteCode.NO_AGENT_AVAILABLE and note != why
        ]
        record = self._record(decision.model_copy(update={"notes": notes})).model_copy(
            update={"mode": RoutingMode.FALLBACK, "candidates": [], "interests": {}}
        )
        return fallback(self.settings, self._state().model_copy(update={"record": record}), why)
