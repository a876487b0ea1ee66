"""The routing policy: who rings first, who is next, and what the caller is told about why.

Every test builds agents, a caller context and permissions directly and routes at a fixed `NOW`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rapport.explain import candidate_reasons, decision_reasons
from rapport.models import (
    Agent,
    AgentEndpoint,
    CallerContext,
    CallerProfile,
    Consent,
    Decision,
    EndpointKind,
    Interest,
    LastAgent,
    Presence,
    ProductStats,
    RoutingMode,
)
from rapport.privacy import Permissions, load_rules, permissions
from rapport.routing import RoutingPolicy, choose_agent, current_interests

NOW = 1_790_000_000.0
DAY = 86_400.0
CALL_ID = "6428e0d8-362e-46f6-8651-ecd25f4f6789"
RULES = load_rules()


# -- builders -----------------------------------------------------------------------------------------


def agent(
    agent_id: str,
    *,
    idle_minutes: float = 10,
    knows: dict[str, int] | None = None,
    record: dict[str, tuple[int, int]] | None = None,
    **fields: Any,
) -> Agent:
    """An online, free agent; `knows` maps product → proficiency, `record` product → (calls, sales)."""
    return Agent.model_validate(
        {
            "agent_id": agent_id,
            "endpoint": AgentEndpoint(kind=EndpointKind.PSTN, address="+493055500001"),
            "idle_since": NOW - idle_minutes * 60,
            "proficiency": knows or {},
            "stats": {p: ProductStats(calls=c, sales=s) for p, (c, s) in (record or {}).items()},
            **fields,
        }
    )


def interest(
    product: str, score: float, *, age_days: float = 0.0, expires_in_days: float | None = None
) -> Interest:
    return Interest(
        product=product,
        score=score,
        updated_at=NOW - age_days * DAY,
        sources=["social signal"],
        expires_at=None if expires_in_days is None else NOW + expires_in_days * DAY,
    )


def last_agent(agent_id: str, *, expires_in_days: float = 30) -> LastAgent:
    return LastAgent(
        agent_id=agent_id, call_id="earlier-call", at=NOW - 3 * DAY, expires_at=NOW + expires_in_days * DAY
    )


def everything_allowed() -> Permissions:
    """US rules, no objection: interests and the last-agent link both on legitimate interest."""
    return permissions(RULES, "US", None)


def german_caller(*, consented: bool = False, objected: bool = False) -> Permissions:
    consents = (
        {"interest_routing": Consent(granted=True, at=NOW - DAY, source="web form")} if consented else {}
    )
    return permissions(RULES, "DE", CallerProfile(jurisdiction="DE", consents=consents, objected=objected))


def route(
    agents: Sequence[Agent],
    *,
    interests: Sequence[Interest] = (),
    last: LastAgent | None = None,
    live: Sequence[Interest] = (),
    allowed: Permissions | None = None,
    call_id: str = CALL_ID,
    policy: RoutingPolicy | None = None,
) -> Decision:
    return choose_agent(
        agents=agents,
        context=CallerContext(interests=list(interests), last_agent=last),
        permissions=allowed or everything_allowed(),
        live_interests=list(live),
        call_tag=call_id,
        now=NOW,
        policy=policy,
    )


def order(decision: Decision) -> list[str]:
    return [candidate.agent_id for candidate in decision.candidates]


def modes(decision: Decision) -> list[RoutingMode]:
    return [candidate.mode for candidate in decision.candidates]


def mentions(decision: Decision, *words: str) -> bool:
    """True when one of the decision's reasons contains every word."""
    return any(all(word in reason for word in words) for reason in decision_reasons(decision))


def expected_score(faded: float, proficiency: int, calls: int, sales: int) -> float:
    """The documented ranking: faded interest * proficiency/5 * the upper bound of the conversion, the
    estimate (pulled towards the prior) plus one standard deviation of the Beta belief behind it."""
    policy = RoutingPolicy()
    weight = policy.conversion_prior_weight
    rate = (sales + policy.conversion_prior * weight) / (calls + weight)
    bound = rate + policy.exploration * math.sqrt(rate * (1 - rate) / (calls + weight + 1))
    return faded * proficiency / 5 * bound


