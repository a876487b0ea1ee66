"""The privacy gate: which caller data routing may use, by jurisdiction, consent and objection."""

from __future__ import annotations

import json
import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rapport.models import CallerProfile, Consent
from rapport.privacy import (
    INTEREST_ROUTING,
    KNOWN_AGENT,
    RULES_FILE,
    Basis,
    Permissions,
    Rules,
    interest_cap_reached,
    load_rules,
    permissions,
)
from rapport.settings import Settings

NOW = 1_790_000_000.0
RULES = load_rules()


# -- builders -----------------------------------------------------------------------------------------


def caller(*consented_to: str, objected: bool = False, refused: tuple[str, ...] = ()) -> CallerProfile:
    consents = {purpose: Consent(granted=True, at=NOW, source="web form") for purpose in consented_to}
    consents |= {purpose: Consent(granted=False, at=NOW, source="call") for purpose in refused}
    return CallerProfile(consents=consents, objected=objected, objected_at=NOW if objected else None)


def allowed(region: str | None, profile: CallerProfile | None = None) -> Permissions:
    return permissions(RULES, region, profile)


def rules_with(**jurisdictions: dict[str, object]) -> Rules:
    default = {
        "label": "strictest",
        "interest_routing": "consent",
        "known_agent": "consent",
        "interest_cap": {"times": 2, "days": 7},
        "retention_days": {"interest": 7, "last_agent": 14, "decision": 21},
    }
    filled = {
        region: {"interest_cap": {"times": 5, "days": 7}, **rule_set}
        for region, rule_set in jurisdictions.items()
    }
    prompts = {language: prompt.model_dump() for language, prompt in RULES.consent_prompt.items()}
    return Rules.model_validate(
        {"version": "test-1", "default": default, "jurisdictions": filled, "consent_prompt": prompts}
    )


# -- Germany ------------------------------------------------------------------------------------------


def test_germany_without_consent_uses_the_last_agent_but_not_interests() -> None:
    result = allowed("DE", caller())

    assert result.use_interests is False
    assert result.use_known_agent is True


def test_germany_with_no_profile_at_all_uses_the_last_agent_but_not_interests() -> None:
    result = allowed("DE", None)

    assert (result.use_interests, result.use_known_agent) == (False, True)


def test_germany_uses_interests_once_the_caller_consented() -> None:
    result = allowed("DE", caller(INTEREST_ROUTING))

    assert result.use_interests is True
    assert result.use_known_agent is True


def test_a_refused_consent_is_no_consent() -> None:
    assert allowed("DE", caller(refused=(INTEREST_ROUTING,))).use_interests is False


def test_consent_to_one_purpose_does_not_cover_another() -> None:
    assert allowed("DE", caller(KNOWN_AGENT)).use_interests is False


def test_an_objection_switches_both_uses_off_even_with_consent() -> None:
    result = allowed("DE", caller(INTEREST_ROUTING, KNOWN_AGENT, objected=True))

    assert (result.use_interests, result.use_known_agent) == (False, False)
    assert all("objected" in reason for reason in result.reasons)


def test_an_objection_also_stops_keeping_the_last_agent_link() -> None:
    assert allowed("DE", caller(objected=True)).keep_last_agent is False
    assert allowed("DE", caller()).keep_last_agent is True


def test_germany_keeps_interests_90_days_and_the_last_agent_link_180() -> None:
    retention = allowed("DE").retention_days

    assert (retention.interest, retention.last_agent) == (90, 180)


# -- unknown and unlisted countries -------------------------------------------------------------------


@pytest.mark.parametrize("region", [None, "BR", "ZZ"])
def test_unknown_or_unlisted_regions_get_the_default_rule_set(region: str | None) -> None:
    result = allowed(region, caller())

    assert result.rule_set == "default"
    assert result.retention_days == RULES.default.retention_days
    assert (result.use_interests, result.use_known_agent) == (False, False)


def test_the_default_rule_set_still_honours_consent() -> None:
    result = allowed(None, caller(INTEREST_ROUTING, KNOWN_AGENT))

    assert (result.use_interests, result.use_known_agent) == (True, True)


def test_the_us_allows_both_uses_on_legitimate_interest() -> None:
    result = allowed("US", None)

    assert (result.use_interests, result.use_known_agent) == (True, True)


