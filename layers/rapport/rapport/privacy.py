"""The privacy gate: which caller data routing may use, as a pure function of jurisdiction and profile.

The rules live in `policy/jurisdictions.json` (versioned with the code); unknown or unlisted countries get
its `default`, the strictest set. A deployment changes them without touching the code: a whole file of its
own (`RAPPORT_POLICY_FILE`), or overrides merged over the shipped one (`RAPPORT_POLICY_OVERRIDES`, JSON, from
the template's `PrivacyPolicyOverrides` parameter); either must carry its own `version`, which every decision
record names. A profile that could not be read is not an empty profile: the caller may have objected, so
nothing profile-based is used or kept for that call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rapport.explain import language_for, privacy_reasons
from rapport.models import CallerProfile, Grounds, Language, Note, NoteCode, PrivacyFacts

RULES_FILE = Path(__file__).parent / "policy" / "jurisdictions.json"

INTEREST_ROUTING = "interest_routing"
KNOWN_AGENT = "known_agent"


class Basis(StrEnum):
    NEVER = "never"
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"


class Retention(BaseModel):
    model_config = ConfigDict(frozen=True)

    interest: int = Field(ge=1, le=3650)
    last_agent: int = Field(ge=1, le=3650)
    decision: int = Field(ge=1, le=3650)
    consent_proof: int = Field(default=1095, ge=1, le=3650)
    """How long a caller's profile (their consents and the history behind them) is kept as proof after it
    last changed. An objection is kept until the caller is erased."""


MAX_CAP_TIMES = 10
"""The largest cap a rule set may set: one context read looks back over this many decision records."""


class InterestCap(BaseModel):
    """At most `times` calls routed on interest data in `days` days."""

    model_config = ConfigDict(frozen=True)

    times: int = Field(ge=1, le=MAX_CAP_TIMES)
    days: float = Field(gt=0, le=365)


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    interest_routing: Basis
    known_agent: Basis
    interest_cap: InterestCap
    retention_days: Retention
    language: Language = "en"


class RateLimit(BaseModel):
    """New calls one caller key may make: at most `calls` in each window of `minutes` (fixed windows, so
    up to twice that across a window's edge). Over it, the call hears the closing message; no agent rings."""

    model_config = ConfigDict(frozen=True)

    calls: int = Field(default=6, ge=1, le=1000)
    minutes: int = Field(default=10, ge=1, le=1440)

    @property
    def window_seconds(self) -> int:
        return self.minutes * 60


class Prompt(BaseModel):
    """The in-call question, in one language, and the answers spoken after it (Amazon Polly voice)."""

    model_config = ConfigDict(frozen=True)

    voice: str = Field(min_length=1, max_length=40)
    language_code: str = Field(pattern=r"^[a-z]{2,3}-[A-Z]{2}$")
    question: str = Field(min_length=1, max_length=1000)
    yes: str = Field(min_length=1, max_length=1000)
    no: str = Field(min_length=1, max_length=1000)


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str = Field(min_length=1, max_length=40)
    default: RuleSet
    jurisdictions: dict[str, RuleSet]
    consent_prompt: dict[Language, Prompt]
    rate_limit: RateLimit | None = RateLimit()
    """New calls per caller key (`null`: no limit). The same for every jurisdiction: it protects agents."""

    def for_jurisdiction(self, region: str | None) -> tuple[str, RuleSet]:
        if region is not None and region in self.jurisdictions:
            return region, self.jurisdictions[region]
        return "default", self.default

    def language(self, region: str | None) -> Language:
        """The caller's language: their jurisdiction's, or the one their country speaks when it has no
        rule set of its own."""
        if region is not None and region in self.jurisdictions:
            return self.jurisdictions[region].language
        return language_for(region)

    def prompt(self, language: Language) -> Prompt:
        return self.consent_prompt.get(language) or self.consent_prompt["en"]


class Permissions(BaseModel):
    """What routing may use for one call, and the facts that explain it."""

    model_config = ConfigDict(frozen=True)

    facts: PrivacyFacts
    retention_days: Retention
    rule_set_rules: RuleSet
    """The whole rule set that applied (cap, language, retention)."""

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

    @property
    def language(self) -> Language:
        return self.rule_set_rules.language

    def without_interests(self, grounds: Grounds) -> Permissions:
        """These permissions with interest data switched off, for `grounds`."""
        facts = self.facts.model_copy(update={"interests": False, "interests_grounds": grounds})
        return self.model_copy(update={"facts": facts})

    def record_days(self, used_interests: bool) -> int:
        """How long a decision record is kept: no longer than the interests it copies, when it does."""
        days = self.retention_days.decision
        return min(days, self.retention_days.interest) if used_interests else days


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it, mapping by mapping."""
    merged = dict(base)
    for name, value in override.items():
        below = merged.get(name)
        merged[name] = (
            _merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
        )
    return merged


@cache
def load_rules(path: Path = RULES_FILE, overrides: str = "") -> Rules:
    """Parse and validate a rules file, with `overrides` (JSON) merged over it; cached for the life of
    the container. Raises ValueError on an invalid file or override: a function must not start with
    rules it cannot read."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if overrides.strip():
        laid = json.loads(overrides)
        if not isinstance(laid, dict) or not isinstance(laid.get("version"), str):
            raise ValueError("policy overrides must be a JSON object with a version of their own")
        default = _merged(data["default"], laid.get("default", {}))
        jurisdictions = dict(data["jurisdictions"])
        for region, rule_set in dict(laid.get("jurisdictions", {})).items():
            # A jurisdiction not in the file starts from the strictest set and changes what it names.
            jurisdictions[region] = _merged(jurisdictions.get(region, default), rule_set)
        rest = {name: value for name, value in laid.items() if name not in ("default", "jurisdictions")}
        data = {**_merged(data, rest), "default": default, "jurisdictions": jurisdictions}
    return Rules.model_validate(data)


def deployed_rules() -> Rules:
    """The rules this deployment runs on: `RAPPORT_POLICY_FILE` (a path; relative to the function's own
    code) or the shipped file, with `RAPPORT_POLICY_OVERRIDES` merged over it."""
    named = os.environ.get("RAPPORT_POLICY_FILE", "").strip()
    path = Path(named) if named else RULES_FILE
    if named and not path.is_absolute():
        path = Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / path
    return load_rules(path, os.environ.get("RAPPORT_POLICY_OVERRIDES", ""))


def interest_cap_reached(rule_set: RuleSet, routed_at: Sequence[float], now: float) -> Note | None:
    """A note saying why interest data is not used, when the caller was routed on it `times` times
    within the cap's period already; None otherwise."""
    cap = rule_set.interest_cap
    since = now - cap.days * 86400
    recent = sum(1 for at in routed_at if since < at <= now)
    if recent < cap.times:
        return None
    days = f"{cap.days:g}"
    return Note(code=NoteCode.INTEREST_CAP, detail=f"{recent}/{days}")


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
        rule_set_rules=rule_set,
    )
