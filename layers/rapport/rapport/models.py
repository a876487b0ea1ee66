"""Domain models shared by the routing core, the store and the channel adapters.

Decisions are kept as facts (which interest, which proficiency, which rule), not as sentences: the stored
record stays small, and `rapport.explain` turns the facts into the sentences a caller reads.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

AgentId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,30}$")]
ProductId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Proficiency = Annotated[int, Field(ge=1, le=5)]
MAX_CONCURRENT_CALLS = 4
"""Calls one agent may take at once, at most (each is a line in their pool's availability item)."""
LINE_MARK = "~"
"""Joins an agent id and a line number in the availability item: `anna`, `anna~2`, `anna~3`. Never in an
agent id, so a line's key always names its agent."""


def line_key(agent_id: str, line: int) -> str:
    """Where line `line` (from 1) of an agent is kept in their pool's availability item."""
    return agent_id if line <= 1 else f"{agent_id}{LINE_MARK}{line}"


def agent_of(key: str) -> str:
    """The agent a line key belongs to."""
    return key.split(LINE_MARK, 1)[0]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Stored(Model):
    """A model kept in every decision record: stored and carried under one- or two-letter aliases (a
    write unit is 1 KB, attribute names included), built and read in code by its field names."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class EndpointKind(StrEnum):
    VOICE_CONNECTOR = "voice_connector"
    PSTN = "pstn"
    CONNECT = "connect"
    """An Amazon Connect user: Connect rings them; the SIP media application never bridges to them."""
    BROWSER = "browser"
    """An agent who takes calls in rapport's agent page: the caller hears hold audio while the page is
    offered the call, and joins a Chime SDK meeting with the agent when they accept."""


_ADDRESS_RULES = {
    EndpointKind.PSTN: (re.compile(r"^\+[1-9]\d{6,14}$"), "an E.164 number such as +4930555010"),
    EndpointKind.VOICE_CONNECTOR: (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,29}$"),
        "a SIP user part of letters, digits and . _ + - (at most 30)",
    ),
    EndpointKind.BROWSER: (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,29}$"),
        "the name the agent's page signs in with: letters, digits and . _ - (at most 30)",
    ),
    EndpointKind.CONNECT: (
        re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        "an Amazon Connect user id (a UUID)",
    ),
}


class AgentEndpoint(Model):
    """Where an agent is reached: a business PSTN number, a Voice Connector SIP user (a PBX or desk
    phone), or an Amazon Connect user."""

    kind: EndpointKind
    address: Annotated[str, Field(min_length=1, max_length=36)]

    @model_validator(mode="after")
    def _address_fits_kind(self) -> AgentEndpoint:
        pattern, words = _ADDRESS_RULES[self.kind]
        if not pattern.match(self.address):
            raise ValueError(f"a {self.kind.value} endpoint's address must be {words}")
        return self


class Presence(StrEnum):
    ONLINE = "online"
    """Available: offered calls."""
    AWAY = "away"
    """Not offered calls for now (set by the agent, or after too many calls not answered in a row)."""
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
    """An agent as routing sees them: what they know, where they ring, and whether they are free."""

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
    """The tag of the call holding the agent (`rapport.pools.call_tag`), while one does."""
    wrap_up_seconds: int = Field(default=30, ge=0, le=3600)
    max_concurrent_calls: int = Field(default=1, ge=1, le=MAX_CONCURRENT_CALLS)
    """Calls the agent takes at once (a second line for a consultation or a call waiting, say)."""
    stats: dict[ProductId, ProductStats] = Field(default_factory=dict)
    no_answers: int = 0
    pool: str = ""
    """The pool the agent's availability lives in (see docs/data-model.md)."""
    status_reason: str = ""
    """Why the agent's presence was last set (by whom, or after how many calls not answered)."""
    status_at: float = 0.0
    connect_at: float = 0.0
    """The time of the last Amazon Connect agent event applied to the agent (older ones are ignored)."""

    def is_available(self, now: float, call_tag: str | None = None) -> bool:
        """Online and not held, or held by this very call (a repeated event must find the same agent)."""
        if self.presence is not Presence.ONLINE:
            return False
        return self.busy_until <= now or (call_tag is not None and self.reserved_by == call_tag)

    def primary_product(self) -> str | None:
        """The product the agent knows best (ties: the first by name), which decides their pool."""
        if not self.proficiency:
            return None
        return min(self.proficiency, key=lambda product: (-self.proficiency[product], product))


class Contribution(Stored):
    """One signal's part in an interest score: kept (the newest few) to explain the score."""

    source: str = Field(alias="s")
    at: float = Field(alias="t")
    strength: float = Field(alias="w", ge=0.0, le=1.0)
    evidence: str = Field(default="", alias="e")
    """The words that decided, for a text signal."""
    signal_id: str = Field(default="", alias="i")


class Interest(Model):
    product: ProductId
    score: float = Field(ge=0.0, le=1.0)
    """As of `updated_at`; it fades from there (`rapport.scoring.faded_score`)."""
    updated_at: float
    sources: list[str] = Field(default_factory=list)
    """Kinds of signal behind the score, newest first."""
    evidence: str = ""
    """The words of the signal that counts most, when it was text."""
    expires_at: float | None = None
    recent: list[Contribution] = Field(default_factory=list)
    """The newest contributions (not read on the call path)."""
    seen: list[str] = Field(default_factory=list)
    """Hashes of the ids of the signals counted in this interest lately, oldest first: one delivered
    again is recognised."""
    forgotten_until: float = 0.0
    """Until when a signal dropped from `seen` could still come again (its `SIGNAL#` item remembers it)."""
    version: int = 0


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
    objection_source: str = ""
    created_at: float = 0.0
    subject: str = ""
    """A random id that stands for the caller in the audit trail (not derived from the number: once the
    profile is erased, the trail no longer leads to anyone)."""
    expires_at: float | None = None

    def consented_to(self, purpose: str) -> bool:
        consent = self.consents.get(purpose)
        return consent is not None and consent.granted


class LastAgent(Stored):
    """The agent a caller last spoke with, kept with that call's decision record where policy allows."""

    agent_id: AgentId = Field(alias="a")
    pool: str = Field(default="", alias="p")
    call_id: str = Field(alias="c")
    at: float = Field(alias="t")
    expires_at: float = Field(alias="x")


class CallerContext(Model):
    """Everything held about one caller that routing may look at (once policy allows)."""

    profile: CallerProfile | None = None
    interests: list[Interest] = Field(default_factory=list)
    last_agent: LastAgent | None = None
    interest_routed_at: list[float] = Field(default_factory=list)
    """When the caller's latest calls were routed on interest data (for the policy's cap)."""


class RoutingMode(StrEnum):
    KNOWN_AGENT = "known_agent"
    INTEREST = "interest"
    ANY_AVAILABLE = "any_available"
    FALLBACK = "fallback"


class Skill(Stored):
    """Why an agent matched one product: their proficiency and their (smoothed) conversion rate."""

    proficiency: Proficiency = Field(alias="f")
    conversion: float = Field(alias="c")
    """The agent's estimated conversion for the product (the posterior mean of their record)."""
    calls: int | None = Field(default=None, ge=0, alias="n")
    """The calls of the product the estimate rests on (outcomes counted); None in records made before
    they were kept."""


class Candidate(Stored):
    """One agent worth ringing, and the facts that put them there."""

    agent_id: AgentId = Field(alias="a")
    mode: RoutingMode = Field(alias="m")
    pool: str = Field(default="", alias="p")
    score: float = Field(default=0.0, alias="s")
    skills: dict[ProductId, Skill] = Field(alias="k", default_factory=dict)
    """Interest matches: product → skill."""
    idle_since: float | None = Field(default=None, alias="i")
    """Any-available candidates: how long they have been free."""
    for_line: bool = Field(default=False, alias="d")
    """Any-available candidates: they know a product of the line the caller dialled (`DialledLine`)."""
    known_since: float | None = Field(default=None, alias="w")
    """The known agent: when the caller last spoke with them."""


class InterestFact(Stored):
    """A caller interest as it counted for one call: faded score, where it came from, when."""

    score: float = Field(alias="s")
    sources: list[str] = Field(alias="src", default_factory=list)
    at: float = Field(alias="t")
    evidence: str = Field(default="", alias="e")


class Grounds(StrEnum):
    """Why a purpose was allowed or not, as recorded with each decision."""

    NOT_PERMITTED = "not_permitted"
    OBJECTED = "objected"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONSENTED = "consented"
    NEEDS_CONSENT = "needs_consent"
    PROFILE_UNREADABLE = "profile_unreadable"
    CAPPED = "capped"
    """Allowed, but the caller was routed on it as often as the policy's cap allows lately."""


class PrivacyFacts(Stored):
    """Which rule set applied and what it allowed: enough to explain the decision years later."""

    jurisdiction: str | None = Field(default=None, alias="j")
    rule_set: str = Field(default="default", alias="r")
    label: str = Field(default="", alias="l")
    policy_version: str = Field(default="", alias="v")
    interests: bool = Field(default=False, alias="i")
    interests_grounds: Grounds = Field(default=Grounds.NEEDS_CONSENT, alias="ig")
    known_agent: bool = Field(default=False, alias="k")
    known_agent_grounds: Grounds = Field(default=Grounds.NEEDS_CONSENT, alias="kg")


class NoteCode(StrEnum):
    NO_CALLER_KEY = "no_caller_key"
    PROFILE_UNAVAILABLE = "profile_unavailable"
    LAST_AGENT_BUSY = "last_agent_busy"
    NO_AGENT_KNOWS_PRODUCTS = "no_agent_knows_products"
    NO_CURRENT_INTEREST = "no_current_interest"
    NO_VOICE_CONNECTOR = "no_voice_connector"
    NO_AGENT_AVAILABLE = "no_agent_available"
    ALL_TAKEN = "all_taken"
    AGENTS_UNREADABLE = "agents_unreadable"
    RESERVATION_FAILED = "reservation_failed"
    NO_CANDIDATE_ANSWERED = "no_candidate_answered"
    NO_CALLER_ID = "no_caller_id"
    REJECTED = "rejected"
    BUDGET_SPENT = "budget_spent"
    INTEREST_CAP = "interest_cap"
    """Interest data not used: the caller was routed on it as often as the policy allows in its period.
    `detail`: "<times>/<days>", e.g. "3/7"."""
    DIALLED_LINE = "dialled_line"
    """The caller dialled one of the deployment's product lines. `detail`: the line's name (never the
    number)."""
    ASKED_IN_CALL = "asked_in_call"
    """The caller was asked in the call whether their data may be used. `detail`: "yes", "no" or
    "no_answer"."""


LineName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,31}$")]


