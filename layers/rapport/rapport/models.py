"""Domain models shared by the routing core, the store and the channel adapters."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

AgentId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,30}$")]
ProductId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Proficiency = Annotated[int, Field(ge=1, le=5)]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EndpointKind(StrEnum):
    VOICE_CONNECTOR = "voice_connector"
    PSTN = "pstn"


class AgentEndpoint(Model):
    """Where an agent's phone rings: a Voice Connector user part or a business PSTN number."""

    kind: EndpointKind
    address: Annotated[str, Field(min_length=1, max_length=30)]


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class AgentState(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


class ProductStats(Model):
    calls: int = Field(default=0, ge=0)
    sales: int = Field(default=0, ge=0)


class Agent(Model):
    agent_id: AgentId
    name: str = ""
    endpoint: AgentEndpoint
    proficiency: dict[ProductId, Proficiency] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    presence: Presence = Presence.ONLINE
    state: AgentState = AgentState.IDLE
    busy_until: float = 0.0
    """Epoch seconds until which the agent is held (ringing, on a call, in wrap-up)."""
    idle_since: float = 0.0
    """When the agent last became free; the longest idle agent is offered calls first."""
    reserved_by: str | None = None
    wrap_up_seconds: int = Field(default=30, ge=0, le=3600)
    stats: dict[ProductId, ProductStats] = Field(default_factory=dict)
    no_answers: int = 0

    def is_available(self, now: float, call_id: str | None = None) -> bool:
        """Online and not held, or held by this very call (a repeated event must find the same agent)."""
        if self.presence is not Presence.ONLINE:
            return False
        return self.busy_until <= now or (call_id is not None and self.reserved_by == call_id)


class Interest(Model):
    product: ProductId
    score: float = Field(ge=0.0, le=1.0)
    updated_at: float
    sources: list[str] = Field(default_factory=list)
    expires_at: float | None = None


class Consent(Model):
    granted: bool
    at: float
    source: str = ""


class CallerProfile(Model):
    jurisdiction: str | None = None
    consents: dict[str, Consent] = Field(default_factory=dict)
    """By purpose: `interest_routing`, `known_agent`."""
    objected: bool = False
    objected_at: float | None = None
    created_at: float = 0.0

    def consented_to(self, purpose: str) -> bool:
        consent = self.consents.get(purpose)
        return consent is not None and consent.granted


class LastAgent(Model):
    agent_id: AgentId
    call_id: str
    at: float
    expires_at: float


class CallerContext(Model):
    """Everything held about one caller that routing may look at (once policy allows)."""

    profile: CallerProfile | None = None
    interests: list[Interest] = Field(default_factory=list)
    last_agent: LastAgent | None = None


class RoutingMode(StrEnum):
    KNOWN_AGENT = "known_agent"
    INTEREST = "interest"
    ANY_AVAILABLE = "any_available"
    FALLBACK = "fallback"


class Candidate(Model):
    agent_id: AgentId
    mode: RoutingMode
    score: float = 0.0
    reasons: list[str] = Field(default_factory=list)


class Decision(Model):
    """What routing chose and why: the ordered candidates and the reasons a caller may read."""

    mode: RoutingMode
    candidates: list[Candidate]
    reasons: list[str]


class AttemptOutcome(StrEnum):
    RINGING = "ringing"
    NO_ANSWER = "no_answer"
    CONNECTED = "connected"
    ENDED = "ended"


class Attempt(Model):
    agent_id: AgentId
    mode: RoutingMode
    at: float
    outcome: AttemptOutcome = AttemptOutcome.RINGING
    error: str | None = None


class DecisionRecord(Model):
    """The stored account of one call's routing: what was decided, tried and why, until it expires."""

    call_id: str
    caller_key: str | None
    decided_at: float
    mode: RoutingMode
    agent_id: str | None = None
    outcome: str = "ringing"
    candidates: list[Candidate] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    attempts: dict[str, Attempt] = Field(default_factory=dict)
    jurisdiction: str | None = None
    rule_set: str = "default"
    policy_version: str = ""
    expires_at: float


class Product(Model):
    product_id: ProductId
    names: dict[str, str] = Field(default_factory=dict)
    keywords: dict[str, list[str]] = Field(default_factory=dict)