# -- known agent ----------------------------------------------------------------------------------------


def test_the_agent_from_the_last_call_rings_first_when_free_and_permitted() -> None:
    roster = [agent("hamburg-02", idle_minutes=90, knows={"x200": 5}), agent("berlin-07", idle_minutes=1)]

    decision = route(roster, interests=[interest("x200", 0.9)], last=last_agent("berlin-07"))

    assert order(decision)[0] == "berlin-07"
    assert decision.mode is RoutingMode.KNOWN_AGENT
    assert candidate_reasons(decision.candidates[0], decision.interests, NOW)


def test_an_expired_last_agent_link_is_not_used() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1)]

    decision = route(roster, last=last_agent("berlin-07", expires_in_days=-1))

    assert RoutingMode.KNOWN_AGENT not in modes(decision)
    assert order(decision) == ["hamburg-02", "berlin-07"]


@pytest.mark.parametrize(
    "unavailable",
    [
        {"busy_until": NOW + 60, "reserved_by": "another-call"},
        {"presence": Presence.OFFLINE},
    ],
    ids=["busy", "offline"],
)
def test_a_busy_or_offline_last_agent_is_skipped_with_a_reason(unavailable: dict[str, Any]) -> None:
    roster = [agent("hamburg-02"), agent("berlin-07", **unavailable)]

    decision = route(roster, last=last_agent("berlin-07"))

    assert "berlin-07" not in order(decision)
    assert order(decision) == ["hamburg-02"]
    assert mentions(decision, "`berlin-07`", "not available")


def test_an_objection_switches_the_known_agent_off_and_the_reasons_say_so() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1)]

    decision = route(roster, last=last_agent("berlin-07"), allowed=german_caller(objected=True))

    assert RoutingMode.KNOWN_AGENT not in modes(decision)
    assert order(decision)[0] == "hamburg-02"
    assert mentions(decision, "last-agent link not used", "objected")


def test_the_known_agent_reserved_by_this_very_call_is_found_again_on_a_repeated_event() -> None:
    roster = [
        agent("hamburg-02", idle_minutes=90),
        agent("berlin-07", busy_until=NOW + 30, reserved_by=CALL_ID),
    ]

    decision = route(roster, last=last_agent("berlin-07"))

    assert order(decision)[0] == "berlin-07"
    assert decision.mode is RoutingMode.KNOWN_AGENT


# -- interest match -----------------------------------------------------------------------------------


def test_interest_score_is_faded_interest_times_proficiency_share_times_conversion() -> None:
    roster = [agent("berlin-07", knows={"x200": 4}, record={"x200": (10, 4)})]

    decision = route(roster, interests=[interest("x200", 0.8, age_days=14)])  # one half-life old

    (candidate,) = decision.candidates
    assert candidate.mode is RoutingMode.INTEREST
    assert candidate.score == pytest.approx(expected_score(0.4, 4, 10, 4), abs=1e-4)


def test_interest_candidates_are_ranked_by_the_product_of_the_three_factors() -> None:
    roster = [
        agent("expert-poor-seller", knows={"x200": 5}, record={"x200": (40, 1)}),
        agent("novice-good-seller", knows={"x200": 2}, record={"x200": (40, 20)}),
        agent("solid", knows={"x200": 4}, record={"x200": (40, 12)}),
    ]
    expected = {
        "expert-poor-seller": expected_score(0.9, 5, 40, 1),
        "novice-good-seller": expected_score(0.9, 2, 40, 20),
        "solid": expected_score(0.9, 4, 40, 12),
    }

    decision = route(roster, interests=[interest("x200", 0.9)])

    assert order(decision) == sorted(expected, key=lambda agent_id: -expected[agent_id])
    assert modes(decision) == [RoutingMode.INTEREST] * 3


def test_equal_interest_scores_go_to_the_agent_idle_longest() -> None:
    roster = [
        agent("short-idle", idle_minutes=5, knows={"x200": 5}),
        agent("long-idle", idle_minutes=50, knows={"x200": 5}),
        agent("medium-idle", idle_minutes=20, knows={"x200": 5}),
    ]

    decision = route(roster, interests=[interest("x200", 0.9)])

    assert order(decision) == ["long-idle", "medium-idle", "short-idle"]