def test_a_never_basis_is_not_overridden_by_consent() -> None:
    rules = rules_with(
        XX={
            "label": "nowhere",
            "interest_routing": "never",
            "known_agent": "never",
            "retention_days": {"interest": 1, "last_agent": 1, "decision": 1},
        }
    )

    result = permissions(rules, "XX", caller(INTEREST_ROUTING, KNOWN_AGENT))

    assert (result.use_interests, result.use_known_agent) == (False, False)


def test_retention_days_come_from_the_caller_s_rule_set() -> None:
    rules = rules_with(
        DE={
            "label": "Germany",
            "interest_routing": "consent",
            "known_agent": "legitimate_interest",
            "retention_days": {"interest": 11, "last_agent": 22, "decision": 33},
        }
    )

    german = permissions(rules, "DE", None).retention_days
    unknown = permissions(rules, None, None).retention_days

    assert (german.interest, german.last_agent, german.decision) == (11, 22, 33)
    assert (unknown.interest, unknown.last_agent, unknown.decision) == (7, 14, 21)


# -- explanations -------------------------------------------------------------------------------------


def test_reasons_name_the_rule_set_and_the_policy_version() -> None:
    result = allowed("DE", caller())

    assert result.rule_set == "DE"
    assert result.policy_version == RULES.version
    assert len(result.reasons) == 2
    for reason in result.reasons:
        assert RULES.jurisdictions["DE"].label in reason
        assert RULES.version in reason


def test_reasons_for_an_unknown_country_name_the_default_rule_set() -> None:
    result = allowed(None)

    assert all(RULES.default.label in reason and RULES.version in reason for reason in result.reasons)


def test_reasons_tell_what_is_used_and_why() -> None:
    interest_reason, known_reason = allowed("DE", caller()).reasons

    assert "interest data not used" in interest_reason
    assert "consent" in interest_reason
    assert "last-agent link used" in known_reason
    assert "legitimate interest" in known_reason


# -- the shipped rules file ---------------------------------------------------------------------------


def test_the_shipped_rules_file_validates() -> None:
    rules = Rules.model_validate(json.loads(RULES_FILE.read_text(encoding="utf-8")))

    assert rules.version
    assert rules.jurisdictions


def test_every_jurisdiction_key_is_an_iso_3166_alpha_2_code() -> None:
    for region in RULES.jurisdictions:
        assert re.fullmatch(r"[A-Z]{2}", region), region
        assert region in phonenumbers.SUPPORTED_REGIONS, region


def test_the_default_rule_set_is_at_least_as_strict_as_every_listed_one() -> None:
    strictness = {Basis.LEGITIMATE_INTEREST: 0, Basis.CONSENT: 1, Basis.NEVER: 2}
    default = RULES.default
    for region, rule_set in RULES.jurisdictions.items():
        assert strictness[default.interest_routing] >= strictness[rule_set.interest_routing], region
        assert strictness[default.known_agent] >= strictness[rule_set.known_agent], region
        assert default.retention_days.interest <= rule_set.retention_days.interest, region
        assert default.retention_days.last_agent <= rule_set.retention_days.last_agent, region
        assert default.retention_days.decision <= rule_set.retention_days.decision, region


# -- properties ---------------------------------------------------------------------------------------

regions = st.none() | st.sampled_from(sorted(RULES.jurisdictions)) | st.text(max_size=3)
profiles = st.builds(
    CallerProfile,
    jurisdiction=st.none() | st.sampled_from(["DE", "US", "BR"]),
    consents=st.dictionaries(
        st.sampled_from([INTEREST_ROUTING, KNOWN_AGENT, "marketing"]),
        st.builds(Consent, granted=st.booleans(), at=st.just(NOW), source=st.just("test")),
    ),
)


@given(region=regions, profile=profiles)
def test_an_objection_switches_profile_routing_off_everywhere(
    region: str | None, profile: CallerProfile
) -> None:
    objecting = profile.model_copy(update={"objected": True, "objected_at": NOW})

    result = allowed(region, objecting)

    assert result.use_interests is False
    assert result.use_known_agent is False
    assert result.keep_last_agent is False


