"""The life of one call, channel-agnostic: route it, fail over, connect, end.

A new call is routed by `rapport.new_call` (look, decide, reserve). The call's decision record travels
with the call (`CallState`) and is written once, when the call ends. No step raises on a store failure:
it routes to the fallback and says why.
"""

from __future__ import annotations

import dataclasses

from aws_lambda_powertools import Logger

from rapport import SERVICE_NAME
from rapport.budget import Deadline
from rapport.call import CallState, Channel, InboundCall, Route, RouteKind, Stage, fallback
from rapport.models import (
    MAX_CONCURRENT_CALLS,
    AgentEndpoint,
    Attempt,
    AttemptOutcome,
    CallerProfile,
    Candidate,
    EndpointKind,
    LastAgent,
    Note,
    NoteCode,
    Offer,
    Outcome,
    Presence,
    line_key,
)
from rapport.new_call import Handover, NewCall
from rapport.numbers import PhoneNumber, caller_key
from rapport.pools import PoolView, PoolViews, call_tag, free_line
from rapport.privacy import Rules
from rapport.rights import PrivacyRights, Unavailable
from rapport.routing import RoutingPolicy
from rapport.scoring import DAY
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.store import (
    MAX_CALL_SECONDS,
    AgentTaken,
    ConditionFailed,
    LetGo,
    Store,
    StoreError,
    StoreUnavailable,
)

logger = Logger(service=SERVICE_NAME, child=True)

# An agent stays reserved a little longer than the phone rings, so a late ACTION_FAILED still finds them;
# a reservation whose call vanished lapses by itself after this.
RING_HOLD_MARGIN_SECONDS = 15