def test_a_new_agent_without_history_gets_the_prior_conversion_rate() -> None:
    roster = [agent("new-hire", knows={"x200": 5})]

    decision = route(roster, interests=[interest("x200", 1.0)])

    assert decision.candidates[0].score == pytest.approx(expected_score(1.0, 5, 0, 0), abs=1e-4)
    # The record shows the estimate itself, the prior, and that it rests on no calls yet.
    (skill,) = decision.candidates[0].skills.values()
    assert (skill.conversion, skill.calls) == (RoutingPolicy().conversion_prior, 0)


def test_a_new_agent_outranks_an_equally_skilled_agent_with_a_poor_record() -> None:
    roster = [
        agent("veteran", idle_minutes=60, knows={"x200": 5}, record={"x200": (50, 1)}),
        agent("new-hire", idle_minutes=1, knows={"x200": 5}),
    ]

    decision = route(roster, interests=[interest("x200", 0.9)])

    assert order(decision) == ["new-hire", "veteran"]


def test_a_new_agent_is_still_offered_behind_a_strong_seller() -> None:
    roster = [
        agent("star", idle_minutes=1, knows={"x200": 5}, record={"x200": (50, 30)}),
        agent("new-hire", idle_minutes=1, knows={"x200": 5}),
    ]

    decision = route(roster, interests=[interest("x200", 0.9)])

    assert order(decision) == ["star", "new-hire"]
    assert modes(decision) == [RoutingMode.INTEREST, RoutingMode.INTEREST]


def test_an_agent_who_does_not_know_the_product_is_not_an_interest_match() -> None:
    roster = [
        agent("tv-expert", idle_minutes=90, knows={"tv-55": 5}),
        agent("x200-expert", knows={"x200": 1}),
    ]

    decision = route(roster, interests=[interest("x200", 0.9)])

    assert order(decision) == ["x200-expert", "tv-expert"]
    assert modes(decision) == [RoutingMode.INTEREST, RoutingMode.ANY_AVAILABLE]


def test_when_no_free_agent_knows_the_product_the_reasons_say_so() -> None:
    decision = route([agent("tv-expert", knows={"tv-55": 5})], interests=[interest("x200", 0.9)])

    assert modes(decision) == [RoutingMode.ANY_AVAILABLE]
    assert mentions(decision, "no available agent knows")


def test_interests_without_consent_are_not_used_and_the_reasons_say_so() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1, knows={"x200": 5})]

    decision = route(roster, interests=[interest("x200", 1.0)], allowed=german_caller(consented=False))

    assert RoutingMode.INTEREST not in modes(decision)
    assert order(decision) == ["hamburg-02", "berlin-07"]
    assert mentions(decision, "interest data not used", "consent")


def test_interests_are_used_once_the_german_caller_consented() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1, knows={"x200": 5})]

    decision = route(roster, interests=[interest("x200", 1.0)], allowed=german_caller(consented=True))

    assert order(decision)[0] == "berlin-07"
    assert decision.mode is RoutingMode.INTEREST


def test_a_live_interest_from_the_call_counts_like_a_fresh_signal() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1, knows={"x200": 5})]

    decision = route(roster, live=[interest("x200", 1.0)])

    assert order(decision)[0] == "berlin-07"
    assert decision.mode is RoutingMode.INTEREST


def test_a_live_interest_is_ignored_when_interests_are_not_permitted() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1, knows={"x200": 5})]

    decision = route(roster, live=[interest("x200", 1.0)], allowed=german_caller(objected=True))

    assert RoutingMode.INTEREST not in modes(decision)


def test_an_expired_interest_is_ignored() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1, knows={"x200": 5})]

    decision = route(roster, interests=[interest("x200", 1.0, expires_in_days=-0.001)])

    assert RoutingMode.INTEREST not in modes(decision)
    assert mentions(decision, "no current interest")


