"""The life of one call, channel-agnostic: route it, fail over, connect, release.

Each step reads and writes through the `Store`, decides with the pure `routing` and `privacy` modules,
and returns what the channel should do next plus the small `CallState` the channel carries between
invocations (Chime's TransactionAttributes). No step raises on a store failure: it routes to the fallback
and says why.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rapport import SERVICE_NAME
from rapport.deadline import Deadline
from rapport.models import (
    Agent,
    AgentEndpoint,
    AgentId,
    Attempt,
    AttemptOutcome,
    CallerContext,
    Decision,
    DecisionRecord,
    EndpointKind,
    Interest,
    LastAgent,
    RoutingMode,
)
from rapport.numbers import caller_key, jurisdiction
from rapport.privacy import Rules, permissions
from rapport.routing import RoutingPolicy, choose_agent
from rapport.scoring import DAY
from rapport.settings import Settings
from rapport.store import AgentTaken, ConditionFailed, Store, StoreError, StoreUnavailable

logger = Logger(service=SERVICE_NAME, child=True)

# An agent stays reserved a little longer than the phone rings, so a late ACTION_FAILED still finds them.
RING_HOLD_MARGIN_SECONDS = 15
# How many ranked agents a new call may try to reserve when concurrent calls win the races for the first.
MAX_RESERVATION_ATTEMPTS = 24
# After a lost race, the next few candidates are tried in a per-call order: the calls that lost the same
# race ranked alike, and would otherwise all race again for the same next agent.
CONTENTION_WINDOW = 4
LIVE_INTEREST_SOURCE = "this call"


class Stage(StrEnum):
    AGENT = "agent"  # an agent's phone is ringing
    CONNECTED = "connected"  # bridged to an agent or the fallback number
    FALLBACK = "fallback"  # the fallback number is ringing
    MESSAGE = "message"  # the closing message is playing
    DONE = "done"


class CallState(BaseModel):
    """What one call carries from invocation to invocation: at most 7 short string attributes."""

    model_config = ConfigDict(frozen=True)

    caller_key: str | None = None
    agent_id: AgentId | None = None
    mode: RoutingMode = RoutingMode.FALLBACK
    attempt: int = Field(default=0, ge=0, le=1000)
    pending: tuple[tuple[AgentId, RoutingMode], ...] = ()
    link_days: int = Field(default=0, ge=0, le=3650)
    """Days to keep the last-agent link once connected; 0 where policy forbids keeping it."""
    stage: Stage = Stage.AGENT

    def to_attributes(self) -> dict[str, str]:
        return {
            "rp_caller": self.caller_key or "",
            "rp_agent": self.agent_id or "",
            "rp_mode": self.mode.value,
            "rp_attempt": str(self.attempt),
            "rp_candidates": ",".join(f"{agent}:{mode.value}" for agent, mode in self.pending),
            "rp_link": str(self.link_days),
            "rp_stage": self.stage.value,
        }

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any] | None) -> CallState | None:
        """The state a previous response stored, or None when there is none or it is unreadable."""
        if not attributes or "rp_stage" not in attributes:
            return None
        try:
            pending = tuple(
                (agent, RoutingMode(mode))
                for agent, _, mode in (
                    entry.partition(":")
                    for entry in str(attributes.get("rp_candidates", "")).split(",")
                    if entry
                )
            )
            return cls(
                caller_key=str(attributes.get("rp_caller", "")) or None,
                agent_id=str(attributes.get("rp_agent", "")) or None,
                mode=RoutingMode(str(attributes.get("rp_mode", RoutingMode.FALLBACK.value))),
                attempt=int(str(attributes.get("rp_attempt", "0"))),
                pending=pending,
                link_days=int(str(attributes.get("rp_link", "0"))),
                stage=Stage(str(attributes["rp_stage"])),
            )
        except (ValueError, ValidationError):
            return None


class RouteKind(StrEnum):
    AGENT = "agent"
    FALLBACK_NUMBER = "fallback_number"
    MESSAGE = "message"
    NOTHING = "nothing"


@dataclass(frozen=True)
class Route:
    """What the channel should do next."""

    kind: RouteKind
    state: CallState
    endpoint: AgentEndpoint | None = None
    number: str | None = None
    message: str | None = None
    reason: str = ""
    decision: Decision | None = None


@dataclass(frozen=True)
class InboundCall:
    """A new call as the channel saw it; numbers already normalised to E.164 (or None)."""

    call_id: str
    caller: str | None
    dialled: str | None = None
    live_products: Sequence[str] = field(default_factory=tuple)


class CallFlow:
    """The call steps, bound to one store and one deployment's settings."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        pepper: str | None,
        rules: Rules,
        policy: RoutingPolicy | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._pepper = pepper
        self._rules = rules
        # Ranked deep enough to keep reserving under contention; the call carries `max_candidates`.
        self._policy = policy or RoutingPolicy(max_candidates=MAX_RESERVATION_ATTEMPTS)

    @property
    def _hold_seconds(self) -> int:
        return self._settings.ring_timeout_seconds + RING_HOLD_MARGIN_SECONDS

    def _reachable(self, agent: Agent) -> bool:
        return agent.endpoint.kind is not EndpointKind.VOICE_CONNECTOR or bool(
            self._settings.voice_connector_arn
        )

    def caller_key_for(self, number: str | None) -> str | None:
        if number is None or self._pepper is None:
            return None
        return caller_key(number, self._pepper)

    def fallback(self, state: CallState, reason: str) -> Route:
        """The configured last resort: the fallback number once, then the closing message."""
        if self._settings.fallback_route and state.stage in (Stage.AGENT, Stage.CONNECTED):
            return Route(
                RouteKind.FALLBACK_NUMBER,
                state.model_copy(
                    update={"agent_id": None, "mode": RoutingMode.FALLBACK, "stage": Stage.FALLBACK}
                ),
                number=self._settings.fallback_route,
                reason=reason,
            )
        return Route(
            RouteKind.MESSAGE,
            state.model_copy(update={"agent_id": None, "mode": RoutingMode.FALLBACK, "stage": Stage.MESSAGE}),
            message=self._settings.fallback_message,
            reason=reason,
        )

    def start(self, call: InboundCall, now: float, deadline: Deadline) -> Route:
        """Route a new call. Costs one Query for the caller, one for the roster and one transaction to
        reserve the first agent and store the decision record (one more per agent lost to a race)."""
        key = self.caller_key_for(call.caller)
        notes: list[str] = []
        context = CallerContext()
        if key is None:
            notes.append("no usable caller number (or no caller key): routed without profile data")
        else:
            try:
                context = self._store.caller_context(key, now, deadline)
            except StoreError as error:
                logger.warning("caller context unavailable", extra={"error": str(error)})
                notes.append(f"caller profile unavailable ({error}): routed without it")
        region = jurisdiction(call.caller) or (context.profile.jurisdiction if context.profile else None)
        allowed = permissions(self._rules, region, context.profile)
        state = CallState(
            caller_key=key, link_days=allowed.retention_days.last_agent if allowed.keep_last_agent else 0
        )

        try:
            agents = self._store.agents(deadline)
        except StoreError as error:
            logger.error("agent roster unavailable", extra={"error": str(error)})
            return self.fallback(state, "; ".join([f"agent roster unavailable ({error})", *notes]))

        reachable = [agent for agent in agents if self._reachable(agent)]
        if len(reachable) < len(agents):
            notes.append(
                f"{len(agents) - len(reachable)} agent(s) on a Voice Connector skipped: none is configured"
            )
        agents = reachable
        live = [
            Interest(product=product, score=1.0, updated_at=now, sources=[LIVE_INTEREST_SOURCE])
            for product in call.live_products
        ]
        decision = choose_agent(
            agents=agents,
            context=context,
            permissions=allowed,
            live_interests=live,
            call_id=call.call_id,
            now=now,
            policy=self._policy,
        )
        decision = decision.model_copy(update={"reasons": [*decision.reasons, *notes]})
        record = DecisionRecord(
            call_id=call.call_id,
            caller_key=key,
            decided_at=now,
            mode=decision.mode,
            candidates=decision.candidates,
            reasons=decision.reasons,
            jurisdiction=allowed.jurisdiction,
            rule_set=allowed.rule_set,
            policy_version=allowed.policy_version,
            expires_at=now + allowed.retention_days.decision * DAY,
        )
        roster = {agent.agent_id: agent for agent in agents}
        shown = self._settings.max_candidates
        record = record.model_copy(update={"candidates": decision.candidates[:shown]})
        remaining = list(decision.candidates)
        order = random.Random(call.call_id)  # noqa: S311 - spreads contending calls; not a secret
        while remaining:
            candidate = remaining.pop(0)
            try:
                self._store.reserve_first(
                    record.model_copy(update={"agent_id": candidate.agent_id, "mode": candidate.mode}),
                    candidate.agent_id,
                    now,
                    now + self._hold_seconds,
                    deadline,
                )
            except AgentTaken:
                logger.info("agent taken by another call", extra={"agent_id": candidate.agent_id})
                window = remaining[:CONTENTION_WINDOW]
                order.shuffle(window)
                remaining[:CONTENTION_WINDOW] = window
                continue
            except StoreUnavailable as error:
                logger.error("reservation failed", extra={"error": str(error)})
                return self.fallback(state, f"could not reserve an agent ({error})")
            pending = tuple((c.agent_id, c.mode) for c in remaining[: shown - 1])
            chosen = state.model_copy(
                update={
                    "agent_id": candidate.agent_id,
                    "mode": candidate.mode,
                    "attempt": 1,
                    "pending": pending,
                }
            )
            return Route(
                RouteKind.AGENT,
                chosen,
                endpoint=roster[candidate.agent_id].endpoint,
                reason="; ".join(candidate.reasons),
                decision=decision,
            )

        reason = (
            "no agent available" if not decision.candidates else "every candidate was taken by other calls"
        )
        fallback = self.fallback(state, reason)
        try:
            self._store.put_record(
                record.model_copy(update={"outcome": "fallback", "reasons": [*record.reasons, reason]}),
                deadline,
            )
        except StoreError as error:
            logger.warning("decision record not stored", extra={"error": str(error)})
        return Route(
            fallback.kind,
            fallback.state,
            number=fallback.number,
            message=fallback.message,
            reason=reason,
            decision=decision,
        )

    def no_answer(self, state: CallState, call_id: str, error: str, now: float, deadline: Deadline) -> Route:
        """The ringing party did not answer: release them and ring the next candidate, else the fallback.

        Costs one transaction to release (a no-op on a repeated event) and one update per agent tried.
        """
        if state.stage is not Stage.AGENT or state.agent_id is None:
            return self.fallback(state, f"fallback did not answer ({error})")
        attempt = Attempt(
            agent_id=state.agent_id, mode=state.mode, at=now, outcome=AttemptOutcome.NO_ANSWER, error=error
        )
        try:
            self._store.release_no_answer(state.caller_key, call_id, state.attempt, attempt, deadline)
        except StoreError as failure:
            logger.warning("release after no answer failed", extra={"error": str(failure)})
        pending = list(state.pending)
        while pending:
            agent_id, mode = pending.pop(0)
            try:
                agent: Agent = self._store.reserve_agent(
                    agent_id, call_id, now, now + self._hold_seconds, deadline
                )
            except AgentTaken:
                logger.info("failover agent taken", extra={"agent_id": agent_id})
                continue
            except StoreUnavailable as failure:
                return self._fallback_recorded(
                    state, call_id, f"could not reserve the next agent ({failure})", deadline
                )
            next_state = state.model_copy(
                update={
                    "agent_id": agent_id,
                    "mode": mode,
                    "attempt": state.attempt + 1,
                    "pending": tuple(pending),
                }
            )
            return Route(
                RouteKind.AGENT,
                next_state,
                endpoint=agent.endpoint,
                reason=f"`{state.agent_id}` did not answer",
            )
        return self._fallback_recorded(state, call_id, f"no candidate answered (last: {error})", deadline)

    def _fallback_recorded(self, state: CallState, call_id: str, reason: str, deadline: Deadline) -> Route:
        try:
            self._store.record_fallback(state.caller_key, call_id, reason, deadline)
        except StoreError as error:
            logger.warning("fallback not recorded", extra={"error": str(error)})
        return self.fallback(state, reason)

    def connected(self, state: CallState, call_id: str, now: float, deadline: Deadline) -> CallState:
        """The bridge is up: hold the agent for the call and, where allowed, remember them for the caller."""
        if state.stage is Stage.FALLBACK:
            return state.model_copy(update={"stage": Stage.CONNECTED})
        if state.stage is not Stage.AGENT or state.agent_id is None:
            return state
        link = None
        if state.link_days > 0 and state.caller_key:
            link = LastAgent(
                agent_id=state.agent_id, call_id=call_id, at=now, expires_at=now + state.link_days * DAY
            )
        attempt = Attempt(agent_id=state.agent_id, mode=state.mode, at=now, outcome=AttemptOutcome.CONNECTED)
        try:
            self._store.mark_connected(state.caller_key, call_id, state.attempt, attempt, link, deadline)
        except ConditionFailed:
            # This call no longer holds the agent (a late or repeated event); the caller did reach
            # them, so the link is still kept where allowed.
            logger.warning(
                "connected agent no longer reserved by this call", extra={"agent_id": state.agent_id}
            )
            if link is not None and state.caller_key:
                try:
                    self._store.put_last_agent(state.caller_key, link, deadline)
                except StoreError as error:
                    logger.error("last-agent link not stored", extra={"error": str(error)})
        except StoreError as error:
            # The caller is talking to the agent either way; only the bookkeeping is lost.
            logger.error(
                "connected call not recorded", extra={"error": str(error), "agent_id": state.agent_id}
            )
        return state.model_copy(update={"stage": Stage.CONNECTED})

    def ended(self, state: CallState, call_id: str, now: float, deadline: Deadline) -> CallState:
        """A leg hung up: release the agent (into wrap-up if they had been talking)."""
        if state.agent_id is not None and state.stage in (Stage.AGENT, Stage.CONNECTED):
            try:
                self._store.release_after_call(
                    state.caller_key, call_id, state.agent_id, state.stage is Stage.CONNECTED, now, deadline
                )
            except StoreError as error:
                logger.error("agent not released", extra={"error": str(error), "agent_id": state.agent_id})
        return state.model_copy(update={"stage": Stage.DONE})