class CallFlow:
    """The call steps, bound to one store, one container's pool views and one deployment's settings."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        rules: Rules,
        views: PoolViews,
        pepper: PepperSource | None,
        policy: RoutingPolicy | None = None,
        rights: PrivacyRights | None = None,
    ) -> None:
        self._store = store
        self._rights = rights
        """Where an answer given in the call is recorded; without it, nobody is asked."""
        self._settings = settings
        self._rules = rules
        self._views = views
        self._pepper = pepper
        # Ranked a little deeper than the call carries, for the races lost to concurrent calls.
        self._policy = policy or RoutingPolicy(
            max_candidates=settings.max_candidates + 4, half_life_days=settings.interest_half_life_days
        )

    @property
    def _hold_seconds(self) -> int:
        return self._settings.ring_timeout_seconds + RING_HOLD_MARGIN_SECONDS

    def pepper(self, fetch: bool = True) -> str | None:
        """The caller-key pepper (None while it cannot be had); `fetch=False`: only if already here."""
        if self._pepper is None:
            return None
        return self._pepper.get() if fetch else self._pepper.cached()

    def caller_key_for(self, number: str | None) -> str | None:
        pepper = self._pepper.get() if self._pepper is not None and number is not None else None
        return caller_key(number, pepper) if number is not None and pepper is not None else None

    def start(
        self,
        call: InboundCall,
        now: float,
        deadline: Deadline,
        chosen: CallerProfile | None = None,
        asked: Note | None = None,
    ) -> Route:
        """Route a new call: one round trip when the caller has no usable profile data, otherwise two or
        three (see `rapport.new_call`), plus one per agent lost to a concurrent call. Where the deployment
        asks for consent in the call, the answer may be the question (`RouteKind.ASK`) instead."""
        route = NewCall(
            store=self._store,
            views=self._views,
            settings=self._settings,
            rules=self._rules,
            policy=self._policy,
            hold_seconds=self._hold_seconds,
            call=call,
            key=self.caller_key_for(call.caller),
            now=now,
            deadline=deadline,
            ask_for_consent=self._settings.ask_for_consent and self._rights is not None,
            chosen=chosen,
            asked=asked,
        ).route()
        return self._offered(route, call.call_id, now, deadline)

    def hand_over(self, call: InboundCall, now: float, deadline: Deadline) -> Handover:
        """Decide an Amazon Connect contact (nobody reserved: Connect rings its own agents) and keep its
        decision record, in two round trips for a caller without usable profile data and a warm
        container, three when their interests or last agent point to pools not seen lately, plus the
        record's write. A record that cannot be written is logged; the answer stands."""
        handover = NewCall(
            store=self._store,
            views=self._views,
            settings=self._settings,
            rules=self._rules,
            policy=self._policy,
            hold_seconds=self._hold_seconds,
            call=call,
            key=self.caller_key_for(call.caller),
            now=now,
            deadline=deadline,
            channel=Channel.CONNECT,
        ).hand_over()
        try:
            self._store.put_record(handover.record, deadline)
        except StoreError as error:
            logger.error("decision record not stored", extra={"error": str(error)})
        return handover

    def answered(
        self,
        call: InboundCall,
        number: PhoneNumber | None,
        state: CallState,
        digits: str | None,
        now: float,
        deadline: Deadline,
    ) -> Route:
        """The caller answered the question (`digits` None: no or no valid answer, which counts as no):
        record it as their consent, or its refusal, with source `ivr`, then route the call."""
        granted = digits == "1"
        detail = "yes" if granted else ("no" if digits else "no_answer")
        chosen: CallerProfile | None = None
        if self._rights is not None and number is not None and state.asking:
            try:
                chosen = self._rights.record_choice(number, state.asking, granted, "ivr", now, deadline)
            except (StoreError, Unavailable) as error:
                # Not recorded, so not provable: this call goes without the data either way.
                logger.error("in-call answer not recorded", extra={"error": str(error)})
                granted = False
        route = self.start(
            call, now, deadline, chosen=chosen, asked=Note(code=NoteCode.ASKED_IN_CALL, detail=detail)
        )
        prompt = self._rules.prompt(
            self._rules.for_jurisdiction(number.region if number else None)[1].language
        )
        return dataclasses.replace(route, prompt=prompt, answer=granted)

    def fallback(self, state: CallState, why: Note) -> Route:
        """The configured last resort: the fallback number once, then the closing message."""
        return fallback(self._settings, state, why)

    # -- later events -------------------------------------------------------------------------------------

    def no_answer(self, state: CallState, call_id: str, error: str, now: float, deadline: Deadline) -> Route:
        """The ringing party did not answer: ring the next candidate (freeing the one who did not answer in
        the same write when they share a pool), else the fallback. One round trip per candidate tried."""
        missed = state.ringing
        if missed is None or state.record is None:
            return self.fallback(state, Note(code=NoteCode.NO_CANDIDATE_ANSWERED, detail=error))
        record = state.record
        attempts = [
            *record.attempts[:-1],
            missed.model_copy(update={"outcome": AttemptOutcome.NO_ANSWER, "error": error}),
        ]
        state = state.model_copy(update={"record": record.model_copy(update={"attempts": attempts})})
        tag = call_tag(call_id)
        hold = now + self._hold_seconds
        refused = 0
        for candidate in state.pending():
            shared = candidate.pool == missed.pool
            let_go = LetGo(missed.seat_key, missed=True) if shared else None
            try:
                taken = self._take(candidate, let_go, tag, now, hold, deadline)
            except StoreUnavailable as failure:
                return self.fallback(state, Note(code=NoteCode.RESERVATION_FAILED, detail=str(failure)))
            if taken is None:
                continue
            line, endpoint, in_a_row = taken
            if not self._settings.allows(endpoint):
                # Held before their pool was read, and they ring where rapport may not call: let go.
                logger.error(
                    "endpoint refused", extra={"agent_id": candidate.agent_id, "kind": endpoint.kind}
                )
                refused += 1
                self._let_go_refused(candidate, line, tag, now, deadline)
                continue
            if shared:
                self._views.remember_change(
                    missed.pool, missed.seat_key, lambda seat: seat.let_go(now, missed=True)
                )
            else:
                in_a_row = self._release_missed(missed, tag, now, deadline)
            attempt = Attempt(
                agent_id=candidate.agent_id, mode=candidate.mode, pool=candidate.pool, line=line, at=now
            )
            route = Route(
                RouteKind.AGENT,
                state.model_copy(
                    update={"record": record.model_copy(update={"attempts": [*attempts, attempt]})}
                ),
                endpoint=endpoint,
                reason=f"`{missed.agent_id}` did not answer",
                set_away=self._away_if_missing(missed, in_a_row, now, deadline),
                refused=refused,
            )
            return self._offered(route, call_id, now, deadline)
        in_a_row = self._release_missed(missed, tag, now, deadline)
        route = self.fallback(state, Note(code=NoteCode.NO_CANDIDATE_ANSWERED, detail=error))
        away = self._away_if_missing(missed, in_a_row, now, deadline)
        return dataclasses.replace(route, set_away=away, refused=refused)

    def _let_go_refused(
        self, candidate: Candidate, line: int, tag: str, now: float, deadline: Deadline
    ) -> None:
        key = line_key(candidate.agent_id, line)
        try:
            self._store.release(candidate.pool, key, tag, now, False, deadline)
        except StoreError as error:  # the hold lapses by itself
            logger.warning("refused agent not let go", extra={"error": str(error)})
            return
        self._views.remember_change(candidate.pool, key, lambda seat: seat.let_go(now, False))

    def _offered(self, route: Route, call_id: str, now: float, deadline: Deadline) -> Route:
        """When `route` holds a browser agent: offer them the call (their page shows it), while the caller
        hears hold audio. An offer that cannot be written is not seen: it runs out, and the call moves on."""
        browser = (
            route.kind is RouteKind.AGENT
            and route.endpoint is not None
            and route.endpoint.kind is EndpointKind.BROWSER
            and route.state.agent_id is not None
        )
        if not browser or route.state.agent_id is None:
            if route.state.offered:  # on to a phone: no offer stands any more
                return dataclasses.replace(route, state=route.state.model_copy(update={"offered": False}))
            return route
        record = route.state.record
        interests = record.interests if record is not None else {}
        top = max(interests, key=lambda product: interests[product].score) if interests else None
        offer = Offer(
            call_id=call_id,
            agent_id=route.state.agent_id,
            mode=route.state.mode,
            interest=top,
            reasons=[route.reason] if route.reason else [],
            offered_at=now,
            # The hold audio plays for at least the ring timeout; an answer after that comes too late.
            expires_at=now + self._settings.ring_timeout_seconds,
        )
        try:
            self._store.put_offer(offer, deadline)
        except StoreError as error:
            logger.error("offer not written: it runs out unseen", extra={"error": str(error)})
        return dataclasses.replace(route, state=route.state.model_copy(update={"offered": True}))

    def _away_if_missing(
        self, missed: Attempt, in_a_row: int | None, now: float, deadline: Deadline
    ) -> str | None:
        """Set an agent away who has now not answered `away_after_no_answers` calls in a row (the reason
        on their record); their id if so. Bookkeeping only: the call goes on whatever happens here."""
        if in_a_row is None or in_a_row < self._settings.away_after_no_answers:
            return None
        reason = f"{in_a_row} calls not answered in a row"
        try:
            self._store.set_away(missed.pool, missed.agent_id, reason, now, deadline)
        except ConditionFailed:
            return None  # not available any more (set away or offline meanwhile, or removed)
        except StoreError as error:
            logger.warning("agent not set away", extra={"agent_id": missed.agent_id, "error": str(error)})
            return None
        logger.info("agent set away", extra={"agent_id": missed.agent_id, "reason": reason})
        self._views.remember_change(
            missed.pool, missed.agent_id, lambda seat: dataclasses.replace(seat, presence=Presence.AWAY)
        )
        return missed.agent_id

    def _take(
        self,
        candidate: Candidate,
        let_go: LetGo | None,
        tag: str,
        now: float,
        hold: float,
        deadline: Deadline,
    ) -> tuple[int, AgentEndpoint, int | None] | None:
        """Hold a free line of a failover candidate: (line, where they ring, the let-go agent's misses in
        a row), or None when a concurrent call took them (every line of theirs)."""
        view = self._views.view(candidate.pool, now)
        line = free_line(view.seats, candidate.agent_id, tag, now) if view is not None else 1
        for _ in range(MAX_CONCURRENT_CALLS):
            try:
                endpoint, in_a_row = self._reserve_next(candidate, line, let_go, tag, now, hold, deadline)
            except AgentTaken as taken:
                logger.info("failover agent taken", extra={"agent_id": candidate.agent_id, "line": line})
                if not taken.seats:
                    return None
                self._views.remember_seats(candidate.pool, taken.seats, now)
                other = free_line(taken.seats, candidate.agent_id, tag, now)
                if other == line or not taken.seats[line_key(candidate.agent_id, other)].free_for(tag, now):
                    return None
                line = other
                continue
            # This container's view follows its own writes, or its next calls would see them busy.
            key = line_key(candidate.agent_id, line)
            self._views.remember_change(candidate.pool, key, lambda seat: seat.held(tag, hold))
            return line, endpoint, in_a_row
        return None

    def _reserve_next(
        self,
        candidate: Candidate,
        line: int,
        let_go: LetGo | None,
        tag: str,
        now: float,
        hold: float,
        deadline: Deadline,
    ) -> tuple[AgentEndpoint, int | None]:
        """Reserve a failover candidate and find where they ring: from this container's view of their pool,
        or, when it has none, by reading the pool in the same round trip. Also: the let-go agent's calls
        not answered in a row, when one was let go in the same write."""

        key = line_key(candidate.agent_id, line)

        def reserve() -> int | None:
            return self._store.reserve(candidate.pool, key, tag, now, hold, deadline, let_go)

        members = self._views.members(candidate.pool, now)
        if members is None:
            reserved, read = self._store.together(
                [reserve, lambda: self._store.pool(candidate.pool, now, deadline)], deadline
            )
            if isinstance(read, PoolView):
                self._views.remember(read)
                members = read.members
            if isinstance(reserved, StoreError):
                raise reserved
            in_a_row = reserved if isinstance(reserved, int) else None
        else:
            in_a_row = reserve()
        member = (members or {}).get(candidate.agent_id)
        if member is None:
            raise StoreUnavailable(f"no routing data for {candidate.agent_id}")
        return member.endpoint, in_a_row

    def _release_missed(self, missed: Attempt, tag: str, now: float, deadline: Deadline) -> int | None:
        """Free the agent who did not answer; their calls not answered in a row, when known."""
        try:
            in_a_row = self._store.let_go(
                missed.pool, LetGo(missed.seat_key, missed=True), tag, now, deadline
            )
        except StoreError as error:
            logger.warning("release after no answer failed", extra={"error": str(error)})
            return None
        self._views.remember_change(missed.pool, missed.seat_key, lambda seat: seat.let_go(now, missed=True))
        return in_a_row

    def connected(self, state: CallState, call_id: str, now: float, deadline: Deadline) -> CallState:
        """The bridge is up: hold the agent for the call and note who took it (and, where policy allows,
        the last-agent link the record will leave)."""
        if state.stage is Stage.FALLBACK:
            record = state.record.model_copy(update={"connected_at": now}) if state.record else None
            return state.model_copy(update={"stage": Stage.CONNECTED, "record": record})
        ringing = state.ringing
        if ringing is None or state.record is None:
            return state
        try:
            self._store.connect(ringing.pool, ringing.seat_key, call_tag(call_id), now, deadline)
            until = now + MAX_CALL_SECONDS
            self._views.remember_change(ringing.pool, ringing.seat_key, lambda seat: seat.talking(until))
        except ConditionFailed:
            # This call no longer holds the agent (a late or repeated event); the caller did reach them.
            logger.warning(
                "connected agent no longer reserved by this call", extra={"agent_id": ringing.agent_id}
            )
        except StoreError as error:
            # The caller is talking to the agent either way; only the bookkeeping is lost.
            logger.error(
                "connected call not recorded", extra={"error": str(error), "agent_id": ringing.agent_id}
            )
        record = state.record
        link = None
        link_days = self._link_days(state)
        if link_days > 0 and state.caller_key:
            link = LastAgent(
                agent_id=ringing.agent_id,
                pool=ringing.pool,
                call_id=call_id,
                at=now,
                expires_at=min(now + link_days * DAY, record.expires_at),
            )
        attempts = [*record.attempts[:-1], ringing.model_copy(update={"outcome": AttemptOutcome.CONNECTED})]
        record = record.model_copy(
            update={
                "attempts": attempts,
                "outcome": Outcome.CONNECTED,
                "agent_id": ringing.agent_id,
                "connected_at": now,
                "link": link,
            }
        )
        return state.model_copy(update={"stage": Stage.CONNECTED, "record": record})

    def _link_days(self, state: CallState) -> int:
        """The days the call's state asks to keep the last-agent link, never more than the policy allows
        for the jurisdiction its record names (the link never outlives the record either: see above)."""
        if state.record is None:
            return 0
        _, rules = self._rules.for_jurisdiction(state.record.privacy.jurisdiction)
        allowed = rules.retention_days.last_agent
        if state.link_days > allowed:
            logger.warning(
                "last-agent link shortened to policy", extra={"asked_days": state.link_days, "days": allowed}
            )
        return min(state.link_days, allowed)

    def release(self, state: CallState, call_id: str, now: float, deadline: Deadline) -> None:
        """Free the agent this call holds: into wrap-up if they talked, at once if their phone rang."""
        held = state.holding
        if held is None:
            return
        talked = state.stage is Stage.CONNECTED
        try:
            self._store.release(held.pool, held.seat_key, call_tag(call_id), now, talked, deadline)
        except ConditionFailed:
            return  # a repeated HANGUP: released already
        except StoreError as error:
            logger.error("agent not released", extra={"error": str(error), "agent_id": held.agent_id})
            return
        self._views.remember_change(
            held.pool, held.seat_key, lambda seat: seat.after_call(now) if talked else seat.let_go(now, False)
        )

    def ended(self, state: CallState, call_id: str, now: float, deadline: Deadline) -> CallState:
        """The call is over: free the agent and store the decision record, in one round trip."""
        record = state.record
        if record is not None:
            outcome = record.outcome
            if state.stage is Stage.AGENT:
                outcome = Outcome.ABANDONED
            elif state.stage is Stage.CONNECTED and record.agent_id is not None:
                outcome = Outcome.ENDED
            record = record.model_copy(update={"outcome": outcome, "ended_at": now})
        requests = [lambda: self.release(state, call_id, now, deadline)]
        if record is not None:
            finished = record
            requests.append(lambda: self._store.put_record(finished, deadline))
        offered = state.ringing if state.offered else None
        if offered is not None:
            # The caller hung up on hold: the agent's page stops showing the call (the stream tells it).
            requests.append(lambda: self._store.withdraw_offer(offered.agent_id, call_id, deadline))
        for result in self._store.together(requests, deadline)[1:]:
            if isinstance(result, StoreError):
                logger.error("decision record or offer not written", extra={"error": str(result)})
        return state.model_copy(update={"stage": Stage.DONE, "record": record})