def test_an_interest_that_has_faded_away_is_ignored() -> None:
    roster = [agent("hamburg-02", idle_minutes=90), agent("berlin-07", idle_minutes=1, knows={"x200": 5})]

    decision = route(roster, interests=[interest("x200", 1.0, age_days=120)])  # 2^-8.6 of its score left

    assert RoutingMode.INTEREST not in modes(decision)


# -- any available, fallback, limits -----------------------------------------------------------------


def test_without_profile_data_the_agent_idle_longest_rings_first() -> None:
    roster = [agent("b", idle_minutes=5), agent("c", idle_minutes=45), agent("a", idle_minutes=15)]

    decision = route(roster)

    assert order(decision) == ["c", "a", "b"]
    assert decision.mode is RoutingMode.ANY_AVAILABLE


def test_offline_agents_are_never_candidates() -> None:
    roster = [
        agent("berlin-07", presence=Presence.OFFLINE, knows={"x200": 5}),
        agent("hamburg-02", idle_minutes=1),
    ]

    decision = route(roster, interests=[interest("x200", 1.0)], last=last_agent("berlin-07"))

    assert order(decision) == ["hamburg-02"]


def test_an_agent_held_by_another_call_is_not_a_candidate() -> None:
    roster = [agent("berlin-07", busy_until=NOW + 30, reserved_by="another-call"), agent("hamburg-02")]

    assert order(route(roster)) == ["hamburg-02"]


def test_an_agent_held_by_this_call_is_still_a_candidate() -> None:
    roster = [
        agent("berlin-07", idle_minutes=90, busy_until=NOW + 30, reserved_by=CALL_ID),
        agent("hamburg-02"),
    ]

    assert order(route(roster)) == ["berlin-07", "hamburg-02"]


def test_no_free_agent_means_fallback_with_a_reason() -> None:
    roster = [agent("berlin-07", presence=Presence.OFFLINE), agent("hamburg-02", busy_until=NOW + 60)]

    decision = route(roster, interests=[interest("x200", 1.0)])

    assert decision.mode is RoutingMode.FALLBACK
    assert decision.candidates == []
    assert mentions(decision, "no agent is available")


def test_an_empty_roster_means_fallback() -> None:
    decision = route([])

    assert decision.mode is RoutingMode.FALLBACK
    assert decision_reasons(decision)


def test_no_more_candidates_than_the_policy_allows() -> None:
    roster = [agent(f"agent-{index}", idle_minutes=index) for index in range(8)]

    assert len(route(roster).candidates) == RoutingPolicy().max_candidates
    assert order(route(roster, policy=RoutingPolicy(max_candidates=2))) == ["agent-7", "agent-6"]


def test_an_agent_matched_in_several_steps_is_listed_once_in_its_best_place() -> None:
    roster = [
        agent("berlin-07", idle_minutes=90, knows={"x200": 5}),
        agent("hamburg-02", idle_minutes=30, knows={"x200": 3}),
        agent("munich-01", idle_minutes=1),
    ]

    decision = route(roster, interests=[interest("x200", 1.0)], last=last_agent("berlin-07"))

    assert order(decision) == ["berlin-07", "hamburg-02", "munich-01"]
    assert modes(decision) == [RoutingMode.KNOWN_AGENT, RoutingMode.INTEREST, RoutingMode.ANY_AVAILABLE]


def test_the_permission_reasons_are_part_of_every_decision() -> None:
    allowed = german_caller()

    decision = route([agent("berlin-07")], allowed=allowed)

    assert set(allowed.reasons) <= set(decision_reasons(decision))


# -- current interests --------------------------------------------------------------------------------


def test_an_interest_loses_half_its_score_per_half_life() -> None:
    policy = RoutingPolicy(half_life_days=14)

    current = current_interests(
        [interest("x200", 0.8, age_days=14), interest("tv-55", 0.8, age_days=28)], [], NOW, policy
    )

    assert current["x200"][0] == pytest.approx(0.4)
    assert current["tv-55"][0] == pytest.approx(0.2)