class DialledLine(Model):
    """One of the deployment's own numbers as a product line: callers who dial it are offered, among the
    agents free longest, those who know its products first (DESIGN.md §5, step 3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: LineName
    products: tuple[ProductId, ...] = Field(min_length=1, max_length=3)


class Offer(Model):
    """A call offered to a browser agent's page: what they see before accepting. Never the caller's
    number: the decision id, how they were chosen, the caller's top interest and the reasons."""

    call_id: str
    """The decision id (the SMA's TransactionId): what the page accepts or declines."""
    agent_id: AgentId
    mode: RoutingMode
    interest: ProductId | None = None
    reasons: list[str] = Field(default_factory=list)
    offered_at: float
    expires_at: float


class Note(Stored):
    """Something about the decision beyond the candidates, e.g. why the fallback; `detail` is a name or
    an error code, never caller data."""

    code: NoteCode = Field(alias="c")
    detail: str = Field(default="", alias="d")


class Decision(Model):
    """What routing chose and why: the ordered candidates and the facts a caller may read."""

    mode: RoutingMode
    candidates: list[Candidate]
    interests: dict[ProductId, InterestFact] = Field(default_factory=dict)
    privacy: PrivacyFacts = Field(default_factory=PrivacyFacts)
    notes: list[Note] = Field(default_factory=list)


