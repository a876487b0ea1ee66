"""The privacy gate: which caller data routing may use, as a pure function of jurisdiction and profile.

The rules live in `policy/jurisdictions.json` (versioned with the code); unknown or unlisted countries get
its `default`, the strictest set.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rapport.models import CallerProfile

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
    """What routing may use for one call, and the sentences that explain it."""

    model_config = ConfigDict(frozen=True)

    jurisdiction: str | None
    rule_set: str
    policy_version: str
    use_interests: bool
    use_known_agent: bool
    retention_days: Retention
    reasons: list[str]

    @property
    def keep_last_agent(self) -> bool:
        """The last-agent link may be written on the same basis on which it may be read."""
        return self.use_known_agent


@cache
def load_rules(path: Path = RULES_FILE) -> Rules:
    """Parse and validate a rules file; cached per path for the life of the container."""
    return Rules.model_validate(json.loads(path.read_text(encoding="utf-8")))


def _allowed(basis: Basis, purpose: str, profile: CallerProfile | None) -> tuple[bool, str]:
    if basis is Basis.NEVER:
        return False, "not permitted here"
    if profile is not None and profile.objected:
        return False, "the caller objected"
    if basis is Basis.LEGITIMATE_INTEREST:
        return True, "legitimate interest, no objection on record"
    if profile is not None and profile.consented_to(purpose):
        return True, "the caller consented"
    return False, "needs consent, none on record"


def permissions(rules: Rules, region: str | None, profile: CallerProfile | None) -> Permissions:
    """Decide what profile data may be used for this caller. Pure; no I/O."""
    rule_name, rule_set = rules.for_jurisdiction(region)
    use_interests, interest_why = _allowed(rule_set.interest_routing, INTEREST_ROUTING, profile)
    use_known, known_why = _allowed(rule_set.known_agent, KNOWN_AGENT, profile)
    where = f"{rule_set.label} [policy {rules.version}]"
    return Permissions(
        jurisdiction=region,
        rule_set=rule_name,
        policy_version=rules.version,
        use_interests=use_interests,
        use_known_agent=use_known,
        retention_days=rule_set.retention_days,
        reasons=[
            f"{where}: interest data {'used' if use_interests else 'not used'} ({interest_why})",
            f"{where}: last-agent link {'used' if use_known else 'not used'} ({known_why})",
        ],
    )