def test_a_shorter_half_life_fades_faster() -> None:
    stored = [interest("x200", 0.8, age_days=7)]

    slow = current_interests(stored, [], NOW, RoutingPolicy(half_life_days=14))["x200"][0]
    fast = current_interests(stored, [], NOW, RoutingPolicy(half_life_days=7))["x200"][0]

    assert fast == pytest.approx(0.4)
    assert slow > fast


def test_the_strongest_signal_per_product_wins_across_stored_and_live() -> None:
    live = Interest(product="x200", score=1.0, updated_at=NOW, sources=["this call"])

    score, strongest = current_interests([interest("x200", 0.3)], [live], NOW, RoutingPolicy())["x200"]

    assert score == pytest.approx(1.0)
    assert strongest == live


def test_expired_and_faded_interests_are_dropped() -> None:
    stored = [
        interest("x200", 0.9, expires_in_days=-1),
        interest("tv-55", 1.0, age_days=200),
        interest("m5", 0.5),
    ]

    assert set(current_interests(stored, [], NOW, RoutingPolicy())) == {"m5"}


# -- properties over arbitrary rosters ------------------------------------------------------------------

PRODUCTS = ["x200", "tv-55", "m5"]
AGENT_IDS = ["berlin-07", "hamburg-02", "munich-01", "koeln-03", "new-hire", "wien-01", "paris-02"]

agents_strategy = st.lists(
    st.builds(
        lambda agent_id, idle, presence, held, knows, record: agent(
            agent_id,
            idle_minutes=idle,
            presence=presence,
            knows=knows,
            record=record,
            **({"busy_until": NOW + 30, "reserved_by": held} if held else {}),
        ),
        agent_id=st.sampled_from(AGENT_IDS),
        idle=st.integers(min_value=0, max_value=600),
        presence=st.sampled_from(list(Presence)),
        held=st.sampled_from([None, CALL_ID, "another-call"]),
        knows=st.dictionaries(st.sampled_from(PRODUCTS), st.integers(1, 5)),
        record=st.dictionaries(
            st.sampled_from(PRODUCTS),
            st.integers(0, 50).flatmap(lambda calls: st.tuples(st.just(calls), st.integers(0, calls))),
        ),
    ),
    unique_by=lambda a: a.agent_id,
    max_size=len(AGENT_IDS),
)
interests_strategy = st.lists(
    st.builds(
        interest,
        st.sampled_from(PRODUCTS),
        st.floats(0.0, 1.0),
        age_days=st.floats(0, 60),
        expires_in_days=st.none() | st.floats(-5, 5),
    ),
    max_size=4,
)
permissions_strategy = st.sampled_from(
    [
        everything_allowed(),
        german_caller(),
        german_caller(consented=True),
        german_caller(objected=True),
        permissions(RULES, None, None),
    ]
)
last_strategy = st.none() | st.builds(
    last_agent, st.sampled_from(AGENT_IDS), expires_in_days=st.floats(-10, 10)
)


def free_for_this_call(candidate: Agent) -> bool:
    if candidate.presence is not Presence.ONLINE:
        return False
    return candidate.busy_until <= NOW or candidate.reserved_by == CALL_ID


@given(
    roster=agents_strategy,
    interests=interests_strategy,
    live=interests_strategy,
    last=last_strategy,
    allowed=permissions_strategy,
    max_candidates=st.integers(1, 8),
)
def test_every_decision_is_a_sound_failover_list(
    roster: list[Agent],
    interests: list[Interest],
    live: list[Interest],
    last: LastAgent | None,
    allowed: Permissions,
    max_candidates: int,
) -> None:
    decision = route(
        roster,
        interests=interests,
        live=live,
        last=last,
        allowed=allowed,
        policy=RoutingPolicy(max_candidates=max_candidates),
    )
    by_id = {a.agent_id: a for a in roster}
    free = [a for a in roster if free_for_this_call(a)]

    assert len(decision.candidates) <= max_candidates
    assert len(set(order(decision))) == len(decision.candidates), "an agent is listed twice"
    assert all(free_for_this_call(by_id[agent_id]) for agent_id in order(decision))
    assert (decision.mode is RoutingMode.FALLBACK) == (not free)
    if decision.candidates:
        assert decision.mode is decision.candidates[0].mode
    step = {RoutingMode.KNOWN_AGENT: 0, RoutingMode.INTEREST: 1, RoutingMode.ANY_AVAILABLE: 2}
    assert [step[m] for m in modes(decision)] == sorted(step[m] for m in modes(decision))
    if not allowed.use_interests:
        assert RoutingMode.INTEREST not in modes(decision)
    if not allowed.use_known_agent:
        assert RoutingMode.KNOWN_AGENT not in modes(decision)
    scores = [c.score for c in decision.candidates if c.mode is RoutingMode.INTEREST]
    assert scores == sorted(scores, reverse=True)
    idle = [by_id[c.agent_id].idle_since for c in decision.candidates if c.mode is RoutingMode.ANY_AVAILABLE]
    assert idle == sorted(idle)