class AttemptOutcome(StrEnum):
    RINGING = "ringing"
    NO_ANSWER = "no_answer"
    CONNECTED = "connected"


class Attempt(Stored):
    agent_id: AgentId = Field(alias="a")
    mode: RoutingMode = Field(alias="m")
    pool: str = Field(default="", alias="p")
    line: int = Field(default=1, ge=1, le=MAX_CONCURRENT_CALLS, alias="l")
    """Which of the agent's lines this call holds (see `line_key`)."""
    at: float = Field(alias="t")
    outcome: AttemptOutcome = Field(default=AttemptOutcome.RINGING, alias="o")
    error: str | None = Field(default=None, alias="e")

    @property
    def seat_key(self) -> str:
        """The key of the line this attempt holds, in its pool's availability item."""
        return line_key(self.agent_id, self.line)


class Outcome(StrEnum):
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"
    ABANDONED = "abandoned"
    FALLBACK = "fallback"
    HANDED_OVER = "handed_over"
    """An Amazon Connect contact: rapport named the agent (or routing criteria); Connect rings them."""


class DecisionRecord(Stored):
    """The stored account of one call's routing: what was decided, tried and why, until it expires.

    Kept compact (facts, not sentences) so that it costs one write unit; it is written once, when the
    call ends, and carries the last-agent link the call leaves where policy allows.
    """

    call_id: str = Field(alias="call")
    caller_key: str | None = Field(default=None, alias="ck")
    decided_at: float = Field(alias="t")
    mode: RoutingMode = Field(alias="m")
    outcome: Outcome = Field(default=Outcome.RINGING, alias="o")
    agent_id: AgentId | None = Field(default=None, alias="a")
    candidates: list[Candidate] = Field(alias="cand", default_factory=list)
    interests: dict[ProductId, InterestFact] = Field(alias="int", default_factory=dict)
    privacy: PrivacyFacts = Field(alias="priv", default_factory=PrivacyFacts)
    notes: list[Note] = Field(alias="notes", default_factory=list)
    attempts: list[Attempt] = Field(alias="tries", default_factory=list)
    connected_at: float | None = Field(default=None, alias="tc")
    ended_at: float | None = Field(default=None, alias="te")
    link: LastAgent | None = Field(default=None, alias="link")
    expires_at: float


Language = Literal["de", "en"]
Term = Annotated[str, Field(min_length=1, max_length=80)]


class Product(Model):
    """A product of the catalog, and the words that name it or show that someone wants it, by language.

    `keywords` is accepted for `synonyms` (the name in earlier scenario files)."""

    product_id: ProductId
    names: dict[Language, Term] = Field(default_factory=dict)
    synonyms: dict[Language, list[Term]] = Field(
        default_factory=dict, validation_alias=AliasChoices("synonyms", "keywords")
    )
    intent: dict[Language, list[Term]] = Field(default_factory=dict)
    """Words that show a wish for this product in particular ("Probefahrt" for a bike)."""
