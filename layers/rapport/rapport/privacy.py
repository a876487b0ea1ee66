"""The privacy gate: which caller data routing may use, as a pure function of jurisdiction and profile.

The rules live in `policy/jurisdictions.json` (versioned with the code); unknown or unlisted countries get
its `default`, the strictest set. A profile that could not be read is not an empty profile: the caller may
have objected, so nothing profile-based is used or kept for that call.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rapport.explain import privacy_reasons
from rapport.models import CallerProfile, Grounds, PrivacyFacts

RULES_FILE = Path(__file__).parent / "policy" / "jurisdictions.json"

INTEREST_ROUTING = "interest_routing"
KNOWN_AGENT = "known_agent"


class Basis(StrEnum):
    NEVER = "never"
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"


class Retention(BaseModel):
    model_config = ConfigDict(frozen=True)

    interest: int = Field(ge=1)
    last_agent: int = Field(ge=1)
    decision: int = Field(ge=1)


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    interest_routing: Basis
    known_agent: Basis
    retention_days: Retention


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    default: RuleSet
    jurisdictions: dict[str, RuleSet]

    def for_jurisdiction(self, region: str | None) -> tuple[str, RuleSet]:
        if region is not None and region in self.jurisdictions:
            return region, self.jurisdictions[region]
        return "default", self.default


class Permissions(BaseModel):
    """What routing may use for one call, and the facts that explain it."""

    model_config = ConfigDict(frozen=True)

    facts: PrivacyFacts
    retention_days: Retention

    @property
    def use_interests(self) -> bool:
        return self.facts.interests

    @property
    def use_known_agent(self) -> bool:
        return self.facts.known_agent

    @property
    def keep_last_agent(self) -> bool:
        """The last-agent link may be written on the same basis on which it may be read."""
        return self.facts.known_agent

    @property
    def jurisdiction(self) -> str | None:
        return self.facts.jurisdiction

    @property
    def rule_set(self) -> str:
        return self.facts.rule_set

    @property
    def policy_version(self) -> str:
        return self.facts.policy_version

    @property
    def reasons(self) -> list[str]:
        return privacy_reasons(self.facts)


@cache
def load_rules(path: Path = RULES_FILE) -> Rules:
    """Parse and validate a rules file; cached per path for the life of the container."""
    return Rules.model_validate(json.loads(path.read_text(encoding="utf-8")))


def _allowed(basis: Basis, purpose: str, profile: CallerProfile | None) -> tuple[bool, Grounds]:
    if basis is Basis.NEVER:
        return False, Grounds.NOT_PERMITTED
    if profile is not None and profile.objected:
        return False, Grounds.OBJECTED
    if basis is Basis.LEGITIMATE_INTEREST:
        return True, Grounds.LEGITIMATE_INTEREST
    if profile is not None and profile.consented_to(purpose):
        return True, Grounds.CONSENTED
    return False, Grounds.NEEDS_CONSENT


def permissions(
    rules: Rules, region: str | None, profile: CallerProfile | None, *, profile_readable: bool = True
) -> Permissions:
    """Decide what profile data may be used for this caller. Pure; no I/O.

    With `profile_readable=False` (the profile could not be read) nothing is allowed, whatever the
    jurisdiction: an objection or a withdrawn consent may be on record.
    """
    rule_name, rule_set = rules.for_jurisdiction(region)
    if profile_readable:
        use_interests, interest_grounds = _allowed(rule_set.interest_routing, INTEREST_ROUTING, profile)
        use_known, known_grounds = _allowed(rule_set.known_agent, KNOWN_AGENT, profile)
    else:
        use_interests, interest_grounds = False, Grounds.PROFILE_UNREADABLE
        use_known, known_grounds = False, Grounds.PROFILE_UNREADABLE
    return Permissions(
        facts=PrivacyFacts(
            jurisdiction=region,
            rule_set=rule_name,
            label=rule_set.label,
            policy_version=rules.version,
            interests=use_interests,
            interests_grounds=interest_grounds,
            known_agent=use_known,
            known_agent_grounds=known_grounds,
        ),
        retention_days=rule_set.retention_days,
    )
