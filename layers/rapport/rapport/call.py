"""What a call is and where it goes: the state it carries from event to event, and the route the channel
should take next. Shared by the new-call routing (`rapport.new_call`) and the later steps (`rapport.calls`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from rapport.explain import note
from rapport.models import (
    AgentEndpoint,
    Attempt,
    AttemptOutcome,
    Candidate,
    DecisionRecord,
    DialledLine,
    Note,
    Outcome,
    RoutingMode,
)
from rapport.privacy import Prompt
from rapport.settings import Settings


class Channel(StrEnum):
    """Who rings the agent: the SIP media application (rapport reserves agents and bridges the call) or
    Amazon Connect (its own presence decides; rapport names the agent and hands the contact over)."""

    SMA = "sma"
    CONNECT = "connect"


class Stage(StrEnum):
    ASKING = "asking"  # the caller is asked whether their data may be used
    AGENT = "agent"  # an agent's phone is ringing (or routing has not finished)
    CONNECTED = "connected"  # bridged to an agent or the fallback number
    FALLBACK = "fallback"  # the fallback number is ringing
    MESSAGE = "message"  # the closing message is playing
    DONE = "done"


class CallState(BaseModel):
    """What a call carries from event to event: where it stands, and its decision record so far."""

    model_config = ConfigDict(frozen=True)

    stage: Stage = Stage.DONE
    caller_key: str | None = None
    link_days: int = Field(default=0, ge=0, le=3650)
    """Days to keep the last-agent link once connected; 0 where policy forbids keeping it."""
    record: DecisionRecord | None = None
    asking: tuple[str, ...] = ()
    """While the caller is asked: the purposes their answer is recorded for."""
    live_products: tuple[str, ...] = ()
    """While the caller is asked: the products the call named (SIP header), for routing after."""
    meeting_id: str | None = None
    """The Chime SDK meeting the caller was joined into with a browser agent, once they accepted."""
    offered: bool = False
    """The ringing agent is a browser agent whose page was offered the call (withdrawn if the caller
    hangs up first)."""

    @property
    def ringing(self) -> Attempt | None:
        """The agent whose phone rings for this call, if one does."""
        if self.stage is not Stage.AGENT or self.record is None or not self.record.attempts:
            return None
        attempt = self.record.attempts[-1]
        return attempt if attempt.outcome is AttemptOutcome.RINGING else None

    @property
    def holding(self) -> Attempt | None:
        """The agent this call holds: ringing, or talking to the caller."""
        if self.stage is Stage.CONNECTED and self.record is not None and self.record.attempts:
            attempt = self.record.attempts[-1]
            return attempt if attempt.outcome is AttemptOutcome.CONNECTED else None
        return self.ringing

    @property
    def agent_id(self) -> str | None:
        held = self.holding
        return held.agent_id if held else None

    @property
    def mode(self) -> RoutingMode:
        held = self.holding
        return held.mode if held else RoutingMode.FALLBACK

    @property
    def attempt(self) -> int:
        return len(self.record.attempts) if self.record else 0

    def pending(self) -> list[Candidate]:
        """Candidates not rung yet, in order: the failover list."""
        if self.record is None:
            return []
        tried = {attempt.agent_id for attempt in self.record.attempts}
        return [candidate for candidate in self.record.candidates if candidate.agent_id not in tried]


class RouteKind(StrEnum):
    ASK = "ask"
    AGENT = "agent"
    FALLBACK_NUMBER = "fallback_number"
    MESSAGE = "message"


@dataclass(frozen=True)
class Route:
    """What the channel should do next."""

    kind: RouteKind
    state: CallState
    endpoint: AgentEndpoint | None = None
    number: str | None = None
    message: str | None = None
    reason: str = ""
    prompt: Prompt | None = None
    """The question to ask (ASK), or the prompt whose answer to say before the route (`answer`)."""
    answer: bool | None = None
    """After the caller was asked: whether they agreed (the matching words are said first)."""
    set_away: str | None = None
    """An agent this step set away for not answering too many calls in a row."""
    rate_limited: bool = False
    """The caller is over the rate limit: they hear the closing message, nobody is rung."""
    refused: int = 0
    """Candidates passed over because their endpoint may not be rung (a PSTN number in a country not
    allowed): counted, never rung."""


@dataclass(frozen=True)
class InboundCall:
    """A new call as the channel saw it; numbers already normalised to E.164 (or None)."""

    call_id: str
    caller: str | None
    region: str | None = None
    """The caller's jurisdiction as their number tells it (ISO 3166), if it can."""
    line: DialledLine | None = None
    """The product line the caller dialled, when the number is one of the deployment's lines. The number
    itself is not kept: one a `Diversion` names may be someone's own phone that forwarded the call."""
    live_products: Sequence[str] = field(default_factory=tuple)


def fallback(settings: Settings, state: CallState, why: Note) -> Route:
    """The configured last resort: the fallback number once, then the closing message."""
    record = state.record
    if record is not None:
        record = record.model_copy(update={"outcome": Outcome.FALLBACK, "notes": [*record.notes, why]})
    reason = note(why)
    if settings.fallback_route and state.stage in (Stage.AGENT, Stage.CONNECTED):
        return Route(
            RouteKind.FALLBACK_NUMBER,
            state.model_copy(update={"stage": Stage.FALLBACK, "record": record}),
            number=settings.fallback_route,
            reason=reason,
        )
    return Route(
        RouteKind.MESSAGE,
        state.model_copy(update={"stage": Stage.MESSAGE, "record": record}),
        message=settings.fallback_message,
        reason=reason,
    )
