"""Whole calls through the real handler and the real DynamoDB engine: routing, failover, the
last-agent link, release of agents, and the privacy rules that decide what may be used or kept."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from builders import DAY, RouterFactory, agent, checked_call, interest, later, profile, state_of
from rapport.explain import record_reasons
from rapport.models import AgentState, AttemptOutcome, Outcome, RoutingMode
from rapport.numbers import caller_key
from rapport.pools import call_tag
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

LENA_DE = "+493055501042"
JONAS_DE = "+494055501077"
MARK_US = "+12025550107"
ANA_BR = "+5511955501234"


def key(number: str) -> str:
    return caller_key(number, DEVELOPMENT_PEPPER)


def call(router: LocalFunction, caller: str, sip_headers: dict[str, str] | None = None) -> SimulatedCall:
    return checked_call(router, caller, sip_headers)


def bridge_of(response: dict[str, Any]) -> dict[str, Any]:
    return actions_of(response, "CallAndBridge")[0]


def mode_of(placed: SimulatedCall) -> RoutingMode:
    return state_of(placed.attributes, placed.transaction_id).mode


@pytest.fixture
def shop(store: DynamoStore) -> float:
    """Four free agents; berlin-07 knows headphones best, hamburg-02 routers, nobody has a record."""
    now = time.time()
    store.put_agent(agent("berlin-07", now - 3000, proficiency={"x200-headphones": 5}))
    store.put_agent(agent("berlin-03", now - 2000, proficiency={"x200-headphones": 3}))
    store.put_agent(agent("hamburg-02", now - 1000, proficiency={"mesh-router-m3": 5}))
    store.put_agent(agent("cologne-04", now - 9000, proficiency={}))
    return now


def test_first_call_goes_to_the_agent_matching_the_callers_interest(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE), profile(consents={"interest_routing": True}), [interest("x200-headphones", 0.9, shop)]
    )
    lena = call(router, LENA_DE)
    response = lena.new_inbound()
    assert bridge_target(response) == "berlin-07"
    assert mode_of(lena) is RoutingMode.INTEREST
    reserved = store.agent("berlin-07")
    assert reserved is not None and reserved.state is AgentState.RINGING
    assert reserved.reserved_by == call_tag(lena.transaction_id)
    # Nobody else is held for the call.
    held = [a.agent_id for a in store.agents() if a.reserved_by == call_tag(lena.transaction_id)]
    assert held == ["berlin-07"]


def test_the_decision_record_is_written_once_when_the_call_ends(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE), profile(consents={"interest_routing": True}), [interest("x200-headphones", 0.9, shop)]
    )
    lena = call(router, LENA_DE)
    response = lena.new_inbound()
    assert store.decision(key(LENA_DE), lena.transaction_id) is None  # not yet: it travels with the call
    lena.bridge_answered(bridge_of(response))
    lena.hangup("LEG-A")
    record = store.decision(key(LENA_DE), lena.transaction_id)
    assert record is not None and record.agent_id == "berlin-07" and record.outcome is Outcome.ENDED
    assert record.candidates[0].skills["x200-headphones"].proficiency == 5
    assert record.interests["x200-headphones"].sources == ["social"]
    assert record.privacy.rule_set == "DE" and record.privacy.interests is True


def test_no_answer_fails_over_then_releases_and_counts_the_missed_call(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE), profile(consents={"interest_routing": True}), [interest("x200-headphones", 0.9, shop)]
    )
    lena = call(router, LENA_DE)
    first = lena.new_inbound()
    second = lena.bridge_failed(bridge_of(first))
    assert bridge_target(second) == "berlin-03"
    missed = store.agent("berlin-07")
    assert missed is not None and missed.state is AgentState.IDLE and missed.reserved_by is None
    assert missed.no_answers == 1
    lena.hangup("LEG-A")
    record = store.decision(key(LENA_DE), lena.transaction_id)
    assert record is not None and record.attempts[0].outcome is AttemptOutcome.NO_ANSWER
    assert record.outcome is Outcome.ABANDONED


def test_when_nobody_answers_the_caller_hears_the_message(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    mark = call(router, MARK_US)
    response = mark.new_inbound()
    rang: list[str] = []
    while actions_of(response, "CallAndBridge"):
        rang.append(str(bridge_target(response)))
        response = mark.bridge_failed(bridge_of(response))
    assert sorted(rang) == ["berlin-03", "berlin-07", "cologne-04", "hamburg-02"]
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "Hangup"]
    assert all(store.agent(agent_id).reserved_by is None for agent_id in rang)  # type: ignore[union-attr]
    mark.hangup("LEG-A")
    record = store.decision(key(MARK_US), mark.transaction_id)
    assert record is not None and record.outcome is Outcome.FALLBACK


def test_fallback_number_is_tried_before_the_message(make_router: RouterFactory, shop: float) -> None:
    router = make_router(parameters={"FallbackRoute": "+18005550199"})
    mark = call(router, MARK_US)
    response = mark.new_inbound()
    while bridge_target(response) != "+18005550199":
        response = mark.bridge_failed(bridge_of(response))
    after_fallback = mark.bridge_failed(bridge_of(response))
    assert [a["Type"] for a in after_fallback["Actions"]] == ["Speak", "Hangup"]


def test_second_call_reaches_the_known_agent(router: LocalFunction, store: DynamoStore, shop: float) -> None:
    first = call(router, JONAS_DE)
    agent_id = bridge_target(first.new_inbound())
    first.bridge_answered(bridge_of(first.responses[-1]))
    first.hangup("LEG-A")
    link = store.caller_context(key(JONAS_DE), time.time()).last_agent
    assert link is not None and link.agent_id == agent_id and link.call_id == first.transaction_id
    # Germany keeps the link 180 days.
    assert link.expires_at - link.at == pytest.approx(180 * DAY)

    # A day later the agent's wrap-up is long over, and the container has read their pool again.
    with later(router, DAY):
        again = call(router, JONAS_DE)
        assert bridge_target(again.new_inbound()) == agent_id
        assert mode_of(again) is RoutingMode.KNOWN_AGENT


def test_german_caller_without_consent_is_routed_without_interest_data(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    # Jonas's interest in headphones would send him to berlin-07 — but he never consented.
    store.put_caller(key(JONAS_DE), profile(), [interest("x200-headphones", 0.95, shop)])
    jonas = call(router, JONAS_DE)
    response = jonas.new_inbound()
    assert bridge_target(response) == "cologne-04"  # simply the longest idle
    assert mode_of(jonas) is RoutingMode.ANY_AVAILABLE
    jonas.hangup("LEG-A")
    record = store.decision(key(JONAS_DE), jonas.transaction_id)
    assert record is not None and record.privacy.interests is False
    assert record.privacy.interests_grounds == "needs_consent"


def test_objection_switches_off_the_known_agent_and_keeps_no_new_link(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    earlier = call(router, JONAS_DE)
    earlier_agent = bridge_target(earlier.new_inbound())
    earlier.bridge_answered(bridge_of(earlier.responses[-1]))
    earlier.hangup("LEG-A")
    store.put_caller(key(JONAS_DE), profile(objected=True), [])
    with later(router, DAY):
        jonas = call(router, JONAS_DE)
        response = jonas.new_inbound()
        assert bridge_target(response) != earlier_agent
        assert state_of(jonas.attributes, jonas.transaction_id).link_days == 0
        jonas.bridge_answered(bridge_of(response))
        jonas.hangup("LEG-A")
    link = store.caller_context(key(JONAS_DE), time.time()).last_agent
    assert link is not None and link.call_id == earlier.transaction_id


def test_caller_from_an_unlisted_country_gets_the_strictest_rules(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    ana = call(router, ANA_BR)
    response = ana.new_inbound()
    ana.bridge_answered(bridge_of(response))
    ana.hangup("LEG-A")
    assert store.caller_context(key(ANA_BR), time.time()).last_agent is None


def test_product_named_in_a_sip_header_counts_as_live_interest(router: LocalFunction, shop: float) -> None:
    mark = call(router, MARK_US, sip_headers={"X-Rapport-Product": "mesh-router-m3"})
    assert bridge_target(mark.new_inbound()) == "hamburg-02"
    assert mode_of(mark) is RoutingMode.INTEREST


ROUTER_LINE = "+18005550111"
LINES = json.dumps(
    {
        ROUTER_LINE: {"name": "routers", "products": ["mesh-router-m3"]},
        "+18005550122": {"name": "headphones", "products": ["x200-headphones"]},
    }
)


def test_a_dialled_product_line_offers_its_experts_first_without_using_caller_data(
    make_router: RouterFactory, store: DynamoStore, shop: float
) -> None:
    router = make_router(parameters={"DialledLines": LINES})
    # Jonas never consented to interest routing: his stored headphone interest stays unused, but the line
    # he dialled is his choice in this call, not data about him.
    store.put_caller(key(JONAS_DE), profile(), [interest("x200-headphones", 0.95, shop)])
    jonas = SimulatedCall(router.invoke, JONAS_DE, dialled=ROUTER_LINE)
    response = jonas.new_inbound()
    assert bridge_target(response) == "hamburg-02"  # cologne-04 is idle longer, but knows no routers
    assert mode_of(jonas) is RoutingMode.ANY_AVAILABLE
    jonas.bridge_answered(bridge_of(response))
    jonas.hangup("LEG-A")
    record = store.decision(key(JONAS_DE), jonas.transaction_id)
    assert record is not None and record.privacy.interests is False
    assert [(n.code.value, n.detail) for n in record.notes] == [("dialled_line", "routers")]
    reasons = record_reasons(record)
    assert "agent `hamburg-02` knows the products of the line dialled" in reasons[0]
    assert "the caller dialled the `routers` line" in reasons
    assert ROUTER_LINE not in json.dumps(store.client.scan(TableName=store.table_name)["Items"])


def test_a_call_forwarded_from_a_product_line_counts_as_dialling_it(
    make_router: RouterFactory, store: DynamoStore, shop: float
) -> None:
    router = make_router(parameters={"DialledLines": LINES})
    forwarded = {"Diversion": "<sip:+18005550122@pbx.example.com>;reason=unconditional"}
    mark = SimulatedCall(router.invoke, MARK_US, sip_headers=forwarded)
    assert bridge_target(mark.new_inbound()) == "berlin-07"  # the headphone line's best-known, longest idle
    # A call forwarded from a number that is no line of ours (someone's own phone, say): plain routing,
    # and the number is kept nowhere.
    private = {"Diversion": "<sip:+12125550143@carrier.example.com>;reason=no-answer"}
    ana = SimulatedCall(router.invoke, ANA_BR, sip_headers=private)
    assert bridge_target(ana.new_inbound()) == "cologne-04"
    ana.hangup("LEG-A")
    assert "12125550143" not in json.dumps(store.client.scan(TableName=store.table_name)["Items"])
    record = store.decision(key(ANA_BR), ana.transaction_id)
    assert record is not None and record.notes == []


def test_hangup_hangs_up_the_other_leg_and_puts_the_agent_into_wrap_up(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_agent(agent("solo-01", shop - 99999, wrap_up_seconds=45))
    mark = call(router, MARK_US)
    response = mark.new_inbound()
    assert bridge_target(response) == "solo-01"
    mark.bridge_answered(bridge_of(response))
    on_call = store.agent("solo-01")
    assert on_call is not None and on_call.state is AgentState.ON_CALL
    ended = mark.hangup("LEG-B")
    assert [h["CallId"] for h in actions_of(ended, "Hangup")] == [mark.leg_a["CallId"]]
    wrapping = store.agent("solo-01")
    assert wrapping is not None and wrapping.state is AgentState.WRAP_UP
    assert wrapping.busy_until == pytest.approx(time.time() + 45, abs=5)
    assert store.decision(key(MARK_US), mark.transaction_id).outcome is Outcome.ENDED  # type: ignore[union-attr]


def test_caller_hanging_up_while_the_agent_rings_frees_the_agent_at_once(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    mark = call(router, MARK_US)
    agent_id = str(bridge_target(mark.new_inbound()))
    assert mark.hangup("LEG-A")["Actions"] == []
    freed = store.agent(agent_id)
    assert freed is not None and freed.state is AgentState.IDLE and freed.busy_until <= time.time()


class TestRepeatedEvents:
    """The SMA retries an invocation it got no answer to: the same event twice must do no harm."""

    def test_repeated_new_call_rings_the_same_agent_and_holds_no_other(
        self, router: LocalFunction, store: DynamoStore, shop: float
    ) -> None:
        mark = call(router, MARK_US)
        event = mark.event("NEW_INBOUND_CALL", [mark.leg_a])
        first, second = router.invoke(event), router.invoke(event)
        assert bridge_target(first) == bridge_target(second)
        held = [a.agent_id for a in store.agents() if a.reserved_by == call_tag(mark.transaction_id)]
        assert held == [bridge_target(first)]

    def test_repeated_no_answer_counts_once_and_rings_the_same_next_agent(
        self, router: LocalFunction, store: DynamoStore, shop: float
    ) -> None:
        mark = call(router, MARK_US)
        first_target = bridge_target(mark.new_inbound())
        failed = mark.event(
            "ACTION_FAILED",
            [mark.leg_a],
            {
                "Type": "CallAndBridge",
                "Parameters": bridge_of(mark.responses[-1]),
                "ErrorType": "CallNotAnswered",
            },
        )
        once, twice = router.invoke(failed), router.invoke(failed)
        assert bridge_target(once) == bridge_target(twice) != first_target
        assert store.agent(str(first_target)).no_answers == 1  # type: ignore[union-attr]

    def test_repeated_hangup_releases_once(
        self, router: LocalFunction, store: DynamoStore, shop: float
    ) -> None:
        mark = call(router, MARK_US)
        target = str(bridge_target(mark.new_inbound()))
        mark.bridge_answered(bridge_of(mark.responses[0]))
        attributes_before_hangup = dict(mark.attributes)
        mark.hangup("LEG-A")
        wrap_until = store.agent(target).busy_until  # type: ignore[union-attr]
        # The SMA delivers the same HANGUP again, with the attributes it carried the first time.
        mark.attributes = attributes_before_hangup
        mark.sequence -= 1
        legs = [mark.leg_a, mark.leg_b or {}]
        repeat = mark.event("HANGUP", legs, {"Type": "Hangup", "Parameters": {}})
        time.sleep(0.05)
        response = router.invoke(repeat)
        assert response_problems(response) == []
        assert store.agent(target).busy_until == wrap_until  # type: ignore[union-attr]
        assert store.decision(key(MARK_US), mark.transaction_id) is not None


def test_concurrent_calls_never_share_an_agent(router: LocalFunction, store: DynamoStore) -> None:
    now = time.time()
    for index in range(6):
        store.put_agent(agent(f"agent-{index}", now - 1000 + index))
    router.invoke({"InvocationEventType": "RINGING"})  # warm the container
    calls = [SimulatedCall(router.invoke, f"+1202555{1000 + index:04d}") for index in range(18)]
    events = [c.event("NEW_INBOUND_CALL", [c.leg_a]) for c in calls]
    responses = router.invoke_concurrently(events, workers=9)
    targets = [bridge_target(r) for r in responses]
    bridged = [t for t in targets if t is not None]
    assert sorted(bridged) == [f"agent-{index}" for index in range(6)]
    assert sum(1 for r in responses if actions_of(r, "Speak")) == 12
    for c, target in zip(calls, targets, strict=True):
        if target is not None:
            assert store.agent(target).reserved_by == call_tag(c.transaction_id)  # type: ignore[union-attr]


def test_two_hundred_simultaneous_calls_for_twenty_agents(
    make_router: RouterFactory, store: DynamoStore
) -> None:
    """Contention on the new model: no agent gets two calls at once, and every call gets an agent or
    the fallback, never silence. Several containers, as Lambda would run them, race for the same pools."""
    now = time.time()
    for index in range(20):
        store.put_agent(agent(f"agent-{index:02d}", now - 1000 + index))
    containers = [make_router() for _ in range(4)]
    calls = [SimulatedCall(lambda event: event, f"+1202555{3000 + index:04d}") for index in range(200)]
    events = [c.event("NEW_INBOUND_CALL", [c.leg_a]) for c in calls]
    for container in containers:
        container.invoke({"InvocationEventType": "RINGING"})
    share = len(events) // len(containers)
    responses: list[Any] = []
    for index, container in enumerate(containers):
        # Each container serves its share from 25 threads; the shares run one after another here, so
        # every container also meets agents the others hold, through its stale view.
        responses += container.invoke_concurrently(events[index * share : (index + 1) * share], workers=25)
    assert all(response_problems(r) == [] for r in responses)
    targets = [bridge_target(r) for r in responses]
    bridged = [t for t in targets if t is not None]
    assert len(bridged) == len(set(bridged)) == 20
    assert all(t is not None or actions_of(r, "Speak") for r, t in zip(responses, targets, strict=True))
    for c, target in zip(calls, targets, strict=True):
        if target is not None:
            assert store.agent(target).reserved_by == call_tag(c.transaction_id)  # type: ignore[union-attr]


def test_a_late_bridge_failure_after_the_caller_hung_up_does_nothing(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    mark = call(router, MARK_US)
    bridge = bridge_of(mark.new_inbound())
    mark.hangup("LEG-A")
    assert mark.bridge_failed(bridge)["Actions"] == []


def test_concurrent_calls_that_lose_a_race_still_reach_a_free_agent(
    router: LocalFunction, store: DynamoStore
) -> None:
    # Every call ranks the same agents first; those that lose the race must move on, not give up.
    now = time.time()
    for index in range(24):
        store.put_agent(agent(f"agent-{index:02d}", now - 1000 + index))
    router.invoke({"InvocationEventType": "RINGING"})
    calls = [SimulatedCall(router.invoke, f"+1202555{2000 + index:04d}") for index in range(12)]
    responses = router.invoke_concurrently(
        [c.event("NEW_INBOUND_CALL", [c.leg_a]) for c in calls], workers=12
    )
    targets = [bridge_target(r) for r in responses]
    assert None not in targets
    assert len(set(targets)) == 12
