"""Runtime settings, validated once from the environment the template sets."""

from __future__ import annotations

import os

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rapport.models import AgentEndpoint, DialledLine, EndpointKind
from rapport.numbers import calling_code, is_e164

# Used only where no secret is configured (local development and tests); never in AWS.
DEVELOPMENT_PEPPER = "rapport-local-development-pepper"
DEVELOPMENT_PAGE_TOKEN_KEY = "rapport-local-development-page-token-key"  # noqa: S105 - the same


class Settings(BaseSettings):
    """Everything a function needs to know about its deployment. Built by the caller, never at import."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore", frozen=True)

    table_name: str = Field(validation_alias="TABLE_NAME", min_length=3)
    caller_key_secret_arn: str = ""
    caller_key_pepper: str = DEVELOPMENT_PEPPER
    voice_connector_arn: str = ""
    fallback_route: str = ""
    fallback_message: str = (
        "Sorry, all of our agents are busy right now. Please call again a little later. Goodbye."
    )
    caller_id_number: str = ""
    phone_number: str = ""
    """The number the stack's SIP rule routes (PhoneNumber), if the stack has one."""
    pstn_country_codes: str = Field(default="", pattern=r"^$|^\+?[1-9][0-9]{0,2}( *, *\+?[1-9][0-9]{0,2})*$")
    """The country calling codes agents' PSTN numbers may have (`49,43,1`); empty: those of the stack's
    own numbers (PhoneNumber, CallerIdNumber, FallbackRoute, dialled lines). A PSTN endpoint elsewhere is
    never rung, so a changed roster cannot send calls to premium-rate or far-away numbers."""
    hold_audio_bucket: str = Field(default="", pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """The stack's bucket of hold audio, played to a caller while a browser agent is offered the call;
    empty: browser agents are not offered calls."""
    hold_audio_key: str = "hold.wav"
    hold_audio_seconds: int = Field(default=10, ge=1, le=600)
    """How long the hold clip plays once: it repeats until the ring timeout has passed."""
    sip_media_application_id: str = ""
    """The SIP media application whose calls browser agents accept (the agents API asks it to join them)."""
    page_socket_url: str = ""
    """The agent page's WebSocket (`wss://…`), named in the page links the agents API hands out."""
    page_socket_callback_url: str = ""
    """Where messages to open pages are posted (the WebSocket API's `@connections` endpoint)."""
    page_token_hours: float = Field(default=10.0, gt=0, le=24)
    """How long a page link lets a page connect: about a shift. An open page stays connected after."""
    page_grace_seconds: int = Field(default=60, ge=0, le=900)
    """After an agent's last page closes, how long before they are set offline (a reload keeps them)."""
    page_grace_queue_url: str = ""
    page_token_secret_arn: str = ""
    """The secret page tokens are signed with (a secret of its own: not the caller-key pepper)."""
    page_token_key: str = DEVELOPMENT_PAGE_TOKEN_KEY
    time_budget_ms: int = Field(default=1500, ge=100, le=4000)
    """For events after which a caller waits for a route."""
    bookkeeping_budget_ms: int = Field(default=3000, ge=100, le=4000)
    """For the events nobody waits on (bridge answered, hang-up), whose writes free the agent and keep
    the record: lost if they are cut short."""
    ring_timeout_seconds: int = Field(default=20, ge=1, le=120)
    max_candidates: int = Field(default=5, ge=1, le=8)
    away_after_no_answers: int = Field(default=3, ge=1, le=50)
    """An agent who does not answer this many calls in a row is set away (and the reason recorded)."""
    ask_for_consent: bool = False
    """Ask callers with no recorded choice, where consent is needed, once, in the call (README, Privacy)."""
    interest_half_life_days: float = Field(default=14.0, gt=0, le=3650)
    """Interest scores halve in this many days (applied when they are read and when signals add up)."""
    dialled_lines: dict[str, DialledLine] = Field(default_factory=dict, max_length=100)
    """The deployment's own numbers that are product lines, as JSON: `{"+18005550100": {"name":
    "headphones", "products": ["x200-headphones"]}}` (README, "Dialled lines")."""

    # Amazon Connect (ConnectRouterFunction; README, "Amazon Connect").
    connect_fallback_queue_id: str = Field(
        default="", pattern=r"^$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    """The queue a contact goes to when rapport names no agent (its id, a UUID); empty: the flow's own."""
    connect_product_attribute: str = Field(default="rapport-product", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """The Connect predefined attribute whose values are rapport's product ids."""
    connect_min_proficiency: int = Field(default=3, ge=1, le=5)
    """The proficiency an interest step asks of agents in that product (Connect's 1-5 scale)."""
    connect_known_agent_seconds: int = Field(default=20, ge=1, le=600)
    """How long a contact waits for the caller's last agent before the next routing step."""
    connect_interest_seconds: int = Field(default=30, ge=1, le=600)
    """How long a contact waits for each interest step's agents before the next step."""

    @field_validator("dialled_lines")
    @classmethod
    def _lines_by_e164(cls, value: dict[str, DialledLine]) -> dict[str, DialledLine]:
        wrong = [number for number in value if not is_e164(number)]
        if wrong:
            raise ValueError(f"{len(wrong)} number(s) not in E.164 form, such as +18005550100")
        return value

    def line_for(self, *dialled: str | None) -> DialledLine | None:
        """The product line of the first of these numbers that is one (None when none is)."""
        return next((line for number in dialled if number and (line := self.dialled_lines.get(number))), None)

    @property
    def allowed_calling_codes(self) -> frozenset[int]:
        """The calling codes agents' PSTN numbers may have (empty: no PSTN agent may be rung)."""
        if self.pstn_country_codes:
            return frozenset(int(code.strip().lstrip("+")) for code in self.pstn_country_codes.split(","))
        own = [self.phone_number, self.caller_id_number, self.fallback_route, *self.dialled_lines]
        return frozenset(code for number in own if (code := calling_code(number)) is not None)

    def allows(self, endpoint: AgentEndpoint) -> bool:
        """Whether rapport may ring this endpoint: a PSTN number only in an allowed country (the other
        kinds' addresses are checked by their model: a SIP user part, a page name, a Connect user id)."""
        if endpoint.kind is not EndpointKind.PSTN:
            return True
        return calling_code(endpoint.address) in self.allowed_calling_codes

    @field_validator("fallback_route", "caller_id_number", "phone_number")
    @classmethod
    def _e164_or_empty(cls, value: str) -> str:
        value = value.strip()
        if value and not is_e164(value):
            raise ValueError("must be empty or an E.164 number such as +18005550100")
        return value

    @field_validator("fallback_message")
    @classmethod
    def _speakable(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 1000:
            raise ValueError("must be 1 to 1,000 characters (the Speak action's limit)")
        return value

    @model_validator(mode="after")
    def _no_development_pepper_in_aws(self) -> Settings:
        # In Lambda a missing secret is a broken deployment: caller keys made with the public development
        # pepper could be recomputed by anyone from a list of numbers.
        if os.environ.get("AWS_EXECUTION_ENV") and not self.caller_key_secret_arn:
            raise ValueError(
                "RAPPORT_CALLER_KEY_SECRET_ARN is not set: refusing to start in AWS with the development"
                " pepper (the template sets it to the stack's CallerKeySecret)"
            )
        return self
