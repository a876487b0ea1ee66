"""Routing one new call in three steps, each a short method: look, decide, reserve.

Look (one round trip): the caller's context, with the pool directory and the pool this container offers
calls from when it has no fresh view of them. A second round trip reads the pools of the caller's
interests, when this container has no fresh view of them; for a caller whose last agent comes first,
those reads wait for the reservation and go out with it.
Decide: the pure routing and privacy policy, over the agents of the pools seen (and the caller's last
agent, whose pool need not have been seen).
Reserve: one conditional write on the chosen agent's pool. The pool reads that waited go out with it,
and so does a read of the chosen agent's pool when this container does not know where they ring.

A warm container routes a caller without usable profile data in two round trips (context, reservation)
and a returning caller in two as well; a caller whose interests point to pools it has not seen lately,
or who lost a race to a concurrent call, in three.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from rapport import SERVICE_NAME
from rapport.budget import Deadline
from rapport.call import CallState, Channel, InboundCall, Route, RouteKind, Stage, fallback
from rapport.explain import candidate_reasons
from rapport.models import (
    AgentEndpoint,
    Attempt,
    CallerContext,
    CallerProfile,
    Candidate,
    Decision,
    DecisionRecord,
    EndpointKind,
    Grounds,
    Interest,
    LastAgent,
    Note,
    NoteCode,
    Outcome,
    ProductStats,
    RoutingMode,
    line_key,
)
from rapport.pools import ANY_POOL, Directory, PooledAgent, PoolView, PoolViews, Seat, call_tag, free_line
from rapport.privacy import (
    INTEREST_ROUTING,
    KNOWN_AGENT,
    Basis,
    Permissions,
    Rules,
    interest_cap_reached,
    permissions,
)
from rapport.routing import Routable, RoutingPolicy, choose_agent, current_interests
from rapport.scoring import DAY
from rapport.settings import Settings
from rapport.store import AgentTaken, LetGo, Store, StoreError, StoreUnavailable
from rapport.store.layout import RECENT_RECORDS

logger = Logger(service=SERVICE_NAME, child=True)

# Conditional writes a new call may spend on agents that concurrent calls took first.
MAX_RESERVATION_ATTEMPTS = 12
# After a lost race the next few candidates are tried in a per-call order: the calls that lost the same
# race ranked alike, and would otherwise all race again for the same next agent.
CONTENTION_WINDOW = 6
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


class Unreachable(Exception):
    """The agent just held rings where this channel cannot reach (seen only once their pool was read)."""


@dataclass(frozen=True)
class Held:
    """An agent, their pool and one of their lines: what a reservation names."""

    agent_id: str
    pool: str
    line: int = 1

    @property
    def key(self) -> str:
        return line_key(self.agent_id, self.line)


@dataclass(frozen=True)
class Handover:
    """What routing decided for an Amazon Connect contact: the ranked candidates (Connect users), the
    caller's top interests where policy allows them, and the decision record as it is kept."""

    decision: Decision
    record: DecisionRecord
    user_ids: Mapping[str, str]
    """Candidate agent id → their Amazon Connect user id."""
    interests: Sequence[str]
    """The caller's strongest current interests (products), where the policy allows using them."""


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
    known: LastAgent | None = None
    """The caller's last agent, where policy allows routing to them."""
    waiting: list[str] = field(default_factory=list)
    """Pools to read, sent with the first reservation (the caller's last agent is tried first)."""
    lost: set[str] = field(default_factory=set)
    """Agents this call tried to reserve and found taken."""
    tag: str = ""
    """The mark this call leaves on the agent it holds."""
    ask_for_consent: bool = False
    """Whether to ask a caller with no recorded choice, where consent is needed (`ask_first`)."""
    chosen: CallerProfile | None = None
    """The caller's profile as their answer in this call left it (read-your-write: it replaces the
    profile the context read returns)."""
    asked: Note | None = None
    """What the caller answered in this call, when asked."""
    channel: Channel = Channel.SMA
    calls_in_window: int | None = None
    """This caller's new calls in the current rate-limit window, this one included (None: not counted)."""

    def __post_init__(self) -> None:
        self.tag = call_tag(self.call.call_id)

    def route(self) -> Route:
        self.look()
        if self.calls_in_window is not None:
            limited = self.over_rate_limit(self.calls_in_window)
            if limited is not None:
                return limited
        question = self.ask_first()
        if question is not None:
            return question
        return self.reserve(self.decide())

    # -- limit ------------------------------------------------------------------------------------------

    def over_rate_limit(self, calls: int) -> Route | None:
        """The closing message for a caller over the rate limit: no agent rings, no fallback number is
        dialled, and no decision record is kept (a flood of calls writes nothing but its count)."""
        limit = self.rules.rate_limit
        if limit is None or calls <= limit.calls:
            return None
        logger.warning(
            "rate limit reached", extra={"calls": calls, "limit": limit.calls, "minutes": limit.minutes}
        )
        return Route(
            RouteKind.MESSAGE,
            CallState(stage=Stage.MESSAGE),
            message=self.settings.fallback_message,
            reason=f"rate limit: {calls} calls in {limit.minutes} min (limit {limit.calls})",
            rate_limited=True,
        )

    # -- ask --------------------------------------------------------------------------------------------

    def ask_first(self) -> Route | None:
        """The question to ask before routing, when the deployment asks and this caller has made no
        choice yet for a purpose that needs consent here (asked again only once the retention period of
        their last answer is over); None to route at once."""
        allowed = self.allowed
        profile = self.context.profile
        if not self.ask_for_consent or self.asked is not None or self.key is None or allowed is None:
            return None
        if any(note.code is NoteCode.PROFILE_UNAVAILABLE for note in self.notes):
            return None
        if profile is not None and profile.objected:
            return None
        rule_set = allowed.rule_set_rules
        since = self.now - rule_set.retention_days.interest * DAY
        purposes = tuple(
            purpose
            for purpose, basis in (
                (INTEREST_ROUTING, rule_set.interest_routing),
                (KNOWN_AGENT, rule_set.known_agent),
            )
            if basis is Basis.CONSENT and not _chose(profile, purpose, since)
        )
        if not purposes:
            return None
        state = CallState(
            stage=Stage.ASKING,
            caller_key=self.key,
            asking=purposes,
            live_products=tuple(self.call.live_products),
        )
        return Route(
            RouteKind.ASK,
            state,
            prompt=self.rules.prompt(self.rules.language(self.call.region)),
            reason="asking for consent",
        )

    # -- look -------------------------------------------------------------------------------------------

    def look(self) -> None:
        """Round 1: the caller's context, the directory and any stale pool this call starts from. Round 2,
        only if needed (and then perhaps with the reservation): the pools the context points to."""
        self.notes = [] if self.key else [Note(code=NoteCode.NO_CALLER_KEY)]
        live = [
            Interest(product=product, score=1.0, updated_at=self.now, sources=[LIVE_INTEREST_SOURCE])
            for product in self.call.live_products
        ]
        directory = self.views.directory(self.now)
        guide = directory or self.views.last_directory()
        if self.call.line is not None:
            self.notes.append(Note(code=NoteCode.DIALLED_LINE, detail=self.call.line.name))
        stale = self._use_fresh(self._pools_for(guide, CallerContext(), live, None)) if guide else []
        requests: list[Callable[[], object]] = []
        if self.key is not None:
            key = self.key
            # Enough of the latest decision records to tell whether the policy's cap is reached.
            cap = self.rules.for_jurisdiction(self.call.region)[1].interest_cap
            records = max(RECENT_RECORDS, cap.times)
            requests.append(lambda: self.store.caller_context(key, self.now, self.deadline, records))
        if directory is None:
            requests.append(lambda: self.store.directory(self.deadline))
        requests += [self._read(pool_id) for pool_id in stale]
        limit = self.rules.rate_limit
        # Counted once per call (a call routed after the question was counted when it came in), in one
        # try: a count that fails lets the call through rather than holding it up (Store.count_call).
        counting = limit is not None and self.key is not None and self.channel is Channel.SMA
        counting = counting and self.asked is None
        if counting and limit is not None and self.key is not None:
            key, window = self.key, limit.window_seconds
            requests.append(lambda: self.store.count_call(key, window, self.now, self.deadline))
        results = self.store.together(requests, self.deadline)
        if counting:
            counted = results.pop()
            if isinstance(counted, int):
                self.calls_in_window = counted
            else:  # not counted: the call is routed (a limit must not turn a table hiccup into silence)
                logger.warning("call not counted for the rate limit", extra={"error": str(counted)})
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
        self._keep(stale, results)
        if self.chosen is not None and readable:
            self.context = self.context.model_copy(update={"profile": self.chosen})
        if self.asked is not None:
            self.notes.append(self.asked)
        region = self.call.region or (self.context.profile.jurisdiction if self.context.profile else None)
        self.allowed = permissions(self.rules, region, self.context.profile, profile_readable=readable)
        if self.allowed.use_interests:
            routed = self.context.interest_routed_at
            capped = interest_cap_reached(self.allowed.rule_set_rules, routed, self.now)
            if capped is not None:
                self.allowed = self.allowed.without_interests(Grounds.CAPPED)
                self.notes.append(capped)
        self.live = live if self.allowed.use_interests else []
        if directory is not None:
            self.known = self._known_agent(directory)
            if self.known is not None and self.known.pool not in self.seen:
                self._use_fresh([self.known.pool])  # if stale, it is read as the agent is reserved
            wanted = self._pools_for(directory, self.context, self.live, self.allowed)
            stale = self._use_fresh([pool_id for pool_id in wanted if pool_id not in self.seen])
            if self._known_comes_first():
                self.waiting = stale
            else:
                self._keep(stale, self.store.together([self._read(p) for p in stale], self.deadline))

    def _known_agent(self, directory: Directory) -> LastAgent | None:
        last = self.context.last_agent
        assert self.allowed is not None
        if last is None or not self.allowed.use_known_agent or last.expires_at <= self.now:
            return None
        return last if last.pool in directory.pools else None

    def _known_comes_first(self) -> bool:
        """Whether the caller's last agent will be the first choice (free, or not seen lately): then nothing
        else is needed to decide, and the other pools are read as they are reserved."""
        if self.known is None:
            return False
        view = self.seen.get(self.known.pool)
        if view is None:
            return True
        agent = next((a for a in view.agents if a.agent_id == self.known.agent_id), None)
        return agent is not None and self._free(agent)

    def _pools_for(
        self,
        directory: Directory,
        context: CallerContext,
        live: Sequence[Interest],
        allowed: Permissions | None,
    ) -> list[str]:
        """The pools a call takes candidates from: those of the top interests' products (where allowed;
        `allowed` None: before the context is known) and the pool this container offers any-available
        calls from (the pool of the dialled line's first product, when the caller dialled one). The last
        agent's pool is not read ahead: it is read as they are reserved."""
        wanted: list[str] = []
        line = self.call.line
        if line is not None:
            chosen = self.views.pool_for(
                line.products[0], directory.by_product.get(line.products[0], ()), self.now
            )
            if chosen is not None:
                wanted.append(chosen)
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
        stale = self._use_fresh(list(dict.fromkeys([*self.waiting, *pool_ids])))
        self.waiting = []
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

    # -- decide -----------------------------------------------------------------------------------------

    def decide(self) -> Decision:
        agents: dict[str, Routable] = {
            agent.agent_id: agent for view in self.seen.values() for agent in view.agents
        }
        known = self.known
        if known is not None and known.pool not in self.seen and known.agent_id not in self.lost:
            agents[known.agent_id] = UnseenAgent(known.agent_id, known.pool)
        reachable: list[Routable] = []
        on_voice_connector = 0  # skipped because no Voice Connector is configured
        for agent in agents.values():
            if self._reachable(agent):
                reachable.append(agent)
            elif (
                self.channel is Channel.SMA
                and isinstance(agent, PooledAgent)
                and agent.endpoint.kind is EndpointKind.VOICE_CONNECTOR
            ):
                on_voice_connector += 1
        notes = list(self.notes)
        if on_voice_connector:
            notes.append(Note(code=NoteCode.NO_VOICE_CONNECTOR, detail=str(on_voice_connector)))
        assert self.allowed is not None, "decide() comes after look()"
        decision = choose_agent(
            agents=reachable,
            context=self.context,
            permissions=self.allowed,
            live_interests=self.live,
            call_tag=self.tag,
            now=self.now,
            policy=self.policy,
            line_products=self.call.line.products if self.call.line is not None else (),
        )
        return decision.model_copy(update={"notes": [*notes, *decision.notes]})

    def _reachable(self, agent: Routable) -> bool:
        if not isinstance(agent, PooledAgent):
            return True  # not seen yet: the pool read with the reservation tells where they ring
        return self._rings(agent.endpoint)

    def _rings(self, endpoint: AgentEndpoint) -> bool:
        """Whether this channel can reach an agent there."""
        kind = endpoint.kind
        if self.channel is Channel.CONNECT:
            return kind is EndpointKind.CONNECT  # Connect rings only its own users
        if kind is EndpointKind.CONNECT:
            return False  # Amazon Connect rings its own agents; a SIP media application cannot
        if kind is EndpointKind.BROWSER:
            return bool(self.settings.hold_audio_bucket)  # the caller waits on hold while the page is asked
        if kind is EndpointKind.PSTN:
            return self.settings.allows(endpoint)  # only numbers in the allowed countries
        return kind is not EndpointKind.VOICE_CONNECTOR or bool(self.settings.voice_connector_arn)

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
            more_seen = bool(self.waiting)
            held = Held(chosen.agent_id, chosen.pool, self._line(chosen))
            try:
                self._hold(held)
            except AgentTaken as taken:
                logger.info("agent taken by another call", extra={"agent_id": chosen.agent_id})
                self._saw(chosen.pool, taken.seats)
                self.lost.add(chosen.agent_id)
                lost += 1
                decision = self.decide()
                window = list(decision.candidates[:CONTENTION_WINDOW])
                order.shuffle(window)
                decision = decision.model_copy(
                    update={"candidates": [*window, *decision.candidates[CONTENTION_WINDOW:]]}
                )
                continue
            except Unreachable as unreachable:
                # Not a race another call won: decide again as before, without the per-call shuffle.
                logger.info(str(unreachable), extra={"agent_id": chosen.agent_id})
                self.lost.add(chosen.agent_id)
                lost += 1
                decision = self.decide()
                continue
            except StoreUnavailable as error:
                logger.error("reservation failed", extra={"error": str(error)})
                return self._fallback(Note(code=NoteCode.RESERVATION_FAILED, detail=str(error)), decision)
            if more_seen:  # pools read with the reservation: the candidates to fail over to
                decision = self._led_by(chosen, self.decide())
            return self._ringing(chosen, held.line, decision)
        return self._fallback(Note(code=NoteCode.ALL_TAKEN), decision)

    @staticmethod
    def _led_by(chosen: Candidate, decision: Decision) -> Decision:
        """`decision` with the agent this call holds as its first candidate."""
        others = [c for c in decision.candidates if c.agent_id != chosen.agent_id]
        first = next((c for c in decision.candidates if c.agent_id == chosen.agent_id), chosen)
        return decision.model_copy(update={"candidates": [first, *others]})

    def _hold(self, wanted: Held) -> None:
        """Reserve `wanted`. In the same round trip: the pool reads that waited for this step and, when this
        container does not know where `wanted` rings, a read of their pool."""
        hold_until = self.now + self.hold_seconds
        reads = list(self.waiting)
        self.waiting = []
        if self._endpoint(wanted) is None and wanted.pool not in reads:
            reads.append(wanted.pool)
        results = self.store.together(
            [
                lambda: self.store.reserve(
                    wanted.pool, wanted.key, self.tag, self.now, hold_until, self.deadline
                ),
                *(self._read(pool_id) for pool_id in reads),
            ],
            self.deadline,
        )
        self._keep(reads, results[1:])
        if isinstance(results[0], StoreError):
            raise results[0]
        self._changed(wanted.pool, wanted.key, lambda seat: seat.held(self.tag, hold_until))
        endpoint = self._endpoint(wanted)
        if endpoint is None:
            self._let_go(wanted)
            raise StoreUnavailable(f"where {wanted.agent_id} rings could not be read")
        if not self._rings(endpoint):
            # The caller's last agent, held before their pool was read, rings where this channel cannot
            # reach (an Amazon Connect user, say): let go, and on to the next candidate.
            self._let_go(wanted)
            raise Unreachable(f"{wanted.agent_id} cannot be reached on this channel")

    def _line(self, chosen: Candidate) -> int:
        """Which of the chosen agent's lines to hold, as this call saw their pool."""
        view = self.seen.get(chosen.pool)
        return free_line(view.seats, chosen.agent_id, self.tag, self.now) if view is not None else 1

    def _endpoint(self, held: Held) -> AgentEndpoint | None:
        """Where an agent rings: from this call's view of their pool, else the container's routing data."""
        view = self.seen.get(held.pool)
        members = view.members if view is not None else self.views.members(held.pool, self.now)
        member = (members or {}).get(held.agent_id)
        return member.endpoint if member is not None else None

    def _changed(self, pool_id: str, agent_id: str, change: Callable[[Seat], Seat]) -> None:
        """A write of this call succeeded: its view and the container's follow it."""
        view = self.seen.get(pool_id)
        if view is not None:
            self.seen[pool_id] = view.with_change(agent_id, change)
        self.views.remember_change(pool_id, agent_id, change)

    def _let_go(self, held: Held) -> None:
        try:
            self.store.let_go(held.pool, LetGo(held.key, missed=False), self.tag, self.now, self.deadline)
        except StoreError as error:
            logger.warning("reservation not let go: it lapses by itself", extra={"error": str(error)})
            return
        self._changed(held.pool, held.key, lambda seat: seat.let_go(self.now, missed=False))

    def _saw(self, pool_id: str, seats: Mapping[str, Seat]) -> None:
        """A lost race's answer: the pool as it is now, for this call's next choice and the container's."""
        if not seats:
            return
        self.views.remember_seats(pool_id, seats, self.now)
        view = self.seen.get(pool_id)
        if view is not None:
            self.seen[pool_id] = view.with_seats(seats, self.now)
        elif (known := self.views.view(pool_id, self.now)) is not None:
            self.seen[pool_id] = known  # routing data this container had, availability just returned

    def _why_nobody(self, lost: int) -> Note:
        """Why no candidate is left: the agents could not be read at all, or they were busy (or taken)."""
        unreadable = next((note for note in self.notes if note.code is NoteCode.AGENTS_UNREADABLE), None)
        if unreadable is not None and not self.seen:
            return unreadable
        return Note(code=NoteCode.ALL_TAKEN if lost else NoteCode.NO_AGENT_AVAILABLE)

    def _probe(self) -> bool:
        """Look at up to `EXTRA_POOLS` more pools; False when there are none."""
        more = [p for p in self.views.more_pools(self.seen, self.now) if p not in self.waiting][:EXTRA_POOLS]
        if not more and not self.waiting:
            return False
        self._read_pools(more)
        return True

    # -- hand over (Amazon Connect) ---------------------------------------------------------------------

    def hand_over(self) -> Handover:
        """Decide without reserving anybody: Connect's presence is authoritative for its agents, and
        Connect rings them. The caller's last agent, when this container has not seen their pool lately,
        costs one more read (there is no reservation for it to go out with)."""
        self.look()
        decision = self.decide()
        if self.waiting:
            self._read_pools([])
            decision = self.decide()
        user_ids = {
            candidate.agent_id: endpoint.address
            for candidate in decision.candidates
            if (endpoint := self._endpoint(Held(candidate.agent_id, candidate.pool))) is not None
        }
        candidates = [c for c in decision.candidates if c.agent_id in user_ids]
        decision = decision.model_copy(
            update={
                "candidates": candidates,
                "mode": candidates[0].mode if candidates else RoutingMode.FALLBACK,
            }
        )
        return Handover(decision, self._handed_over(decision), user_ids, self._top_interests())

    def _top_interests(self) -> list[str]:
        assert self.allowed is not None
        if not self.allowed.use_interests:
            return []
        ranked = current_interests(self.context.interests, self.live, self.now, self.policy)
        return sorted(ranked, key=lambda product: -ranked[product][0])[:TOP_INTERESTS]

    def _handed_over(self, decision: Decision) -> DecisionRecord:
        """The record of a handed-over contact, kept at once (no later event will carry it): the agent
        named first (known agent or interest; any other agent is the queue's choice), and, where policy
        allows, the last-agent link to them."""
        if not decision.candidates:
            record = self._record(decision)
            return record.model_copy(
                update={"mode": RoutingMode.FALLBACK, "candidates": [], "outcome": Outcome.FALLBACK}
            )
        record = self._record(decision)
        first = decision.candidates[0]
        if first.mode is RoutingMode.ANY_AVAILABLE:
            # Connect's queue picks among the free agents: rapport does not know who takes the contact.
            return record.model_copy(update={"mode": first.mode, "outcome": Outcome.HANDED_OVER})
        state = self._state()
        link = None
        if state.link_days > 0 and self.key:
            link = LastAgent(
                agent_id=first.agent_id,
                pool=first.pool,
                call_id=self.call.call_id,
                at=self.now,
                expires_at=min(self.now + state.link_days * DAY, record.expires_at),
            )
        return record.model_copy(
            update={
                "mode": first.mode,
                "agent_id": first.agent_id,
                "outcome": Outcome.HANDED_OVER,
                "link": link,
            }
        )

    # -- the outcome ------------------------------------------------------------------------------------

    def _state(self) -> CallState:
        assert self.allowed is not None
        link_days = self.allowed.retention_days.last_agent if self.allowed.keep_last_agent and self.key else 0
        return CallState(stage=Stage.AGENT, caller_key=self.key, link_days=link_days)

    def _record(self, decision: Decision) -> DecisionRecord:
        assert self.allowed is not None
        listed = decision.candidates[: self.settings.max_candidates]
        kept = {product for candidate in listed for product in candidate.skills}
        used_interests = bool(kept) or any(c.mode is RoutingMode.INTEREST for c in listed)
        return DecisionRecord(
            call_id=self.call.call_id,
            caller_key=self.key,
            decided_at=self.now,
            mode=decision.mode,
            candidates=listed,
            interests={product: fact for product, fact in decision.interests.items() if product in kept},
            privacy=self.allowed.facts,
            notes=decision.notes,
            expires_at=self.now + self.allowed.record_days(used_interests) * DAY,
        )

    def _ringing(self, chosen: Candidate, line: int, decision: Decision) -> Route:
        record = self._record(decision).model_copy(
            update={
                "mode": chosen.mode,
                "attempts": [
                    Attempt(
                        agent_id=chosen.agent_id, mode=chosen.mode, pool=chosen.pool, line=line, at=self.now
                    )
                ],
            }
        )
        return Route(
            RouteKind.AGENT,
            self._state().model_copy(update={"record": record}),
            endpoint=self._endpoint(Held(chosen.agent_id, chosen.pool)),
            reason="; ".join(candidate_reasons(chosen, decision.interests, self.now)),
        )

    def _fallback(self, why: Note, decision: Decision) -> Route:
        notes = [
            note for note in decision.notes if note.code is not NoteCode.NO_AGENT_AVAILABLE and note != why
        ]
        record = self._record(decision.model_copy(update={"notes": notes})).model_copy(
            update={"mode": RoutingMode.FALLBACK, "candidates": [], "interests": {}}
        )
        return fallback(self.settings, self._state().model_copy(update={"record": record}), why)


def _chose(profile: CallerProfile | None, purpose: str, since: float) -> bool:
    """Whether the caller made a choice for `purpose` that still counts: a consent given (whenever), or
    one refused or left unanswered since `since`."""
    consent = profile.consents.get(purpose) if profile is not None else None
    return consent is not None and (consent.granted or consent.at > since)