@given(region=regions, profile=st.none() | profiles)
def test_interests_are_used_only_where_the_basis_is_met(
    region: str | None, profile: CallerProfile | None
) -> None:
    result = allowed(region, profile)
    basis = (
        RULES.jurisdictions.get(region, RULES.default).interest_routing
        if region
        else RULES.default.interest_routing
    )

    consented = profile is not None and profile.consented_to(INTEREST_ROUTING)
    expected = basis is Basis.LEGITIMATE_INTEREST or (basis is Basis.CONSENT and consented)
    assert result.use_interests is expected


# -- the interest cap, overrides, language, the development pepper --------------------------------------


def test_the_interest_cap_counts_only_calls_within_its_period() -> None:
    _, germany = RULES.for_jurisdiction("DE")
    cap = germany.interest_cap
    day = 86_400.0
    inside = [NOW - day * (cap.days - 1) + i for i in range(cap.times - 1)]
    assert interest_cap_reached(germany, inside, NOW) is None
    too_many = interest_cap_reached(germany, [*inside, NOW - 60], NOW)
    assert too_many is not None and too_many.detail == f"{cap.times}/{cap.days:g}"
    # Calls older than the period no longer count.
    assert interest_cap_reached(germany, [NOW - day * (cap.days + 1)] * 20, NOW) is None


def test_the_strictest_set_caps_no_higher_than_any_jurisdiction() -> None:
    for region, rule_set in RULES.jurisdictions.items():
        assert RULES.default.interest_cap.times <= rule_set.interest_cap.times, region


def test_overrides_are_laid_over_the_shipped_policy_with_a_version_of_their_own() -> None:
    overrides = {
        "version": "acme-1",
        "jurisdictions": {
            "DE": {"interest_cap": {"times": 3}},
            "CH": {"label": "Switzerland (revFADP)", "language": "de", "known_agent": "legitimate_interest"},
        },
    }
    rules = load_rules(RULES_FILE, json.dumps(overrides))
    assert rules.version == "acme-1"
    germany = rules.jurisdictions["DE"]
    assert (germany.interest_cap.times, germany.interest_cap.days) == (
        3,
        RULES.jurisdictions["DE"].interest_cap.days,
    )
    assert germany.retention_days == RULES.jurisdictions["DE"].retention_days
    # A jurisdiction the file does not list starts from the strictest set.
    swiss = rules.jurisdictions["CH"]
    assert swiss.interest_routing is Basis.CONSENT and swiss.known_agent is Basis.LEGITIMATE_INTEREST
    assert swiss.retention_days == RULES.default.retention_days
    assert rules.language("CH") == "de"
    assert permissions(rules, "CH", None).facts.policy_version == "acme-1"


@pytest.mark.parametrize(
    "overrides",
    [
        '{"jurisdictions": {"DE": {"interest_cap": {"times": 3}}}}',  # no version of its own
        '{"version": "x", "jurisdictions": {"DE": {"interest_routing": "sometimes"}}}',
        '{"version": "x", "default": {"interest_cap": {"times": 0, "days": 7}}}',
        "not json",
    ],
)
def test_an_invalid_override_stops_the_function_from_starting(overrides: str) -> None:
    with pytest.raises(ValueError, match=r"version of their own|validation error|Expecting value"):
        load_rules(RULES_FILE, overrides)


def test_explanations_and_the_question_use_the_caller_s_language() -> None:
    assert RULES.language("DE") == "de" and RULES.language("AT") == "de"
    assert RULES.language("CH") == "de"  # no rule set of its own, but German-speaking
    assert RULES.language("US") == "en" and RULES.language(None) == "en"
    assert "1" in RULES.prompt("de").question and RULES.prompt("de").language_code == "de-DE"


def test_in_aws_a_function_refuses_to_start_without_the_caller_key_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", "rapport")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.13")
    monkeypatch.delenv("RAPPORT_CALLER_KEY_SECRET_ARN", raising=False)
    with pytest.raises(ValueError, match="development pepper"):
        Settings()
    monkeypatch.setenv(
        "RAPPORT_CALLER_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"
    )
    assert Settings().caller_key_secret_arn
    monkeypatch.delenv("AWS_EXECUTION_ENV")
    monkeypatch.delenv("RAPPORT_CALLER_KEY_SECRET_ARN")
    assert Settings().caller_key_pepper  # locally, the development pepper is fine