# -- the words of a signal ------------------------------------------------------------------------------


def test_the_reasons_name_the_words_of_the_signal_that_counts_most() -> None:
    posted = interest("x200", 0.6).model_copy(
        update={"evidence": "will … X200 kaufen", "sources": ["social"]}
    )
    decision = route([agent("a", knows={"x200": 5})], interests=[posted])
    [reason] = candidate_reasons(decision.candidates[0], decision.interests, NOW)
    assert "interest in `x200` 0.60 from a social signal of" in reason
    assert '("will … X200 kaufen")' in reason


def test_a_record_keeps_the_words_of_the_two_strongest_interests_only_and_stays_one_write_unit() -> None:
    from rapport.models import DecisionRecord
    from rapport.store.layout import encode_record, item_size

    products = [f"product-{index:02d}" for index in range(10)]
    interests = [
        interest(product, 0.9 - index / 20).model_copy(update={"evidence": "x" * 120})
        for index, product in enumerate(products)
    ]
    decision = route(
        [agent(f"a{index}", knows={products[index]: 5}) for index in range(5)], interests=interests
    )
    worded = [product for product, fact in decision.interests.items() if fact.evidence]
    assert sorted(worded) == ["product-00", "product-01"]
    assert all(len(decision.interests[product].evidence) <= 60 for product in worded)
    record = DecisionRecord(
        call_id=CALL_ID,
        caller_key="f" * 64,
        decided_at=NOW,
        mode=decision.mode,
        candidates=decision.candidates[:5],
        interests=decision.interests,
        privacy=decision.privacy,
        expires_at=NOW + 180 * DAY,
    )
    assert item_size(encode_record(record)) <= 1024


# -- the line the caller dialled -------------------------------------------------------------------------


def test_the_dialled_lines_experts_come_first_among_the_longest_idle_without_caller_data() -> None:
    agents = [
        agent("idle-longest", idle_minutes=90),
        agent("router-b", idle_minutes=20, knows={"m3": 2}),
        agent("router-a", idle_minutes=40, knows={"m3": 5}),
        agent("tv", idle_minutes=60, knows={"q9": 5}),
    ]
    decision = choose_agent(
        agents=agents,
        context=CallerContext(interests=[interest("q9", 0.9)]),
        permissions=german_caller(),  # no consent: the stored interest in q9 is not looked at
        live_interests=[],
        call_tag=CALL_ID,
        now=NOW,
        line_products=("m3",),
    )
    assert order(decision) == ["router-a", "router-b", "idle-longest", "tv"]
    assert set(modes(decision)) == {RoutingMode.ANY_AVAILABLE}
    assert [c.for_line for c in decision.candidates] == [True, True, False, False]
    assert "knows the products of the line dialled" in candidate_reasons(decision.candidates[0], {}, NOW)[0]
    assert (
        "kennt die Produkte der gewählten Rufnummer"
        in candidate_reasons(decision.candidates[0], {}, NOW, language="de")[0]
    )


def test_without_a_dialled_line_the_longest_idle_comes_first() -> None:
    agents = [agent("idle-longest", idle_minutes=90), agent("router-a", idle_minutes=40, knows={"m3": 5})]
    decision = route(agents, allowed=german_caller())
    assert order(decision) == ["idle-longest", "router-a"]
    assert not any(c.for_line for c in decision.candidates)
